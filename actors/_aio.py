"""asyncio hosts: pipelines run for asyncio code inside one trio guest run.

trio's guest mode runs trio's scheduler on top of the asyncio loop: trio code
runs in callbacks on the loop's own thread, and only trio's wait for I/O runs
in a helper thread. A thread can host only one guest run at a time, so a host
starts one guest run when entered and runs every submitted pipeline as a task
of its one nursery, in a cancel scope of its own.

All calls from asyncio into the guest run go through its ``TrioToken``
(``run_sync_soon``), the one thread-safe and scheduler-waking door; trio code
hands the outcome back on the job and wakes the caller by settling an asyncio
future, which it may touch directly because it runs on the loop's thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import trio

from ._context import PipelineContext
from ._core import PipelineExecutor
from ._definition import PipelineDefinition
from ._exceptions import HostClosedError
from ._observers import Observer
from ._results import PipelineResult

if TYPE_CHECKING:
    import outcome

# The host open on each thread: a thread runs at most one trio guest run.
_open_hosts = threading.local()


def trio_host(executor: PipelineExecutor | None = None) -> TrioHost:
    """Return a host that runs pipelines for asyncio code; enter it with ``async with``.

    Entering starts one trio guest run on the running asyncio loop; leaving
    cancels the runs still going, waits until they have unwound and the guest
    run has finished, then returns. Open one host per loop, for the loop's
    lifetime (in a FastAPI app: in the lifespan), and share it.

    Args:
        executor: Runs every pipeline submitted to the host, with its
            observers and settings; a default :class:`PipelineExecutor` if
            None.

    Raises:
        RuntimeError: On entering: no asyncio loop is running, or another
            host is already open on this thread (a thread can host only one
            trio guest run; share the first host instead).
    """
    return TrioHost(executor)


@dataclass(eq=False, slots=True)
class _Job:
    """One submitted run: what to run, its outcome, and where its caller waits."""

    pipeline: PipelineDefinition
    initial_input: Any
    context: PipelineContext[Any] | None
    observers: tuple[Observer, ...]
    done: asyncio.Future[None]
    """Set once the run has ended and ``result`` or ``error`` is filled in."""
    caller_context: contextvars.Context
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    result: PipelineResult | None = None
    error: BaseException | None = None

    def take_error(self) -> BaseException | None:
        """Return the run's exception, and forget it.

        The exception's traceback holds frames that hold this job: kept here
        once raised, it would be a reference cycle.
        """
        error, self.error = self.error, None
        return error

    def outcome(self) -> PipelineResult:
        """Return the result, or raise the run's exception (taken off the job)."""
        error = self.take_error()
        if error is None:
            assert self.result is not None
            return self.result
        try:
            raise error
        finally:
            del error  # this frame is on its traceback


class TrioHost:
    """Runs pipelines for asyncio code, each in a cancel scope of one trio guest run.

    Made by :func:`trio_host`; usable once, as an async context manager.
    """

    def __init__(self, executor: PipelineExecutor | None = None) -> None:
        self._executor = PipelineExecutor() if executor is None else executor
        self._state = "new"  # -> "open" -> "closing" -> "closed"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._done: asyncio.Future[outcome.Outcome[None]] | None = None

    @property
    def executor(self) -> PipelineExecutor:
        """The executor that runs every pipeline submitted to this host."""
        return self._executor

    async def __aenter__(self) -> Self:
        """Start the trio guest run; return once it accepts runs.

        Waits through a cancellation of the entering task (starting takes a
        tick or two of the loop), then stops the guest run again and raises
        :class:`asyncio.CancelledError`.
        """
        if self._state != "new":
            raise RuntimeError("a trio host can be entered only once")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "trio_host() needs a running asyncio loop; under trio, call "
                "PipelineExecutor.execute directly"
            ) from None
        other: TrioHost | None = getattr(_open_hosts, "host", None)
        if other is not None:
            raise RuntimeError(
                "a trio host is already open on this thread, and a thread can "
                "host only one trio guest run; share the host opened first "
                "(for example through app.state) instead of opening another"
            )
        ready: asyncio.Future[None] = loop.create_future()
        done: asyncio.Future[outcome.Outcome[None]] = loop.create_future()

        def finished(result: outcome.Outcome[None]) -> None:
            done.set_result(result)
            if not ready.done():
                ready.set_exception(
                    RuntimeError("the trio guest run ended before it accepted runs")
                )

        # Raises RuntimeError if a trio run is already active on this thread.
        trio.lowlevel.start_guest_run(
            self._main,
            ready,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=finished,
            # asyncio may own the wakeup fd (its signal handlers): trio keeps off it.
            host_uses_signal_set_wakeup_fd=True,
        )
        self._loop, self._done, self._state = loop, done, "open"
        _open_hosts.host = self
        cancelled = await _wait_through_cancellation(ready)
        if cancelled or ready.exception() is not None:
            await self.aclose()  # raises the guest run's own failure, if any
            if cancelled:
                raise asyncio.CancelledError
            ready.result()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the host (see :meth:`aclose`); the block's exception propagates."""
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the runs still going and wait until the guest run has finished.

        From then on :meth:`execute` refuses new runs with
        :class:`HostClosedError`, and callers whose runs were cut short get
        :class:`HostClosedError` once their run has unwound. The wait goes on
        through a cancellation of the closing task, which then gets
        :class:`asyncio.CancelledError` once the guest run has finished: the
        loop never stops under a live guest run. Calling it again waits again.
        """
        done = self._done
        if done is None:
            self._state = "closed"
            return
        if self._state == "open":
            self._state = "closing"
            if not done.done():
                # Every job submitted before this call starts before the
                # cancel: run_sync_soon callbacks run in order.
                self._call_in_trio(self._cancel_everything)
        cancelled = await _wait_through_cancellation(done)
        self._state = "closed"
        if getattr(_open_hosts, "host", None) is self:
            _open_hosts.host = None
        if cancelled:
            raise asyncio.CancelledError
        done.result().unwrap()  # a failure of the host itself, never a run's

    async def execute(
        self,
        pipeline: PipelineDefinition,
        initial_input: Any = None,
        context: PipelineContext[Any] | None = None,
        *,
        observers: Iterable[Observer] = (),
    ) -> PipelineResult:
        """Run *pipeline* in the host's guest run and return its result.

        Mirrors :meth:`PipelineExecutor.execute`: the same result, the same
        exceptions (:class:`PipelineValidationError`, a stage's
        ``KeyboardInterrupt`` or ``SystemExit``), raised here unchanged. Call
        it from any task of the host's loop, as often and as concurrently as
        you like; the stages see the caller's context variables. It always
        yields to the loop.

        Cancelling the awaiting task cancels the run, waits until it has
        unwound (every stage stopped, ``finally`` blocks run), then raises
        :class:`asyncio.CancelledError`.

        Raises:
            HostClosedError: The host is closing or closed (nothing ran), or
                it was closed while this run was going (the run was cancelled).
            RuntimeError: The host was not entered, or this is not its loop.
        """
        loop = self._loop
        if self._state == "new" or loop is None:
            raise RuntimeError(
                "enter the host first: async with actors.aio.trio_host() as host"
            )
        if self._state != "open" or (self._done is not None and self._done.done()):
            raise HostClosedError(
                "the trio host is closing or closed and accepts no new runs; "
                f"pipeline {pipeline.name!r} was not started"
            )
        if asyncio.get_running_loop() is not loop:
            raise RuntimeError(
                "a trio host runs pipelines only for tasks of the loop it was opened on"
            )
        job = _Job(
            pipeline=pipeline,
            initial_input=initial_input,
            context=context,
            observers=tuple(observers),
            done=loop.create_future(),
            caller_context=contextvars.copy_context(),
        )
        self._call_in_trio(self._start, job)
        try:
            await asyncio.shield(job.done)
        except asyncio.CancelledError:
            if not job.done.done():
                self._call_in_trio(job.scope.cancel)
                await _wait_through_cancellation(job.done)
            if isinstance(job.error, KeyboardInterrupt | SystemExit):
                job.outcome()  # raises it: an interrupt outranks the cancellation
            job.take_error()  # the run's end, whatever it was, is dropped
            raise
        return job.outcome()

    def _call_in_trio(self, fn: Callable[..., object], *args: Any) -> None:
        """Schedule the sync *fn* inside the guest run; it must never raise."""
        assert self._token is not None
        self._token.run_sync_soon(fn, *args)

    # Everything below runs inside the trio guest run.

    async def _main(self, ready: asyncio.Future[None]) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._token = trio.lowlevel.current_trio_token()
            ready.set_result(None)
            await trio.sleep_forever()  # until _cancel_everything

    def _cancel_everything(self) -> None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    def _start(self, job: _Job) -> None:
        # Spawned in the caller's context copy, so the run sees its variables
        # (a request id bound with structlog, for one).
        job.caller_context.run(self._spawn, job)

    def _spawn(self, job: _Job) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._serve, job, name=f"aio:{job.pipeline.name}")

    async def _serve(self, job: _Job) -> None:
        try:
            with job.scope:
                try:
                    result = await self._executor.execute(
                        job.pipeline,
                        job.initial_input,
                        job.context,
                        observers=job.observers,
                    )
                except trio.Cancelled:
                    raise
                except BaseException as exc:
                    # Not swallowed: handed to the asyncio task awaiting this
                    # run, which raises it as execute would have. Raised here,
                    # it would end every other run of the host as well.
                    job.error = exc
                    return
                job.result = result
        finally:
            if job.result is None and job.error is None:
                # Cancelled: by its caller, which raises CancelledError and
                # ignores this, or by the host closing.
                job.error = HostClosedError(
                    f"the trio host closed while pipeline {job.pipeline.name!r} "
                    "was running; the run was cancelled"
                )
            job.done.set_result(None)


async def _wait_through_cancellation(future: asyncio.Future[Any]) -> bool:
    """Wait until *future* is done, even if cancelled meanwhile; return whether we were.

    Never raises the future's own exception: that is the caller's to read.
    """
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait((future,))
        except asyncio.CancelledError:
            cancelled = True
    return cancelled

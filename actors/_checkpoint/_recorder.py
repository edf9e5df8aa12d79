"""The recorder: journals a run's unit successes into a store, off the event loop."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import trio
import trio.testing

from ._records import Entry, RunInfo

if TYPE_CHECKING:
    import outcome

    from ._store import Store

FLUSH_DELAY_S = 0.05
"""A unit's success reaches the store at most about this long after it is recorded.

The delay batches the units that finish close together into one write; a
write already under way adds its own duration. A crash loses at most the
units recorded in this window (and those being written): they run again on
resume.
"""

CLOSE_TIMEOUT_S = 10.0
"""How long closing the recorder may wait for its last write and the run's status."""

FailureReport = Callable[[str, Exception], None]
"""Called with the store operation that failed and its exception."""

ResultT = TypeVar("ResultT")


async def call_store(store: object, function: Callable[[], ResultT]) -> ResultT:
    """Call *function* (a method of *store*) without blocking the event loop.

    This is a checkpoint. A store whose ``blocking`` attribute is false (a
    :class:`MemoryStore`) is called inline. Others run in a worker thread.
    Under trio's virtual :class:`~trio.testing.MockClock` the caller keeps
    yielding while the thread works, instead of sleeping: an autojump clock
    would otherwise see every task blocked and jump virtual time ahead (to a
    timeout) while the store is still writing. Cancelled meanwhile, the call
    is abandoned (its write, being atomic, completes or not on its own).
    """
    if not getattr(store, "blocking", True):
        await trio.lowlevel.checkpoint()
        return function()
    if not isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
        return await trio.to_thread.run_sync(function)
    box: list[outcome.Outcome[ResultT]] = []
    trio.lowlevel.start_thread_soon(function, box.append)
    await trio.lowlevel.checkpoint()
    while not box:
        await trio.lowlevel.checkpoint()
    return box[0].unwrap()


class Recorder:
    """Collects one run's unit successes and writes them to a store in batches.

    :meth:`record` never blocks and never raises. The first store error
    (disk full, permission, a broken database) is reported once through the
    failure callback; the run then goes on unrecorded.
    """

    __slots__ = (
        "_failed",
        "_flush_delay_s",
        "_pending",
        "_report",
        "_status",
        "_store",
        "_wake",
        "run",
        "written",
    )

    def __init__(
        self,
        store: Store,
        run: RunInfo,
        report: FailureReport,
        flush_delay_s: float = FLUSH_DELAY_S,
    ) -> None:
        self._store = store
        self.run = run
        self._report = report
        self._flush_delay_s = flush_delay_s
        self._pending: list[Entry] = []
        self._wake = trio.Event()
        self._failed = False
        self._status: tuple[str, dict[str, int]] | None = None
        self.written = 0
        """Entries the store has confirmed."""

    @property
    def failed(self) -> bool:
        """True once the store failed: nothing more is recorded."""
        return self._failed

    def record(self, entry: Entry) -> None:
        """Queue *entry* for the next write; never blocks, never raises."""
        if self._failed:
            return
        self._pending.append(entry)
        self._wake.set()

    def set_status(self, status: str, stats: Mapping[str, int]) -> None:
        """Set the status the run is given when the recorder closes."""
        self._status = (status, dict(stats))

    def _fail(self, operation: str, exc: Exception) -> None:
        if not self._failed:
            self._failed = True
            self._pending.clear()
            self._report(operation, exc)

    async def _call(self, operation: str, function: Callable[[], None]) -> None:
        if self._failed:
            return
        try:
            await call_store(self._store, function)
        except Exception as exc:
            self._fail(operation, exc)

    async def _begin(self) -> None:
        await self._call("begin_run", lambda: self._store.begin_run(self.run))

    async def _flush(self) -> None:
        """Write what is pending as one batch."""
        batch, self._pending = self._pending, []
        if not batch or self._failed:
            return
        run_id = self.run.run_id
        await self._call("append", lambda: self._store.append(run_id, batch))
        if not self._failed:
            self.written += len(batch)

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await trio.sleep(self._flush_delay_s)
            await self._flush()

    async def _close(self) -> None:
        """Write what is left and the run's status, within CLOSE_TIMEOUT_S.

        Called shielded. The bound is wall-clock time, enforced by a thread
        of its own: a deadline on the trio clock would expire at once under
        a virtual (autojump) clock while the store is still writing.
        """
        if self._failed:
            return
        batch, self._pending = self._pending, []
        status, stats = self._status or ("cancelled", {})
        run_id, store = self.run.run_id, self._store
        step = ["append"]

        def close() -> None:
            if batch:
                store.append(run_id, batch)
            step[0] = "finish_run"
            store.finish_run(run_id, status, stats)

        if getattr(store, "blocking", True):
            done, error = await call_store(
                store, lambda: _bounded(close, CLOSE_TIMEOUT_S)
            )
        else:
            done, error = _inline(close)
        if error is not None:
            self._fail(step[0], error)
        elif not done:
            self._fail(
                step[0],
                TimeoutError(f"the store did not answer within {CLOSE_TIMEOUT_S:g} s"),
            )
        else:
            self.written += len(batch)


def _inline(function: Callable[[], None]) -> tuple[bool, Exception | None]:
    try:
        function()
    except Exception as exc:
        return True, exc
    return True, None


def _bounded(
    function: Callable[[], None], timeout_s: float
) -> tuple[bool, Exception | None]:
    """Run *function* in a daemon thread; wait at most *timeout_s* of wall-clock time.

    Returns whether it finished, and the exception it raised. A store still
    writing after the timeout is left to finish alone (its writes are atomic).
    """
    errors: list[Exception] = []

    def target() -> None:
        try:
            function()
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(
        target=target, name="actors-checkpoint-close", daemon=True
    )
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return False, None
    return True, errors[0] if errors else None


@asynccontextmanager
async def open_recorder(
    store: Store,
    *,
    run_id: str,
    pipeline: str,
    report: FailureReport,
    flush_delay_s: float = FLUSH_DELAY_S,
    resumed_from: str | None = None,
) -> AsyncIterator[Recorder]:
    """Record a run in *store* for as long as the block runs.

    Entering records the run's start (in a worker thread; this is a
    checkpoint). Inside, a background task writes recorded units within
    :data:`FLUSH_DELAY_S`. Leaving, whatever the reason (cancellation
    included), writes every pending unit and the run's status, shielded for
    at most :data:`CLOSE_TIMEOUT_S`. Store errors never raise: *report* hears
    of the first one.
    """
    if not (math.isfinite(flush_delay_s) and flush_delay_s >= 0):
        raise ValueError(f"flush_delay_s must be finite and >= 0, got {flush_delay_s}")
    run = RunInfo(run_id, pipeline, time.time(), resumed_from=resumed_from)
    recorder = Recorder(store, run, report, flush_delay_s)
    try:
        await recorder._begin()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(recorder._flush_loop, name="checkpoint-recorder")
            try:
                yield recorder
            finally:
                nursery.cancel_scope.cancel()
    finally:
        # Bounded by CLOSE_TIMEOUT_S of wall-clock time (see Recorder._close).
        with trio.CancelScope(shield=True):
            await recorder._close()

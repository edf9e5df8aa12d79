"""The supervisor: runs a validated graph as one trio actor per stage."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog
import trio

from .._context import PipelineContext, current_run
from .._definition import PipelineDefinition
from .._events import PipelineFinished, PipelineStarted, StageUnresponsive
from .._exceptions import PipelineValidationError
from .._graph import graph_of
from .._host_check import require_trio
from .._limits import Limits, RateLimit
from .._logging import LoggingObserver, report_observer_failure
from .._observers import Dispatch, Observer, check_observers
from .._results import (
    PipelineResult,
    PipelineStatus,
    StageResult,
    StageStatus,
    construct,
)
from .._util import leaves
from ._actor import Actor
from ._limiting import check_limits
from ._live import Live, LiveRun
from ._resume import choose_store, read_resumed, run_recorded
from ._state import RunState
from ._wiring import wire, wire_streams

if TYPE_CHECKING:
    from .._checkpoint import Store


class PipelineExecutor:
    """Runs pipelines; one executor may run many pipelines, even at once.

    Args:
        observers: Receive the events of every run of this executor.
        log_events: Log every event on the ``"actors"`` logger: through
            structlog if the application configured it, else through the
            standard library (see :mod:`actors.logging`). Only enabled
            levels cost anything.
        unresponsive_after_ms: Once a run is cancelled, a stage still running
            after this long is reported by a ``stage_unresponsive`` event.
        limits: Named quotas (:class:`RateLimit`) shared by every run, stage
            and item of this executor: taken with ``ctx.limit(name, ...)`` or
            a stage's ``rate_limit=``.
        store: Journal every run in this checkpoint store (see
            :mod:`actors.checkpoint`), so a later run can resume from it.
        rng: Where retry jitter draws from; pass ``random.Random(seed)`` to
            make the delays of a run repeatable (default: the global random).
    """

    def __init__(
        self,
        *,
        observers: Iterable[Observer] = (),
        log_events: bool = True,
        unresponsive_after_ms: float = 1000,
        limits: Mapping[str, RateLimit] | None = None,
        store: Store | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._rng = rng
        if not (math.isfinite(unresponsive_after_ms) and unresponsive_after_ms >= 0):
            raise ValueError(
                "unresponsive_after_ms must be a finite number >= 0, "
                f"got {unresponsive_after_ms!r}"
            )
        self._limits = Limits(limits or {})
        self._observers = tuple(observers)
        check_observers(self._observers)
        self._log_events = log_events
        self._grace_s = unresponsive_after_ms / 1000
        self._store = store

    async def execute(
        self,
        pipeline: PipelineDefinition,
        initial_input: Any = None,
        context: PipelineContext[Any] | None = None,
        *,
        observers: Iterable[Observer] = (),
        store: Store | None = None,
        resume: str | None = None,
    ) -> PipelineResult:
        """Run *pipeline* and return its result once every stage has ended.

        Stages with no inputs receive *initial_input*. This is a checkpoint.

        Stage failures, timeouts, the pipeline's own timeout and the
        context's ``cancel_token`` never raise: they are reported in the
        result. Cancelling the caller's scope cancels the run and re-raises
        :class:`trio.Cancelled` once every stage has stopped.
        ``KeyboardInterrupt`` and ``SystemExit`` from a stage are re-raised
        as themselves (never inside an exception group), also after every
        stage has stopped. No task outlives the call.

        With a store (*store*, else the executor's, else a
        :class:`~actors.checkpoint.FileStore` in ``context.checkpoint_dir``)
        every succeeded stage and fan-out item is journaled, and all of it is
        written before this returns. *resume* (a run id, or ``"latest"`` for
        the latest run of this pipeline's name) restores each unit that run
        journaled and whose key still matches, instead of running it.

        Raises:
            PipelineValidationError: The definition is invalid (a stage's
                ``rate_limit`` naming none of this executor's limits
                included); nothing ran.
            RuntimeError: Called from asyncio, not trio; the message names
                :mod:`actors.aio`, which runs pipelines for asyncio code.
            ValueError: *resume* is given without a store; nothing ran.
            actors.checkpoint.UnknownRunError: The store holds no readable
                run *resume*; nothing ran.
        """
        _, go = await self._prepare(
            pipeline,
            initial_input,
            context,
            observers=observers,
            store=store,
            resume=resume,
        )
        return await _bare(go)

    @asynccontextmanager
    async def open_run(
        self,
        pipeline: PipelineDefinition,
        initial_input: Any = None,
        context: PipelineContext[Any] | None = None,
        *,
        observers: Iterable[Observer] = (),
        store: Store | None = None,
        resume: str | None = None,
    ) -> AsyncIterator[LiveRun]:
        """Start *pipeline* and give the block a :class:`LiveRun` to watch it.

        The run goes on in the background while the block taps its items
        (``run.tap(stage)``) and progress (``run.progress()``); leaving the
        block waits for the run to end, then ``run.result`` holds its result.
        ``execute`` is this plus waiting, and reports and raises the same way.

        An exception raised in the block cancels the run, waits for every
        stage to stop, and leaves the block as itself (never inside an
        exception group); ``run.cancel()`` cancels it explicitly.
        Cancelling the caller's scope cancels the run and re-raises
        :class:`trio.Cancelled` once every stage has stopped. Entering is a
        checkpoint, and raises what ``execute`` raises before anything runs.
        """
        state, go = await self._prepare(
            pipeline,
            initial_input,
            context,
            observers=observers,
            store=store,
            resume=resume,
        )
        live = state.live = Live(state)
        run = LiveRun(state, live)
        raised: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(live.drive, partial(_bare, go), name="actors:run")
                try:
                    yield run
                except BaseException as exc:
                    raised = exc
                    if not isinstance(exc, trio.Cancelled):
                        # Cancelled is the caller's scope, which cancels the
                        # run itself; anything else is the block's own error.
                        run.cancel(
                            "interrupted"
                            if _is_interrupt(exc)
                            else f"the open_run block raised {type(exc).__name__}"
                        )
                        # Let the run stop by itself, so that it ends with a
                        # result (the nursery would cancel it from outside).
                        # The run is cancelled: this waits as long as leaving
                        # the nursery would (a nursery waits for its tasks
                        # however cancelled), so no bound is needed here; a
                        # stage slow to stop is named by stage_unresponsive.
                        with trio.CancelScope(shield=True):
                            await live.ended()
                    raise
        except BaseExceptionGroup as group:
            bare = _bare_exception(group, raised)
            if bare is None:
                raise
        else:
            return
        # As in execute: raised outside the except clause, the name dropped.
        try:
            raise bare
        finally:
            del bare

    async def _prepare(
        self,
        pipeline: PipelineDefinition,
        initial_input: Any,
        context: PipelineContext[Any] | None,
        *,
        observers: Iterable[Observer],
        store: Store | None,
        resume: str | None,
    ) -> tuple[RunState, Callable[[], Awaitable[PipelineResult]]]:
        """Validate and set up a run; return its state and what runs it.

        A checkpoint when reading a run to resume, and nothing runs yet.
        """
        require_trio()
        graph = graph_of(pipeline)
        limit_errors = check_limits(graph, self._limits)
        if limit_errors:
            raise PipelineValidationError(graph.name, limit_errors)
        if context is None:
            context = PipelineContext()
        observers = tuple(observers)
        check_observers(observers)
        store = choose_store(self._store, store, resume, context)
        resumed = None
        if store is not None and resume is not None:
            resumed = await read_resumed(store, resume, graph.name)
        every = (*self._observers, *observers)
        if self._log_events:
            every = (LoggingObserver(), *every)
        dispatch = Dispatch(every, report_observer_failure)
        limits = self._limits if self._limits.names else None
        state = RunState(
            graph, context, dispatch, self._grace_s, limits=limits, rng=self._rng
        )
        go = partial(Supervisor(state).run, initial_input)
        if store is None:
            return state, go
        return state, partial(run_recorded, state, store, resumed, go)


async def _bare(go: Callable[[], Awaitable[PipelineResult]]) -> PipelineResult:
    """Run *go*; re-raise an interrupt or the caller's cancellation bare."""
    try:
        return await go()
    except BaseExceptionGroup as group:
        # Policy: stage code cannot raise out of a run, so a group here
        # holds an interrupt (re-raised bare, as callers expect) or the
        # caller's cancellation (re-raised as one trio.Cancelled).
        interrupt = _bare_exception(group)
        if interrupt is None:
            raise
    # Raised outside the except clause, so the group is not its context,
    # and the name is dropped: its traceback holds this frame, a cycle.
    try:
        raise interrupt
    finally:
        del interrupt


def run(
    pipeline: PipelineDefinition,
    initial_input: Any = None,
    context: PipelineContext[Any] | None = None,
) -> PipelineResult:
    """Run *pipeline* in a new trio run, for callers outside trio.

    Blocks until the run ends; the same as
    ``trio.run(PipelineExecutor().execute, pipeline, initial_input, context)``.
    """
    return trio.run(PipelineExecutor().execute, pipeline, initial_input, context)


def _bare_exception(
    group: BaseExceptionGroup[BaseException], raised: BaseException | None = None
) -> BaseException | None:
    """The one exception to re-raise for *group*, if it has one.

    An interrupt first; then *raised*, the exception an ``open_run`` block
    raised; then the caller's cancellation, as one :class:`trio.Cancelled`.
    """
    found = leaves(group)
    interrupts = [e for e in found if _is_interrupt(e)]
    if interrupts:
        return interrupts[0]
    if any(e is raised for e in found) and all(
        e is raised or isinstance(e, trio.Cancelled) for e in found
    ):
        return raised
    if all(isinstance(e, trio.Cancelled) for e in found):
        return found[0]  # the caller's cancellation, as one trio.Cancelled
    return None


def _is_interrupt(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt | SystemExit)


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(isinstance(e, trio.Cancelled) for e in leaves(exc))
    return isinstance(exc, trio.Cancelled)


class Supervisor:
    """The supervisor of one run: owns the actors' nursery, the watchers, the result."""

    __slots__ = ("state",)

    def __init__(self, state: RunState) -> None:
        self.state = state

    async def run(self, initial_input: Any) -> PipelineResult:
        """Run every actor to its end and return the run's result."""
        state, graph = self.state, self.state.graph
        if state.dispatch.pipeline_started:
            state.dispatch.emit(
                "pipeline_started",
                PipelineStarted(
                    run_id=state.run_id,
                    pipeline=graph.name,
                    stage_ids=tuple(node.id for node in graph.nodes),
                    dependencies=graph.dependencies,
                    fail_fast=graph.fail_fast,
                    timeout_ms=None
                    if graph.timeout_s is None
                    else graph.timeout_s * 1000,
                ),
            )
        current = current_run.set((state.context, state.result_of))
        try:
            with structlog.contextvars.bound_contextvars(
                run_id=state.run_id, pipeline=graph.name
            ):
                await self._supervise(initial_input)
        except BaseException as exc:
            # Only noted, and re-raised: the caller cancelled us, or a stage
            # raised KeyboardInterrupt or SystemExit.
            if state.reason is None:
                state.reason = PipelineStatus.CANCELLED
                state.why = (
                    "cancelled by caller" if _is_cancellation(exc) else "interrupted"
                )
            raise
        finally:
            # Runs on every exit, so a cancelled or interrupted run still logs
            # a complete story; nothing here awaits.
            current_run.reset(current)
            result = self._result()
        return result

    async def _supervise(self, initial_input: Any) -> None:
        state, graph = self.state, self.state.graph
        context = state.context
        token = context.cancel_token
        if token is not None and token.is_set():
            state.cancel(
                PipelineStatus.CANCELLED, f"{context._cancel_reason} before the run"
            )
            await trio.lowlevel.checkpoint()  # execute is always a checkpoint
            return
        inboxes, outboxes = wire(graph)
        actors = [
            Actor(state, node, inboxes[i], outboxes[i], initial_input)
            for i, node in enumerate(graph.nodes)
        ]
        if graph.streaming:
            inlets, outlets = wire_streams(graph)
            for actor, inlet, items_out in zip(actors, inlets, outlets, strict=True):
                actor.inlet, actor.outlets = inlet, items_out
        async with trio.open_nursery() as helpers:

            def watch(token: trio.Event | None) -> None:
                if token is not None:
                    helpers.start_soon(self._watch_token, token)

            watch(token)
            # A token assigned during the run (by a stage, say) counts too.
            context._token_watchers.append(watch)
            if graph.timeout_s is not None:
                helpers.start_soon(self._watch_deadline, state.start + graph.timeout_s)
            helpers.start_soon(self._watchdog)
            try:
                with state.scope:
                    async with trio.open_nursery() as nursery:
                        for actor in actors:
                            nursery.start_soon(
                                actor.main, name=f"actor:{actor.node.id}"
                            )
                if state.reason is not None:
                    # A stage that blocked the event loop past the grace
                    # period ends before the watchdog gets its turn.
                    self._name_unresponsive()
            finally:
                context._token_watchers.remove(watch)
                # Cancelled from here even when an interrupt escapes the
                # actors: cancelled by trio on the way out instead, the
                # helpers' Cancelled would hold the frame holding the group,
                # a reference cycle left to the collector.
                helpers.cancel_scope.cancel()

    async def _watch_token(self, token: trio.Event) -> None:
        await token.wait()
        self.state.cancel(PipelineStatus.CANCELLED, self.state.context._cancel_reason)

    async def _watch_deadline(self, deadline: float) -> None:
        await trio.sleep_until(deadline)
        # Stages woken in this very instant (their sleep ended at the
        # deadline) run first, in trio's random batch order or not: work that
        # finished at the deadline counts.
        await trio.lowlevel.cancel_shielded_checkpoint()
        timeout_ms = (deadline - self.state.start) * 1000
        self.state.cancel(
            PipelineStatus.TIMED_OUT, f"pipeline timed out after {timeout_ms:g} ms"
        )

    async def _watchdog(self) -> None:
        """After a cancel, name the stages that do not stop within the grace period."""
        await self.state.cancelled.wait()
        await trio.sleep(self.state.grace_s)
        self._name_unresponsive()

    def _name_unresponsive(self) -> None:
        """Emit ``stage_unresponsive`` once per stage running past the grace period."""
        run = self.state
        if not run.dispatch.stage_unresponsive:
            return
        limit = run.cancelled_at + run.grace_s
        for node, state in zip(run.graph.nodes, run.states, strict=True):
            stopped = state.stopped_at
            if (
                state.started_at_ms is not None
                and not state.named_unresponsive
                # Still running, or it stopped only after the grace period.
                and (
                    (stopped is None and run.results[node.index] is None)
                    or (stopped is not None and stopped >= limit)
                )
            ):
                state.named_unresponsive = True
                event = StageUnresponsive(
                    run_id=run.run_id,
                    pipeline=run.graph.name,
                    stage_id=node.id,
                    cancelled_at_ms=run.cancelled_at_ms,
                    at_ms=run.now_ms(),
                )
                run.dispatch.emit("stage_unresponsive", event)

    def _result(self) -> PipelineResult:
        """Assemble the result; stages that never finished are reported cancelled."""
        run = self.state
        graph = run.graph
        stage_results: dict[str, StageResult[Any]] = {}
        outputs: dict[str, Any] = {}
        failed: list[str] = []
        success = run.reason is None
        for node, state in zip(graph.nodes, run.states, strict=True):
            stage = run.results[node.index]
            if stage is None:
                stage = state.cancelled(node, run.why or "cancelled", run.now_ms())
                run.record(node.index, stage)
            stage_results[node.id] = stage
            if (
                stage.status is StageStatus.SUCCEEDED
                or stage.status is StageStatus.SKIPPED
            ):
                outputs[node.id] = stage.output
                continue
            if stage.status is StageStatus.FAILED:
                failed.append(node.id)
            if node.definition.critical:
                success = False
        status = run.reason or (
            PipelineStatus.SUCCEEDED if success else PipelineStatus.FAILED
        )
        result = construct(
            PipelineResult,
            success=success,
            outputs=outputs,
            stage_results=stage_results,
            failed_stages=failed,
            total_duration_ms=run.now_ms(),
            metadata=dict(run.context.metrics),
            status=status,
            pipeline=graph.name,
            run_id=run.run_id,
            dependencies=graph.dependencies,
        )
        if run.dispatch.pipeline_finished:
            event = PipelineFinished(
                run_id=run.run_id,
                pipeline=graph.name,
                result=result,
                at_ms=result.total_duration_ms,
            )
            run.dispatch.emit("pipeline_finished", event)
        return result

"""The supervisor: runs a validated graph as one trio actor per stage."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import structlog
import trio

from .._context import PipelineContext
from .._definition import PipelineDefinition
from .._events import PipelineFinished, PipelineStarted, StageUnresponsive
from .._graph import graph_of
from .._logging import LoggingObserver
from .._observers import Dispatch, Observer
from .._results import (
    PipelineResult,
    PipelineStatus,
    StageResult,
    StageStatus,
    construct,
)
from .._util import leaves
from ._actor import Actor
from ._state import RunState
from ._wiring import wire

_LOGGING = LoggingObserver()


class PipelineExecutor:
    """Runs pipelines; one executor may run many pipelines, even at once.

    Args:
        observers: Receive the events of every run of this executor.
        log_events: Log every event through structlog (logger ``"actors"``).
        unresponsive_after_ms: Once a run is cancelled, a stage still running
            after this long is reported by a ``stage_unresponsive`` event.
        rng: Where retry jitter draws from; pass ``random.Random(seed)`` to
            make the delays of a run repeatable (default: the global random).
    """

    def __init__(
        self,
        *,
        observers: Iterable[Observer] = (),
        log_events: bool = True,
        unresponsive_after_ms: float = 1000,
        rng: random.Random | None = None,
    ) -> None:
        self._rng = rng
        self._observers = tuple(observers)
        if log_events:
            self._observers = (_LOGGING, *self._observers)
        self._grace_s = unresponsive_after_ms / 1000

    async def execute(
        self,
        pipeline: PipelineDefinition,
        initial_input: Any = None,
        context: PipelineContext[Any] | None = None,
        *,
        observers: Iterable[Observer] = (),
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

        Raises:
            PipelineValidationError: The definition is invalid; nothing ran.
        """
        graph = graph_of(pipeline)
        if context is None:
            context = PipelineContext()
        dispatch = Dispatch((*self._observers, *observers))
        supervisor = Supervisor(
            RunState(graph, context, dispatch, self._grace_s, self._rng)
        )
        try:
            return await supervisor.run(initial_input)
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


def _bare_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    found = leaves(group)
    interrupts = [e for e in found if isinstance(e, KeyboardInterrupt | SystemExit)]
    if interrupts:
        return interrupts[0]
    if all(isinstance(e, trio.Cancelled) for e in found):
        return found[0]  # the caller's cancellation, as one trio.Cancelled
    return None


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
            result = self._result()
        return result

    async def _supervise(self, initial_input: Any) -> None:
        state, graph = self.state, self.state.graph
        token = state.context.cancel_token
        if token is not None and token.is_set():
            state.cancel(PipelineStatus.CANCELLED, "cancel token set before the run")
            await trio.lowlevel.checkpoint()  # execute is always a checkpoint
            return
        inboxes, outboxes = wire(graph)
        actors = [
            Actor(state, node, inboxes[i], outboxes[i], initial_input)
            for i, node in enumerate(graph.nodes)
        ]
        async with trio.open_nursery() as helpers:
            if token is not None:
                helpers.start_soon(self._watch_token, token)
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
                # Cancelled from here even when an interrupt escapes the
                # actors: cancelled by trio on the way out instead, the
                # helpers' Cancelled would hold the frame holding the group,
                # a reference cycle left to the collector.
                helpers.cancel_scope.cancel()

    async def _watch_token(self, token: trio.Event) -> None:
        await token.wait()
        self.state.cancel(PipelineStatus.CANCELLED, "cancel token set")

    async def _watch_deadline(self, deadline: float) -> None:
        await trio.sleep_until(deadline)
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
                state.started_at_ms is not None  # it started, and has no result yet
                and not state.named_unresponsive
                and run.results[node.index] is None
                and (stopped is None or stopped >= limit)
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

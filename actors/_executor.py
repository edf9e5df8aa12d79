"""The supervisor: runs a validated graph as one trio actor per stage."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import structlog
import trio

from ._context import PipelineContext
from ._definition import PipelineDefinition
from ._events import (
    Dispatch,
    Observer,
    PipelineFinished,
    PipelineStarted,
    StageFinished,
    StageUnresponsive,
)
from ._graph import Graph, graph_of
from ._logging import LoggingObserver
from ._results import (
    PipelineResult,
    PipelineStatus,
    StageResult,
    StageStatus,
    construct,
)
from ._stage import Message, StageRunner, StageState, leaves

_LOGGING = LoggingObserver()


class PipelineExecutor:
    """Runs pipelines; one executor may run many pipelines, even at once.

    Args:
        observers: Receive the events of every run of this executor.
        log_events: Log every event through structlog (logger ``"actors"``).
        unresponsive_after_ms: Once a run is cancelled, a stage still running
            after this long is reported by a ``stage_unresponsive`` event.
    """

    def __init__(
        self,
        *,
        observers: Iterable[Observer] = (),
        log_events: bool = True,
        unresponsive_after_ms: float = 1000,
    ) -> None:
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
        run = _Run(graph, context, dispatch, self._grace_s)
        try:
            return await run.run(initial_input)
        except BaseExceptionGroup as group:
            # Policy: stage code cannot raise out of a run, so a group here
            # holds an interrupt (re-raised bare, as callers expect) or the
            # caller's cancellation (re-raised as one trio.Cancelled).
            interrupt = _bare_exception(group)
            if interrupt is None:
                raise
        # Raised outside the except clause, so the group is not its context,
        # and the name is dropped: its traceback holds this frame (issue 5).
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


class _Run:
    """The supervisor of one run: owns the actors, the cancel scope, the results."""

    def __init__(
        self,
        graph: Graph,
        context: PipelineContext[Any],
        dispatch: Dispatch,
        grace_s: float,
    ) -> None:
        self.graph = graph
        self.context = context
        self.dispatch = dispatch
        self.grace_s = grace_s
        self.run_id = uuid.uuid4().hex
        self.clock = trio.lowlevel.current_clock()
        self.start = self.clock.current_time()
        self.scope = trio.CancelScope()
        self.reason: PipelineStatus | None = None
        self.why = ""
        self.cancelled = trio.Event()
        self.cancelled_at_ms = 0.0
        # The clock time of the cancel, unrounded: "after" means strictly later.
        self.cancelled_at = float("inf")
        self.states = [StageState() for _ in graph.nodes]
        self.results: list[StageResult[Any] | None] = [None] * len(graph.nodes)

    def now_ms(self) -> float:
        """Milliseconds since the run started, from the trio clock."""
        return round((self.clock.current_time() - self.start) * 1000, 6)

    def cancel(self, reason: PipelineStatus, why: str) -> None:
        """Cancel every actor; the first reason given is the one reported."""
        if self.reason is None:
            self.reason = reason
            self.why = why
            self.cancelled_at = self.clock.current_time()
            self.cancelled_at_ms = round((self.cancelled_at - self.start) * 1000, 6)
            self.scope.cancel()
            self.cancelled.set()

    def record(self, index: int, result: StageResult[Any]) -> None:
        """Store a stage's final result and tell the observers."""
        node = self.graph.nodes[index]
        self.results[index] = result
        if self.dispatch.stage_finished:
            at = result.profile.finished_at_ms if result.profile else self.now_ms()
            event = StageFinished(
                self.run_id, self.graph.name, node.id, result, at or 0.0
            )
            self.dispatch.emit("stage_finished", event)
        if (
            result.status is StageStatus.FAILED
            and node.definition.critical
            and self.graph.fail_fast
        ):
            self.cancel(PipelineStatus.FAILED, f"stage {node.id!r} failed")

    async def run(self, initial_input: Any) -> PipelineResult:
        graph = self.graph
        if self.dispatch.pipeline_started:
            self.dispatch.emit(
                "pipeline_started",
                PipelineStarted(
                    self.run_id,
                    graph.name,
                    tuple(node.id for node in graph.nodes),
                    graph.dependencies,
                    graph.fail_fast,
                    None if graph.timeout_s is None else graph.timeout_s * 1000,
                ),
            )
        try:
            with structlog.contextvars.bound_contextvars(
                run_id=self.run_id, pipeline=graph.name
            ):
                await self._supervise(initial_input)
        except BaseException as exc:
            # Only noted, and re-raised: the caller cancelled us, or a stage
            # raised KeyboardInterrupt or SystemExit.
            if self.reason is None:
                self.reason = PipelineStatus.CANCELLED
                self.why = (
                    "cancelled by caller" if _is_cancellation(exc) else "interrupted"
                )
            raise
        finally:
            # Runs on every exit, so a cancelled or interrupted run still logs
            # a complete story; nothing here awaits.
            result = self._result()
        return result

    async def _supervise(self, initial_input: Any) -> None:
        graph = self.graph
        token = self.context.cancel_token
        if token is not None and token.is_set():
            self.cancel(PipelineStatus.CANCELLED, "cancel token set before the run")
            await trio.lowlevel.checkpoint()  # execute is always a checkpoint
            return
        runners = self._wire(initial_input)
        async with trio.open_nursery() as helpers:
            if token is not None:
                helpers.start_soon(self._watch_token, token)
            if graph.timeout_s is not None:
                helpers.start_soon(self._watch_deadline, self.start + graph.timeout_s)
            helpers.start_soon(self._watchdog)
            try:
                with self.scope:
                    async with trio.open_nursery() as actors:
                        for runner in runners:
                            actors.start_soon(
                                runner.run, name=f"actor:{runner.node.id}"
                            )
                if self.reason is not None:
                    # A stage that blocked the event loop past the grace
                    # period ends before the watchdog gets its turn.
                    self._name_unresponsive()
            finally:
                # Cancelled from here even when an interrupt escapes the
                # actors: cancelled by trio on the way out instead, the
                # helpers' Cancelled would hold the frame holding the group,
                # a reference cycle left to the collector (issue 5).
                helpers.cancel_scope.cancel()

    def _wire(self, initial_input: Any) -> list[StageRunner]:
        """Create one inbox per stage, and one send endpoint per edge."""
        nodes = self.graph.nodes
        outboxes: list[list[trio.MemorySendChannel[Message]]] = [[] for _ in nodes]
        inboxes: list[trio.MemoryReceiveChannel[Message] | None] = []
        for node in nodes:
            if not node.inputs:
                inboxes.append(None)
                continue
            # One slot per producer, so a producer's send never blocks.
            # Not open_memory_channel[Message](...): calling the subscripted
            # alias costs ~3 us more per stage (the bench's dag overhead).
            send: trio.MemorySendChannel[Message]
            receive: trio.MemoryReceiveChannel[Message]
            send, receive = trio.open_memory_channel(len(node.inputs))
            inboxes.append(receive)
            outboxes[node.inputs[0]].append(send)
            for source in node.inputs[1:]:
                outboxes[source].append(send.clone())
        return [
            StageRunner(self, node, inboxes[i], outboxes[i], initial_input)
            for i, node in enumerate(nodes)
        ]

    async def _watch_token(self, token: trio.Event) -> None:
        await token.wait()
        self.cancel(PipelineStatus.CANCELLED, "cancel token set")

    async def _watch_deadline(self, deadline: float) -> None:
        await trio.sleep_until(deadline)
        timeout_ms = (deadline - self.start) * 1000
        self.cancel(
            PipelineStatus.TIMED_OUT, f"pipeline timed out after {timeout_ms:g} ms"
        )

    async def _watchdog(self) -> None:
        """After a cancel, name the stages that do not stop within the grace period."""
        await self.cancelled.wait()
        await trio.sleep(self.grace_s)
        self._name_unresponsive()

    def _name_unresponsive(self) -> None:
        """Emit ``stage_unresponsive`` once per stage running past the grace period."""
        if not self.dispatch.stage_unresponsive:
            return
        limit = self.cancelled_at + self.grace_s
        for node, state in zip(self.graph.nodes, self.states, strict=True):
            stopped = state.stopped_at
            if (
                state.started_at_ms is not None  # it started, and has no result yet
                and not state.named_unresponsive
                and self.results[node.index] is None
                and (stopped is None or stopped >= limit)
            ):
                state.named_unresponsive = True
                event = StageUnresponsive(
                    self.run_id,
                    self.graph.name,
                    node.id,
                    self.cancelled_at_ms,
                    self.now_ms(),
                )
                self.dispatch.emit("stage_unresponsive", event)

    def _result(self) -> PipelineResult:
        """Assemble the result; stages that never finished are reported cancelled."""
        graph = self.graph
        stage_results: dict[str, StageResult[Any]] = {}
        outputs: dict[str, Any] = {}
        failed: list[str] = []
        success = self.reason is None
        for node, state in zip(graph.nodes, self.states, strict=True):
            stage = self.results[node.index]
            if stage is None:
                stage = state.cancelled(node, self.why or "cancelled", self.now_ms())
                self.record(node.index, stage)
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
        status = self.reason or (
            PipelineStatus.SUCCEEDED if success else PipelineStatus.FAILED
        )
        result = construct(
            PipelineResult,
            success=success,
            outputs=outputs,
            stage_results=stage_results,
            failed_stages=failed,
            total_duration_ms=self.now_ms(),
            metadata=dict(self.context.metrics),
            status=status,
            pipeline=graph.name,
            run_id=self.run_id,
            dependencies=graph.dependencies,
        )
        if self.dispatch.pipeline_finished:
            event = PipelineFinished(
                self.run_id, graph.name, result, result.total_duration_ms
            )
            self.dispatch.emit("pipeline_finished", event)
        return result

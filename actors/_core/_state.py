"""What the supervisor and its actors share: one record per run, one per stage."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from .._events import StageFinished
from .._results import (
    PipelineStatus,
    StageProfile,
    StageResult,
    StageStatus,
    construct,
)

if TYPE_CHECKING:
    from .._context import PipelineContext
    from .._graph import Graph, Node
    from .._limits import Limits
    from .._observers import Dispatch
    from .._sketch import DurationSketch
    from ._live import Live
    from ._resume import Durable

# The kernel builds results from values it has checked: skip validation.
new_result = partial(construct, StageResult)
new_profile = partial(construct, StageProfile)


@dataclass(eq=False, slots=True)
class StageState:
    """What the supervisor knows of a stage while it runs."""

    ready_at_ms: float | None = None
    started_at_ms: float | None = None
    attempts: int = 0
    attempt_ms: list[float] | None = None
    backoff_ms: float = 0.0
    items: int | None = None
    item_ms: DurationSketch | None = None
    item_queued_ms: float = 0.0
    item_running_ms: float = 0.0
    swallowed_cancel: bool = False
    cancel_errors: list[str] | None = None
    stopped_at: float | None = None
    """Clock time its actor ended, if the run was cancelled by then."""
    named_unresponsive: bool = False
    throttle_ms: float | None = None
    """Time queued on named limits, once the stage took one."""
    item_errors: dict[int, str] | None = None
    """A ``"collect"`` fan-out's failed items (``None`` for other stages)."""
    first_item_ms: float | None = None
    blocked_ms: float | None = None
    starved_ms: float | None = None

    def profile(self, finished_at_ms: float) -> StageProfile:
        """Freeze what was measured into a profile."""
        started, ready = self.started_at_ms, self.ready_at_ms
        queued = 0.0 if started is None or ready is None else started - ready
        queued += self.item_queued_ms
        p50 = p95 = top = None
        if self.item_ms:
            p50 = round(self.item_ms.percentile(0.50), 6)
            p95 = round(self.item_ms.percentile(0.95), 6)
            top = round(self.item_ms.maximum, 6)
        return new_profile(
            ready_at_ms=ready,
            started_at_ms=started,
            finished_at_ms=finished_at_ms,
            queued_ms=round(queued, 6),
            attempt_ms=() if self.attempt_ms is None else tuple(self.attempt_ms),
            backoff_ms=round(self.backoff_ms, 6),
            items=self.items,
            item_p50_ms=p50,
            item_p95_ms=p95,
            item_max_ms=top,
            item_running_ms=None
            if self.item_ms is None
            else round(self.item_running_ms, 6),
            throttle_ms=None
            if self.throttle_ms is None
            else round(self.throttle_ms, 6),
            first_item_ms=self.first_item_ms,
            blocked_ms=None if self.blocked_ms is None else round(self.blocked_ms, 6),
            starved_ms=None if self.starved_ms is None else round(self.starved_ms, 6),
        )

    def cancelled(self, node: Node, why: str, now_ms: float) -> StageResult[Any]:
        """Return the result of a stage stopped (or never started) by cancellation."""
        metadata: dict[str, Any] = {}
        error = f"cancelled: {why}"
        if self.swallowed_cancel:
            metadata["contract_violation"] = "swallowed trio.Cancelled"
            error += (
                "; the stage swallowed trio.Cancelled and ran on (contract violation)"
            )
        if self.cancel_errors:
            metadata["errors_during_cancellation"] = self.cancel_errors
            error += "; errors during cancellation: " + "; ".join(self.cancel_errors)
        started = self.started_at_ms
        return new_result(
            success=False,
            stage_name=node.id,
            error=error,
            metadata=metadata,
            status=StageStatus.CANCELLED,
            attempts=self.attempts,
            duration_ms=0.0 if started is None else round(now_ms - started, 6),
            profile=self.profile(now_ms),
        )


class RunState:
    """One run: its graph, context, observers, clock, cancel state and results.

    The supervisor creates it; every actor reads it and reports through
    :meth:`record` and :meth:`cancel`. Nothing here awaits.
    """

    __slots__ = (
        "cancelled",
        "cancelled_at",
        "cancelled_at_ms",
        "clock",
        "context",
        "dispatch",
        "durable",
        "grace_s",
        "graph",
        "limits",
        "live",
        "reason",
        "results",
        "rng",
        "run_id",
        "scope",
        "start",
        "states",
        "why",
    )

    def __init__(
        self,
        graph: Graph,
        context: PipelineContext[Any],
        dispatch: Dispatch,
        grace_s: float,
        *,
        limits: Limits | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.graph = graph
        self.limits = limits
        self.rng = rng
        """Where retry jitter draws from (``None``: the global random)."""
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
        # Set by _resume for the length of a durable run.
        self.durable: Durable | None = None
        # Set by open_run: the hub its taps read.
        self.live: Live | None = None

    def now_ms(self) -> float:
        """Milliseconds since the run started, from the trio clock."""
        return round((self.clock.current_time() - self.start) * 1000, 6)

    def cancel(self, reason: PipelineStatus, why: str) -> None:
        """Cancel every actor; the first reason given is the one reported.

        Once every stage has its final result there is nothing left to cut:
        a deadline or a token that comes then changes nothing.
        """
        if self.reason is None and None in self.results:
            self.reason = reason
            self.why = why
            self.cancelled_at = self.clock.current_time()
            self.cancelled_at_ms = round((self.cancelled_at - self.start) * 1000, 6)
            self.scope.cancel()
            self.cancelled.set()

    def result_of(self, stage_id: str) -> StageResult[Any] | None:
        """Return the final result of stage *stage_id*, once it has one."""
        for node in self.graph.nodes:
            if node.id == stage_id:
                return self.results[node.index]
        return None

    def record(self, index: int, result: StageResult[Any]) -> None:
        """Store a stage's final result and tell the observers."""
        node = self.graph.nodes[index]
        self.results[index] = result
        if self.live is not None:
            self.live.stage_ended(node, result)
        if self.dispatch.stage_finished:
            at = result.profile.finished_at_ms if result.profile else self.now_ms()
            event = StageFinished(
                run_id=self.run_id,
                pipeline=self.graph.name,
                stage_id=node.id,
                result=result,
                at_ms=at or 0.0,
            )
            self.dispatch.emit("stage_finished", event)
        if (
            result.status is StageStatus.FAILED
            and node.definition.critical
            and self.graph.fail_fast
        ):
            self.cancel(PipelineStatus.FAILED, f"stage {node.id!r} failed")

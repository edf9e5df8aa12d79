"""What a run produces: stage results, their profiles, and the pipeline result."""

from __future__ import annotations

import enum
from collections.abc import Collection
from typing import Any, Generic

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeVar

OutputT = TypeVar("OutputT", default=Any)


class StageStatus(enum.StrEnum):
    """The terminal status of a stage."""

    SUCCEEDED = "succeeded"
    """The stage ran and produced an output."""
    FAILED = "failed"
    """The stage ran (or its condition or input check did) and failed."""
    SKIPPED = "skipped"
    """Its condition returned false; downstream stages receive ``None``."""
    CANCELLED = "cancelled"
    """Stopped, or never started, because the run was cancelled."""
    UPSTREAM_FAILED = "upstream_failed"
    """Never ran, because a critical stage it depends on failed."""


class PipelineStatus(enum.StrEnum):
    """How a run ended."""

    SUCCEEDED = "succeeded"
    """Every critical stage succeeded or was skipped."""
    FAILED = "failed"
    """A critical stage failed (or never ran because of one)."""
    TIMED_OUT = "timed_out"
    """The pipeline's own ``timeout_ms`` expired."""
    CANCELLED = "cancelled"
    """The ``cancel_token`` was set, the caller cancelled, or a stage interrupted."""


class StageProfile(BaseModel):
    """Where a stage's time went, from the trio clock, in ms since the run started.

    Exact under a mock clock such as pytest-trio's ``autojump_clock``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ready_at_ms: float | None = None
    """When the last of its inputs arrived (``None`` if it never got them)."""
    started_at_ms: float | None = None
    """When its first attempt (or first fan-out item) started."""
    finished_at_ms: float | None = None
    """When its terminal status was decided."""
    queued_ms: float = 0.0
    """Time from ready to first start; fan-out adds each item's wait for a slot.

    Fan-out waits are summed over items, so they can exceed the duration."""
    attempt_ms: tuple[float, ...] = ()
    """Running time of each attempt, in order, a cancelled one included.

    Empty for fan-out stages, whose items are summarised by the ``item_*``
    figures instead (one entry per item would not scale)."""
    backoff_ms: float = 0.0
    """Time spent sleeping between attempts (fan-out: summed over items)."""
    items: int | None = None
    """Fan-out: how many items the input list had; streaming: how many
    items it produced (or received)."""
    item_p50_ms: float | None = None
    """Fan-out only: median duration of a finished item, retries included."""
    item_p95_ms: float | None = None
    """Fan-out only: 95th percentile (nearest rank) of item durations."""
    item_max_ms: float | None = None
    """Fan-out only: the slowest item's duration."""
    item_running_ms: float | None = None
    """Fan-out only: time spent inside item attempts, summed over items."""
    throttle_ms: float | None = None
    """Time queued on named limits (fan-out: summed over items); ``None`` if
    the stage took none. Not part of any attempt's running time or timeout."""
    first_item_ms: float | None = None
    """Streaming only: when its first item was produced (a producer) or
    arrived (a FAN_OUT fed by a stream)."""
    blocked_ms: float | None = None
    """Streaming producers: time spent waiting for consumers to take items
    (backpressure); large means the consumers are the bottleneck."""
    starved_ms: float | None = None
    """FAN_OUT fed by a stream: time its free slots waited for items, summed
    over slots; large means the producer is the bottleneck."""

    @property
    def running_ms(self) -> float:
        """Total time spent inside attempts (fan-out: summed over items)."""
        if self.item_running_ms is not None:
            return self.item_running_ms
        return round(sum(self.attempt_ms), 6)


class StageResult(BaseModel, Generic[OutputT]):
    """The outcome of one stage.

    Build one with :func:`success_result` or :func:`failure_result` inside a
    stage object's ``execute``; the executor fills in ``status``, ``attempts``,
    ``duration_ms`` and ``profile``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    success: bool
    """True for succeeded and skipped stages."""
    stage_name: str = "unknown"
    """The stage's name (the stage id when the executor built the result)."""
    output: OutputT | None = None
    """The output; ``None`` unless the stage succeeded."""
    error: str | None = None
    """What went wrong, for failed stages; the reason, for cancelled ones."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Free-form data from the stage; ``{"skipped": True, ...}`` for skips."""
    status: StageStatus = StageStatus.SUCCEEDED
    """The terminal status."""
    attempts: int = 0
    """How many times the stage function ran (fan-out: summed over items)."""
    duration_ms: float = 0.0
    """Time from the first start to the end, from the trio clock."""
    profile: StageProfile | None = None
    """Where the time went; set by the executor."""
    exception: BaseException | None = Field(default=None, exclude=True, repr=False)
    """The exception behind a failure, for debugging; never serialized."""
    restored_from: str | None = None
    """The id of the earlier run whose checkpointed result this stage reused."""
    item_errors: dict[int, str] = Field(default_factory=dict)
    """A fan-out with ``item_failures="collect"``: the error of each failed
    item, by its index in the input (empty otherwise)."""
    partial: bool = False
    """True when a ``"collect"`` fan-out had an item fail: the output holds
    ``None`` at each failed position."""


def success_result(
    output: OutputT,
    stage_name: str = "unknown",
    metadata: dict[str, Any] | None = None,
) -> StageResult[OutputT]:
    """Return a succeeded :class:`StageResult` carrying *output*."""
    return StageResult[OutputT](
        success=True,
        stage_name=stage_name,
        output=output,
        metadata=metadata or {},
        status=StageStatus.SUCCEEDED,
    )


def failure_result(
    error: str,
    stage_name: str = "unknown",
    metadata: dict[str, Any] | None = None,
    *,
    exception: BaseException | None = None,
) -> StageResult[Any]:
    """Return a failed :class:`StageResult` whose error text is *error*."""
    return StageResult[Any](
        success=False,
        stage_name=stage_name,
        error=error,
        metadata=metadata or {},
        status=StageStatus.FAILED,
        exception=exception,
    )


def skipped_result(
    stage_name: str = "unknown",
    reason: str = "condition returned False",
    metadata: dict[str, Any] | None = None,
) -> StageResult[Any]:
    """Return a skipped :class:`StageResult` (``metadata["skipped"] is True``)."""
    return StageResult[Any](
        success=True,
        stage_name=stage_name,
        metadata={**(metadata or {}), "skipped": True, "reason": reason},
        status=StageStatus.SKIPPED,
    )


def cancelled_result(
    stage_name: str = "unknown",
    reason: str = "cancelled",
    metadata: dict[str, Any] | None = None,
) -> StageResult[Any]:
    """Return a cancelled :class:`StageResult`; *reason* becomes its error text."""
    return StageResult[Any](
        success=False,
        stage_name=stage_name,
        error=reason,
        metadata=metadata or {},
        status=StageStatus.CANCELLED,
    )


class TimelineEntry(BaseModel):
    """One stage on a run's timeline, in ms since the run started."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage_id: str
    status: StageStatus
    ready_at_ms: float | None
    started_at_ms: float | None
    finished_at_ms: float | None
    attempts: int


class PipelineResult(BaseModel):
    """The outcome of a run: every stage's result, and the run as a whole."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    success: bool
    """True when every critical stage succeeded or was skipped."""
    outputs: dict[str, Any]
    """Outputs of succeeded stages, and ``None`` for skipped ones."""
    stage_results: dict[str, StageResult[Any]]
    """Every stage of the definition, in declaration order."""
    failed_stages: list[str]
    """Ids of stages whose status is failed (critical or not)."""
    total_duration_ms: float
    """The run's duration, from the trio clock."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """The context's metrics, as they were when the run ended."""
    status: PipelineStatus = PipelineStatus.SUCCEEDED
    """How the run ended."""
    pipeline: str = ""
    """The pipeline's name."""
    run_id: str = ""
    """Unique per run; the ``run_id`` of every event of this run."""
    dependencies: dict[str, tuple[str, ...]] = Field(default_factory=dict, repr=False)
    """Each stage's inputs, so the critical path can be computed."""

    def get_output(self, stage_id: str) -> Any:
        """Return the output of *stage_id* (``None`` if it has none)."""
        return self.outputs.get(stage_id)

    def get_result(self, stage_id: str) -> StageResult[Any] | None:
        """Return the :class:`StageResult` of *stage_id*, or ``None`` if unknown."""
        return self.stage_results.get(stage_id)

    def timeline(self) -> list[TimelineEntry]:
        """Return every stage with its times, ordered by start (unstarted last)."""
        entries = [
            TimelineEntry(
                stage_id=stage_id,
                status=result.status,
                ready_at_ms=result.profile.ready_at_ms if result.profile else None,
                started_at_ms=result.profile.started_at_ms if result.profile else None,
                finished_at_ms=result.profile.finished_at_ms
                if result.profile
                else None,
                attempts=result.attempts,
            )
            for stage_id, result in self.stage_results.items()
        ]
        never = float("inf")
        entries.sort(
            key=lambda e: never if e.started_at_ms is None else e.started_at_ms
        )
        return entries

    def critical_path(self) -> list[str]:
        """Return the chain of stages that determined the makespan, first to last.

        Starts from the stage that finished last and walks back, each time to
        the input that arrived last (the one the stage was waiting for).
        Stages that never started (skipped, upstream failed, cancelled before
        starting) end the path only if no stage started at all.
        """
        return critical_path(
            {
                stage_id: r.profile.finished_at_ms if r.profile else None
                for stage_id, r in self.stage_results.items()
            },
            self.dependencies,
            started={
                stage_id
                for stage_id, r in self.stage_results.items()
                if r.profile is not None and r.profile.started_at_ms is not None
            },
        )


def critical_path(
    finished_at: dict[str, float | None],
    dependencies: dict[str, tuple[str, ...]],
    *,
    started: Collection[str] | None = None,
) -> list[str]:
    """Walk back from the last stage to finish through its latest input.

    If *started* is given, the path ends at the last stage to finish among
    those that started (a stage that never ran did not take any time, so it
    cannot have decided the makespan); the walk back takes any input.
    """
    done = {s: t for s, t in finished_at.items() if t is not None}
    if not done:
        return []
    ran = [s for s in done if started is None or s in started]
    current = _latest(ran or list(done), done)
    path = [current]
    while inputs := [s for s in dependencies.get(current, ()) if s in done]:
        current = _latest(inputs, done)
        path.append(current)
    path.reverse()
    return path


def _latest(stage_ids: list[str], finished_at: dict[str, float]) -> str:
    # Ties go to the stage listed first, so the path is deterministic.
    best = stage_ids[0]
    for stage_id in stage_ids[1:]:
        if finished_at[stage_id] > finished_at[best]:
            best = stage_id
    return best


ModelT = TypeVar("ModelT", bound=BaseModel)


def construct(cls: type[ModelT], /, **fields: Any) -> ModelT:
    """Build *cls* from fields the executor already knows to be valid.

    The executor's hot path: what ``BaseModel.model_construct`` does (no
    validation; missing fields take their defaults), about five times faster,
    because the defaults are computed once per class. Only pydantic v2's
    documented instance attributes are set.
    """
    try:
        defaults, factories = _DEFAULTS[cls]
    except KeyError:
        defaults, factories = _DEFAULTS[cls] = _defaults_of(cls)
    values = {**defaults, **fields}
    for name, factory in factories:
        if name not in values:
            values[name] = factory()
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", set(fields))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


_Defaults = tuple[dict[str, Any], tuple[tuple[str, Any], ...]]
_DEFAULTS: dict[type[BaseModel], _Defaults] = {}


def _defaults_of(cls: type[BaseModel]) -> _Defaults:
    defaults: dict[str, Any] = {}
    factories: list[tuple[str, Any]] = []
    for name, info in cls.model_fields.items():
        if info.default_factory is not None:
            factories.append((name, info.default_factory))
        elif not info.is_required():
            defaults[name] = info.default
    return defaults, tuple(factories)

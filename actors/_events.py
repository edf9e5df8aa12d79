"""Typed event records: frozen, keyword-only, one per thing that happens in a run."""

from __future__ import annotations

from dataclasses import dataclass

from ._results import PipelineResult, StageResult, StageStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineStarted:
    """A run began; ``at_ms`` is always 0."""

    run_id: str
    pipeline: str
    stage_ids: tuple[str, ...]
    dependencies: dict[str, tuple[str, ...]]
    fail_fast: bool
    timeout_ms: float | None
    at_ms: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StageStarted:
    """An attempt of a stage (or of one fan-out item) began.

    A fan-out stage first reports itself once (``attempt`` 1, ``item_index``
    ``None``, ``items`` the number of items), then every item attempt.
    """

    run_id: str
    pipeline: str
    stage_id: str
    attempt: int
    at_ms: float
    item_index: int | None = None
    items: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StageRetrying:
    """An attempt failed and another follows after ``delay_ms``."""

    run_id: str
    pipeline: str
    stage_id: str
    attempt: int
    delay_ms: float
    error: str
    error_type: str | None
    at_ms: float
    item_index: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemFinished:
    """One fan-out item ended (successfully or not; cancelled items excluded)."""

    run_id: str
    pipeline: str
    stage_id: str
    item_index: int
    success: bool
    attempts: int
    duration_ms: float
    error: str | None
    error_type: str | None
    at_ms: float
    exception: BaseException | None = None
    """The exception of a failed item's last attempt, with its traceback."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StageFinished:
    """A stage reached its terminal status; ``result`` says which."""

    run_id: str
    pipeline: str
    stage_id: str
    result: StageResult
    at_ms: float

    @property
    def status(self) -> StageStatus:
        """Shortcut for ``result.status``."""
        return self.result.status

    @property
    def summary(self) -> str:
        """The status, with item counts when fan-out items failed and were kept.

        E.g. ``succeeded (57 of 60 items; 3 failed)`` for an
        ``item_failures="collect"`` fan-out; otherwise just the status.
        """
        return summary(self.result)


def summary(result: StageResult) -> str:
    """Return *result*'s status, with item counts if collected items failed."""
    failed = len(result.item_errors)
    profile = result.profile
    if not failed or profile is None or profile.items is None:
        return result.status.value
    count = profile.items
    return f"{result.status.value} ({count - failed} of {count} items; {failed} failed)"


@dataclass(frozen=True, slots=True, kw_only=True)
class StageUnresponsive:
    """A cancelled stage has not yielded after the executor's grace period."""

    run_id: str
    pipeline: str
    stage_id: str
    cancelled_at_ms: float
    at_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitWaited:
    """A stage (or fan-out item) was granted a named limit.

    ``waited_ms`` is the time it queued (for a concurrency slot and the
    meters); 0 when the limit did not bind.
    """

    run_id: str
    pipeline: str
    stage_id: str
    limit: str
    waited_ms: float
    requests: int
    tokens: float
    at_ms: float
    item_index: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitPaused:
    """A named limit was paused (a provider's Retry-After) until ``until_ms``.

    Every stage and run sharing the limit waits; ``stage_id`` is the stage
    that reported it.
    """

    run_id: str
    pipeline: str
    stage_id: str
    limit: str
    pause_ms: float
    until_ms: float
    at_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineFinished:
    """A run ended; ``result`` is what ``execute`` returns."""

    run_id: str
    pipeline: str
    result: PipelineResult
    at_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OffloadOrphaned:
    """A cancelled offloaded call may still be running where trio cannot stop it.

    An abandoned thread (``backend="thread"``, ``key`` ``None``) or a Dask
    task (``backend="dask"``, ``key`` its task key) that was queued or
    executing when its attempt was cancelled: the attempt is cancelled (or
    timed out), the work may go on, and its result is discarded.
    """

    run_id: str
    pipeline: str
    stage_id: str
    item_index: int | None
    backend: str
    key: str | None
    at_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StageRestored:
    """A stage, or some items of a fan-out stage, reused a checkpointed result.

    ``restored_from`` is the id of the run that produced it. For a whole
    stage ``items`` is ``None``; for a fan-out stage it is how many of its
    ``total`` items were restored (the others run). For a streaming stage it
    is how many produced items were restored, reported before they are
    delivered; ``total`` is the same when the stream's end was restored too
    (the generator is not called), else ``None`` (it goes on from there). A
    restored body is not called; the calls it made to ``set_state`` and the
    metrics are replayed.
    """

    run_id: str
    pipeline: str
    stage_id: str
    restored_from: str
    at_ms: float
    items: int | None = None
    total: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointSkipped:
    """A unit succeeded but could not be checkpointed; ``reason`` says why and the fix.

    For example its output is not JSON-native and the stage declares no type,
    or its input has no JSON form. The result is used as usual; a resume runs
    the unit again.
    """

    run_id: str
    pipeline: str
    stage_id: str
    reason: str
    at_ms: float
    item_index: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointCorrupt:
    """Stored records could not be used: damaged, tampered with, or undecodable.

    They are misses: the units they held run again. ``stage_id`` is ``None``
    for damaged records found while reading the resumed run's journal.
    """

    run_id: str
    pipeline: str
    stage_id: str | None
    reason: str
    at_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointFailed:
    """The store failed (``operation`` raised ``error``); the run goes on unrecorded."""

    run_id: str
    pipeline: str
    operation: str
    error: str
    at_ms: float

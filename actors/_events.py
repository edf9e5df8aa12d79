"""Typed event records, and the observer interface that receives them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from ._results import PipelineResult, StageResult, StageStatus

logger = structlog.get_logger("actors")


@dataclass(frozen=True, slots=True)
class PipelineStarted:
    """A run began; ``at_ms`` is always 0."""

    run_id: str
    pipeline: str
    stage_ids: tuple[str, ...]
    dependencies: dict[str, tuple[str, ...]]
    fail_fast: bool
    timeout_ms: float | None
    at_ms: float = 0.0


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class StageUnresponsive:
    """A cancelled stage has not yielded after the executor's grace period."""

    run_id: str
    pipeline: str
    stage_id: str
    cancelled_at_ms: float
    at_ms: float


@dataclass(frozen=True, slots=True)
class PipelineFinished:
    """A run ended; ``result`` is what ``execute`` returns."""

    run_id: str
    pipeline: str
    result: PipelineResult
    at_ms: float


class Observer:
    """Receives the events of the runs it is registered for.

    Subclass it and override the methods you need; the others cost nothing,
    because the executor calls only overridden ones (as trio does for
    :class:`trio.abc.Instrument`). Methods are synchronous and run inside the
    run, so keep them short. An observer that raises is disabled for the rest
    of the run and an ``observer_failed`` event is logged; the run goes on.
    """

    def pipeline_started(self, event: PipelineStarted) -> None:
        """A run began."""

    def stage_started(self, event: StageStarted) -> None:
        """An attempt of a stage or fan-out item began."""

    def stage_retrying(self, event: StageRetrying) -> None:
        """An attempt failed; another will follow."""

    def item_finished(self, event: ItemFinished) -> None:
        """A fan-out item ended."""

    def stage_finished(self, event: StageFinished) -> None:
        """A stage reached its terminal status."""

    def stage_unresponsive(self, event: StageUnresponsive) -> None:
        """A cancelled stage is still running after the grace period."""

    def pipeline_finished(self, event: PipelineFinished) -> None:
        """A run ended."""


HOOKS = (
    "pipeline_started",
    "stage_started",
    "stage_retrying",
    "item_finished",
    "stage_finished",
    "stage_unresponsive",
    "pipeline_finished",
)


class Dispatch:
    """The observers of one run, sorted by the hooks they override."""

    __slots__ = ("_observers", *HOOKS)

    pipeline_started: list[Observer]
    stage_started: list[Observer]
    stage_retrying: list[Observer]
    item_finished: list[Observer]
    stage_finished: list[Observer]
    stage_unresponsive: list[Observer]
    pipeline_finished: list[Observer]

    def __init__(self, observers: Iterable[Observer]) -> None:
        # By identity: observers need not be hashable, and equal ones are
        # still distinct observers.
        unique = {id(observer): observer for observer in observers}
        self._observers = list(unique.values())
        for hook in HOOKS:
            setattr(self, hook, self._overriding(hook))

    def _overriding(self, hook: str) -> list[Observer]:
        base = getattr(Observer, hook)
        return [o for o in self._observers if getattr(type(o), hook, base) is not base]

    def emit(self, hook: str, event: object) -> None:
        """Call *hook* on every observer that overrides it, disabling any that raise."""
        observers: list[Observer] = getattr(self, hook)
        for observer in tuple(observers):
            try:
                getattr(observer, hook)(event)
            except Exception as exc:  # an observer must never break the run
                self._disable(observer)
                self._report(observer, hook, event, exc)

    def _report(
        self, observer: Observer, hook: str, event: object, exc: Exception
    ) -> None:
        """Log ``observer_failed``, unless logging is what fails (issue 3).

        The failing observer may be the logging one, say with its log file
        closed: reporting through the same logger must not break the run.
        """
        with contextlib.suppress(Exception):
            logger.error(
                "observer_failed",
                # Every event has these; the log names the run (issue 3).
                run_id=getattr(event, "run_id", None),
                pipeline=getattr(event, "pipeline", None),
                stage_id=getattr(event, "stage_id", None),
                observer=type(observer).__qualname__,
                hook=hook,
                error=f"{type(exc).__name__}: {exc}",
                error_type=type(exc).__name__,
                exc_info=exc,
            )

    def _disable(self, observer: Observer) -> None:
        for hook in HOOKS:
            observers: list[Observer] = getattr(self, hook)
            observers[:] = [o for o in observers if o is not observer]

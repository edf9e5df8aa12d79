"""The observer interface, and the per-run table of who overrides which hook."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import structlog

from ._events import (
    ItemFinished,
    PipelineFinished,
    PipelineStarted,
    StageFinished,
    StageRetrying,
    StageStarted,
    StageUnresponsive,
)

logger = structlog.get_logger("actors")


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
        """Log ``observer_failed``, unless logging is what fails.

        The failing observer may be the logging one, say with its log file
        closed: reporting through the same logger must not break the run.
        """
        with contextlib.suppress(Exception):
            logger.error(
                "observer_failed",
                # Every event has these; the log names the run.
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

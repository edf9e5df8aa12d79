"""The observer interface, the attempt hook, and the per-run dispatch table."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class AttemptHook(Protocol):
    """Wraps every attempt of every stage (and fan-out item) of a run.

    Pass an object with this method in ``observers``, like an
    :class:`Observer` (one object may be both). The context manager it
    returns is entered just before the stage function is called and exited
    just after it returns or raises, in the attempt's own task: context
    variables it sets (a current span) are seen by the stage's code, by the
    tasks it starts and by ``trio.to_thread`` calls. Both steps are
    synchronous and must not checkpoint. An exception escaping them (other
    than a deliberate ``BaseException``) disables the hook for the rest of
    the run, as for an observer; the value its ``__exit__`` returns is
    ignored: a hook never swallows the stage's exception.
    """

    def around_attempt(
        self,
        *,
        run_id: str,
        pipeline: str,
        stage_id: str,
        item_index: int | None,
        attempt: int,
    ) -> AbstractContextManager[object]:
        """Return the context to run attempt *attempt* (from 1) in."""
        ...


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

    __slots__ = ("_observers", "attempt_hooks", *HOOKS)

    attempt_hooks: list[AttemptHook]

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
        self.attempt_hooks = [o for o in self._observers if isinstance(o, AttemptHook)]

    def around_attempt(
        self,
        run_id: str,
        pipeline: str,
        stage_id: str,
        item_index: int | None,
        attempt: int,
    ) -> AttemptScope:
        """Return the context that enters every attempt hook (see AttemptHook)."""
        info = {
            "run_id": run_id,
            "pipeline": pipeline,
            "stage_id": stage_id,
            "item_index": item_index,
            "attempt": attempt,
        }
        return AttemptScope(self, info)

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
        self, observer: object, hook: str, event: object, exc: Exception
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

    def _disable(self, observer: object) -> None:
        for hook in HOOKS:
            observers: list[Observer] = getattr(self, hook)
            observers[:] = [o for o in observers if o is not observer]
        self.attempt_hooks[:] = [o for o in self.attempt_hooks if o is not observer]


class _Info:
    """Carries the identity of an attempt to ``observer_failed`` reports."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.run_id = info["run_id"]
        self.pipeline = info["pipeline"]
        self.stage_id = info["stage_id"]


class AttemptScope:
    """Enters the attempt hooks in order and exits them in reverse.

    A hook that raises an :class:`Exception` is disabled and reported, never
    the stage's problem. A hook's ``__exit__`` may raise a ``BaseException``
    on purpose (the testing kit injects a KeyboardInterrupt this way): it
    replaces the stage's exception once every hook has been exited.
    """

    __slots__ = ("_dispatch", "_entered", "_info")

    def __init__(self, dispatch: Dispatch, info: dict[str, Any]) -> None:
        self._dispatch = dispatch
        self._info = info
        self._entered: list[tuple[AttemptHook, AbstractContextManager[object]]] = []

    def __enter__(self) -> None:
        for hook in tuple(self._dispatch.attempt_hooks):
            try:
                context = hook.around_attempt(**self._info)
                context.__enter__()
            except Exception as exc:  # a hook must never break the run
                self._failed(hook, exc)
                continue
            self._entered.append((hook, context))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        replaced: BaseException | None = None
        while self._entered:
            hook, context = self._entered.pop()
            try:
                context.__exit__(kind, exc, tb)
            except Exception as error:
                if error is not exc:
                    self._failed(hook, error)
            except BaseException as error:
                # Deliberate (an injected interrupt): re-raised below, after
                # the remaining hooks have been exited.
                if error is not exc and replaced is None:
                    replaced = error
        if replaced is not None:
            raise replaced

    def _failed(self, hook: AttemptHook, exc: Exception) -> None:
        self._dispatch._disable(hook)
        self._dispatch._report(hook, "around_attempt", _Info(self._info), exc)

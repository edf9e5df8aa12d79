"""The observer interface, and the per-run table of who overrides which hook."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from ._events import (
    CheckpointCorrupt,
    CheckpointFailed,
    CheckpointSkipped,
    ItemFinished,
    LimitPaused,
    LimitWaited,
    OffloadOrphaned,
    PipelineFinished,
    PipelineStarted,
    StageFinished,
    StageRestored,
    StageRetrying,
    StageStarted,
    StageUnresponsive,
)


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
        """An attempt of a stage began (a fan-out stage reports itself once).

        An observer that does not override :meth:`item_started` also
        receives every fan-out item attempt here, as before that hook existed.
        """

    def item_started(self, event: StageStarted) -> None:
        """An attempt of one fan-out item began (``event.item_index`` is set)."""

    def stage_retrying(self, event: StageRetrying) -> None:
        """An attempt failed; another will follow."""

    def item_finished(self, event: ItemFinished) -> None:
        """A fan-out item ended."""

    def stage_finished(self, event: StageFinished) -> None:
        """A stage reached its terminal status."""

    def stage_unresponsive(self, event: StageUnresponsive) -> None:
        """A cancelled stage is still running after the grace period."""

    def limit_waited(self, event: LimitWaited) -> None:
        """A stage or item was granted a named limit (after queueing, maybe)."""

    def limit_paused(self, event: LimitPaused) -> None:
        """A named limit was paused by a provider's Retry-After."""

    def offload_orphaned(self, event: OffloadOrphaned) -> None:
        """A cancelled offloaded call may still run in a thread or on Dask."""

    def pipeline_finished(self, event: PipelineFinished) -> None:
        """A run ended."""

    def stage_restored(self, event: StageRestored) -> None:
        """A stage (or some fan-out items) reused a checkpointed result."""

    def checkpoint_skipped(self, event: CheckpointSkipped) -> None:
        """A unit succeeded but could not be checkpointed."""

    def checkpoint_corrupt(self, event: CheckpointCorrupt) -> None:
        """Stored records were damaged or undecodable; their units run again."""

    def checkpoint_failed(self, event: CheckpointFailed) -> None:
        """The store failed; the run goes on unrecorded."""


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
    "item_started",
    "stage_retrying",
    "item_finished",
    "stage_finished",
    "stage_unresponsive",
    "limit_waited",
    "limit_paused",
    "offload_orphaned",
    "pipeline_finished",
    "stage_restored",
    "checkpoint_skipped",
    "checkpoint_corrupt",
    "checkpoint_failed",
)


def check_observers(observers: Iterable[Observer]) -> None:
    """Refuse an observer whose hooks cannot work: ``async def`` ones are never awaited.

    Raises:
        TypeError: Naming the observer and the hook.
    """
    for observer in observers:
        for hook in HOOKS:
            method = getattr(type(observer), hook, None)
            if inspect.iscoroutinefunction(method):
                raise TypeError(
                    f"observer {type(observer).__qualname__}: hook {hook} is "
                    "async; observer hooks are synchronous and run inside the "
                    "run (start a task or use a memory channel for async work)"
                )


FailureReport = Callable[[object, str, object, BaseException], None]


class Dispatch:
    """The observers of one run, sorted by the hooks they take.

    An observer takes a hook it overrides. An observer with a
    ``_actors_subscribe()`` method (the logging one) is asked once, when the
    run starts, which hooks it wants; the others are never called.
    """

    __slots__ = ("_observers", "_report", "attempt_hooks", *HOOKS)

    attempt_hooks: list[AttemptHook]

    pipeline_started: list[Observer]
    stage_started: list[Observer]
    item_started: list[Observer]
    stage_retrying: list[Observer]
    item_finished: list[Observer]
    stage_finished: list[Observer]
    stage_unresponsive: list[Observer]
    limit_waited: list[Observer]
    limit_paused: list[Observer]
    offload_orphaned: list[Observer]
    pipeline_finished: list[Observer]
    stage_restored: list[Observer]
    checkpoint_skipped: list[Observer]
    checkpoint_corrupt: list[Observer]
    checkpoint_failed: list[Observer]

    def __init__(self, observers: Iterable[Observer], report: FailureReport) -> None:
        # By identity: observers need not be hashable, and equal ones are
        # still distinct observers.
        unique = {id(observer): observer for observer in observers}
        self._observers = list(unique.values())
        self._report = report
        wanted = {}
        for observer in self._observers:
            subscribe = getattr(observer, "_actors_subscribe", None)
            wanted[id(observer)] = None if subscribe is None else subscribe()
        for hook in HOOKS:
            setattr(self, hook, self._taking(hook, wanted))
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

    def _taking(
        self, hook: str, wanted: dict[int, frozenset[str] | None]
    ) -> list[Observer]:
        def takes(observer: Observer, hook: str) -> bool:
            hooks = wanted[id(observer)]
            base = getattr(Observer, hook)
            return (hooks is None or hook in hooks) and getattr(
                type(observer), hook, base
            ) is not base

        if hook == "item_started":
            # Observers written before item_started existed get items in
            # stage_started, as they always did.
            return [
                o
                for o in self._observers
                if takes(o, "item_started")
                or (
                    takes(o, "stage_started")
                    and type(o).item_started is Observer.item_started
                )
            ]
        return [o for o in self._observers if takes(o, hook)]

    def emit(self, hook: str, event: object) -> None:
        """Call *hook* on every observer that takes it, disabling any that raise."""
        observers: list[Observer] = getattr(self, hook)
        for observer in tuple(observers):
            method = getattr(observer, hook)
            if hook == "item_started" and type(observer).item_started is (
                Observer.item_started
            ):
                method = observer.stage_started
            try:
                method(event)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # an observer must never break the run
                self._disable(observer)
                # The failing observer may be the logging one, say with its
                # log file closed: reporting through the same logger must
                # not break the run.
                with contextlib.suppress(Exception):
                    self._report(observer, hook, event, exc)

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
        # Reporting must never break the run (the logger may be what fails).
        with contextlib.suppress(Exception):
            self._dispatch._report(hook, "around_attempt", _Info(self._info), exc)

"""Faults to inject into a test run: cancellations, interrupts and crashes.

Pass them to :func:`actors.testing.run` (or ``arun``) as ``faults=[...]``;
times are virtual seconds since the run started.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from .._events import (
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
from .._observers import HOOKS, AttemptHook, Observer

if TYPE_CHECKING:
    from .._checkpoint import Entry, JournalContents, RunInfo, Store


class InjectedInterrupt(KeyboardInterrupt):
    """The KeyboardInterrupt raised by :func:`interrupt_at`.

    A subclass, so the runner catches it and never a real Ctrl-C.
    """


@dataclass(frozen=True, slots=True)
class CancelAt:
    """Cancel the caller's scope at ``at``: ``execute`` raises ``trio.Cancelled``."""

    at: float


@dataclass(frozen=True, slots=True)
class CancelTokenAt:
    """Set the context's ``cancel_token`` at ``at``: the run ends cancelled."""

    at: float


@dataclass(frozen=True, slots=True)
class InterruptAt:
    """Raise KeyboardInterrupt in the attempt of ``stage`` running at ``at``.

    The attempt is cancelled at ``at`` (or as it starts, if it starts later),
    and once it has unwound, KeyboardInterrupt replaces its Cancelled: what
    a Ctrl-C delivered inside that stage looks like to the executor.
    """

    stage: str
    at: float


class Interrupter(Observer):
    """The attempt hook playing an :class:`InterruptAt` in a run started at *start*."""

    __slots__ = ("_deadline", "_fault")

    def __init__(self, fault: InterruptAt, start: float) -> None:
        self._fault = fault
        self._deadline = start + fault.at

    def around_attempt(
        self,
        *,
        run_id: str,
        pipeline: str,
        stage_id: str,
        item_index: int | None,
        attempt: int,
    ) -> Any:
        """Arm the interrupt in the attempts of the fault's stage."""
        return _Interrupt(
            self._fault, self._deadline, armed=stage_id == self._fault.stage
        )


class _Interrupt:
    __slots__ = ("_armed", "_deadline", "_fault", "_scope")

    def __init__(self, fault: InterruptAt, deadline: float, *, armed: bool) -> None:
        self._fault = fault
        self._deadline = deadline
        self._armed = armed
        self._scope: trio.CancelScope | None = None

    def __enter__(self) -> None:
        if self._armed:
            self._scope = trio.CancelScope(deadline=self._deadline)
            self._scope.__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        scope = self._scope
        if scope is None:
            return
        scope.__exit__(*exc_info)
        if scope.cancelled_caught:
            raise InjectedInterrupt(
                f"interrupt_at({self._fault.stage!r}, {self._fault.at:g})"
            )


EVENTS: dict[str, type] = {
    "pipeline_started": PipelineStarted,
    "stage_started": StageStarted,
    "item_started": StageStarted,
    "stage_retrying": StageRetrying,
    "item_finished": ItemFinished,
    "stage_finished": StageFinished,
    "stage_unresponsive": StageUnresponsive,
    "limit_waited": LimitWaited,
    "limit_paused": LimitPaused,
    "offload_orphaned": OffloadOrphaned,
    "pipeline_finished": PipelineFinished,
    "stage_restored": StageRestored,
    "checkpoint_skipped": CheckpointSkipped,
    "checkpoint_corrupt": CheckpointCorrupt,
    "checkpoint_failed": CheckpointFailed,
}
"""The event each observer hook receives (``item_started``: fan-out items)."""

_ALIASES = {"stage": "stage_id", "item": "item_index"}


@dataclass(frozen=True, slots=True)
class CrashAt:
    """Kill the run when ``when`` happens: see :func:`crash_at`."""

    when: str | float | Callable[[object], bool]
    where: tuple[tuple[str, Any], ...] = ()

    def matches(self, hook: str, event: object) -> bool:
        """True if *event*, received by observer hook *hook*, is the moment."""
        when = self.when
        if callable(when):
            return bool(when(event))
        if hook != when:
            return False
        return all(_field(event, name) == value for name, value in self.where)

    def __repr__(self) -> str:
        if isinstance(self.when, str):
            where = "".join(f", {k}={v!r}" for k, v in self.where)
            return f"crash_at({self.when!r}{where})"
        if isinstance(self.when, int | float):
            return f"crash_at({self.when:g})"
        return f"crash_at({getattr(self.when, '__name__', self.when)!r})"


def _field(event: object, name: str) -> Any:
    if name == "status" and isinstance(event, PipelineFinished):
        return event.result.status.value
    return _enum_value(getattr(event, _ALIASES.get(name, name)))


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


ObserverT = TypeVar("ObserverT", bound=type[Observer])


def _every_hook(kind: ObserverT) -> ObserverT:
    """Give *kind* every observer hook, each calling ``self._heard(hook, event)``."""

    def hook(name: str) -> Callable[[Any, object], None]:
        def method(self: Any, event: object) -> None:
            self._heard(name, event)

        method.__name__ = method.__qualname__ = name
        return method

    for name in HOOKS:
        setattr(kind, name, hook(name))
    return kind


@_every_hook
class Crasher(Observer):
    """The observer playing a :class:`CrashAt`: calls *crash* at the first match.

    It takes every hook, and must come last among a run's observers, so that
    the others hear the event of the crash (and nothing after it).
    """

    __slots__ = ("_crash", "_fault", "error")

    def __init__(self, fault: CrashAt, crash: Callable[[], None]) -> None:
        self._fault = fault
        self._crash: Callable[[], None] | None = crash
        self.error: Exception | None = None
        """What the predicate raised (it is then asked nothing more)."""

    def crash(self) -> None:
        """Crash now, unless it already did (a crash at a time calls this)."""
        crash = self._crash
        if crash is not None:
            self._crash = None
            crash()

    def _heard(self, hook: str, event: object) -> None:
        if self._crash is None:
            return
        try:
            matched = self._fault.matches(hook, event)
        except Exception as exc:  # a broken predicate: raised after the run
            self.error, self._crash = exc, None
            return
        if matched:
            self.crash()


class SeveredStore:
    """A store that stops writing at the crash, as a killed process does.

    Forwards every call to *store* until :meth:`sever`; from then on writes
    (``begin_run``, ``append``, ``finish_run``, ``prune``) do nothing, so
    what the recorder had not yet written (its pending batch, the run's
    status) is lost. A write already under way in a worker thread completes
    or not on its own, as the store's atomic writes do in a kill.
    """

    __slots__ = ("blocking", "severed", "store")

    def __init__(self, store: Store) -> None:
        self.store = store
        self.blocking: bool = getattr(store, "blocking", True)
        self.severed = False

    def sever(self) -> None:
        """Drop every write from now on."""
        self.severed = True

    def begin_run(self, run: RunInfo) -> None:
        if not self.severed:
            self.store.begin_run(run)

    def append(self, run_id: str, entries: Sequence[Entry]) -> None:
        if not self.severed:
            self.store.append(run_id, entries)

    def finish_run(self, run_id: str, status: str, stats: Mapping[str, int]) -> None:
        if not self.severed:
            self.store.finish_run(run_id, status, stats)

    def get_run(self, run_id: str) -> RunInfo:
        return self.store.get_run(run_id)

    def latest_run(self, pipeline: str) -> RunInfo:
        return self.store.latest_run(pipeline)

    def list_runs(self, pipeline: str | None = None) -> list[RunInfo]:
        return self.store.list_runs(pipeline)

    def read_journal(self, run_id: str) -> JournalContents:
        return self.store.read_journal(run_id)

    def find(self, key: str) -> Entry | None:
        return self.store.find(key)

    def prune(self, older_than_s: float, *, now: float | None = None) -> list[str]:
        return [] if self.severed else self.store.prune(older_than_s, now=now)

    def __repr__(self) -> str:
        return f"SeveredStore({self.store!r}, severed={self.severed})"


@_every_hook
class Silenced(Observer):
    """Forwards the hooks *observer* takes until the crash; then nothing.

    A killed process tells its observers nothing more (a tracer never ends
    its spans); the test's own process lives on, so the kit holds their
    hooks instead.
    """

    __slots__ = ("_observer", "_wants", "silent")

    def __init__(self, observer: Observer) -> None:
        self._observer = observer
        self.silent = False
        kind = type(observer)
        subscribe = getattr(observer, "_actors_subscribe", None)
        asked: frozenset[str] | None = None if subscribe is None else subscribe()

        def overrides(hook: str) -> bool:
            return getattr(kind, hook, None) is not getattr(Observer, hook)

        wants = {h for h in HOOKS if overrides(h) and (asked is None or h in asked)}
        if "stage_started" in wants and not overrides("item_started"):
            wants.add("item_started")  # items reach its stage_started, as before
        self._wants = frozenset(wants)

    def _actors_subscribe(self) -> frozenset[str]:
        """The hooks to call: those the wrapped observer takes."""
        return self._wants

    def _heard(self, hook: str, event: object) -> None:
        if self.silent:
            return
        observer = self._observer
        if hook == "item_started" and (
            type(observer).item_started is Observer.item_started
        ):
            hook = "stage_started"
        getattr(observer, hook)(event)


class SilencedHook(Silenced):
    """A :class:`Silenced` observer that is also an attempt hook."""

    __slots__ = ()

    def around_attempt(self, **attempt: Any) -> Any:
        """The wrapped hook's context (attempts end by themselves at a crash)."""
        hook: AttemptHook = self._observer  # type: ignore[assignment]  # checked by silenced()
        return hook.around_attempt(**attempt)


def silenced(observer: Observer) -> Silenced:
    """Wrap *observer* so that the kit can silence it at a crash."""
    if isinstance(observer, AttemptHook):
        return SilencedHook(observer)
    return Silenced(observer)


Fault = CancelAt | CancelTokenAt | InterruptAt | CrashAt
"""Any fault of this module."""


def cancel_at(t: float) -> CancelAt:
    """Cancel the run's caller at *t*, as a surrounding ``move_on_after`` would."""
    return CancelAt(t)


def cancel_token_at(t: float) -> CancelTokenAt:
    """Set the context's cancel token at *t* (the runner provides a token)."""
    return CancelTokenAt(t)


def interrupt_at(stage: str, t: float) -> InterruptAt:
    """Deliver KeyboardInterrupt inside *stage*'s attempt running at *t*."""
    return InterruptAt(stage, t)


def crash_at(when: str | float | Callable[[object], bool], /, **where: Any) -> CrashAt:
    """Kill the run, as ``kill -9`` would, at the moment *when* happens.

    *when* is one of:

    - the name of an observer hook (``"stage_finished"``, ``"item_started"``,
      ...: the event it receives), with *where* naming fields the event must
      have: ``stage=`` (its ``stage_id``), ``item=`` (``item_index``),
      ``status=`` (a stage's or the run's status, as an enum or its value),
      or any field of the event (``attempt=2``, ``limit="api"``);
    - a predicate, called with every event until it returns true;
    - a virtual time in seconds since the run started.

    At that moment the store stops taking writes: what the run had
    journaled stays, what it had not yet flushed (units that succeeded
    within ``FLUSH_DELAY_S``, 50 ms, before) is lost, and the run keeps the
    status ``"running"``. Observers, the events and the calls of the
    :class:`~actors.testing.TestRun` end there too; then the run is torn
    down (stages see ``trio.Cancelled``: in-process, their ``finally``
    blocks still run). The TestRun says ``crashed``; resume with
    ``run(definition, store=store, resume=crashed.run_id)``.

    Raises:
        ValueError: *when* names no observer hook, *where* names a field
            its event lacks, or *where* is given with a time or a predicate.
    """
    if callable(when) or isinstance(when, int | float):
        if where:
            raise ValueError(
                "crash_at: field filters go with an event name, not with a "
                f"{'predicate' if callable(when) else 'time'}"
            )
        return CrashAt(when)
    kind = EVENTS.get(when)
    if kind is None:
        raise ValueError(
            f"crash_at: unknown event {when!r}; known events: {', '.join(EVENTS)}"
        )
    fields = {f.name for f in dataclasses.fields(kind)}
    known = sorted(
        fields
        | {a for a, f in _ALIASES.items() if f in fields}
        | ({"status"} if kind in {StageFinished, PipelineFinished} else set())
    )
    unknown = [name for name in where if name not in known]
    if unknown:
        raise ValueError(
            f"crash_at({when!r}): {kind.__name__} has no field "
            f"{', '.join(repr(n) for n in unknown)}; fields: {', '.join(known)}"
        )
    return CrashAt(when, tuple((k, _enum_value(v)) for k, v in where.items()))

"""Runners on virtual time, the record of a test run, and stage swapping."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio
import trio.testing

from .._checkpoint import FileStore
from .._context import PipelineContext
from .._core import PipelineExecutor
from .._definition import PipelineDefinition, Stage
from .._events import PipelineFinished, PipelineStarted, StageFinished
from .._exceptions import PipelineValidationError
from .._observers import Observer, check_observers
from .._results import PipelineResult, PipelineStatus, StageStatus
from ._llm import FakeLLM
from ._recorder import Event, Recorder
from ._script import Call
from .faults import (
    CancelAt,
    CancelTokenAt,
    CrashAt,
    Crasher,
    Fault,
    InjectedInterrupt,
    InterruptAt,
    Interrupter,
    SeveredStore,
    silenced,
)

if TYPE_CHECKING:
    from .._checkpoint import Store
    from .._limits import RateLimit

GIVE_UP_AFTER = 86_400.0
"""Virtual seconds after which a test run is deemed hung (one virtual day)."""


@dataclasses.dataclass(eq=False)
class TestRun:
    """What one test run did: its result, events, scripted calls and timeline.

    Times are virtual seconds since the run started (events keep their own
    ``at_ms``).
    """

    __test__ = False  # not a pytest test class, despite the name

    definition: PipelineDefinition
    outcome: PipelineResult | None
    """The result (``None`` for a crashed run); read it as :attr:`result`."""
    events: list[Event]
    """Every event, in order (up to the crash, for a crashed run)."""
    calls: list[Call]
    """Every call of a scripted stage, in the order they started."""
    raised: BaseException | None = None
    """The KeyboardInterrupt an ``interrupt_at`` fault made ``execute`` raise."""
    fired: list[tuple[float, Fault]] = dataclasses.field(default_factory=list)
    """The faults that fired, with their times."""

    @property
    def result(self) -> PipelineResult:
        """What ``execute`` returned (or, if it raised, what it had decided).

        Raises:
            AssertionError: The run crashed (``crash_at``): it has no result.
        """
        if self.outcome is None:
            raise AssertionError(
                f"run {self.run_id!r} crashed at {self.crashed_at:g} s "
                "(crash_at): it has no result; resume it with "
                "run(definition, store=store, resume=this.run_id)"
            )
        return self.outcome

    @property
    def run_id(self) -> str:
        """The run's id, to resume it: ``run(..., resume=test_run.run_id)``."""
        if self.outcome is not None:
            return self.outcome.run_id
        for event in self.events:
            if isinstance(event, PipelineStarted):
                return event.run_id
        raise AssertionError("the run crashed before it started: it has no id")

    @property
    def crashed_at(self) -> float | None:
        """When a ``crash_at`` fault killed the run, or ``None``."""
        return next((t for t, f in self.fired if isinstance(f, CrashAt)), None)

    @property
    def crashed(self) -> bool:
        """True if a ``crash_at`` fault killed the run (it has no result)."""
        return self.crashed_at is not None

    @property
    def timeline(self) -> list[str]:
        """One line per event: ``"0.10 fetch succeeded"``; see assert_timeline."""
        from ._recorder import timeline_of  # noqa: PLC0415  # keeps the record light

        return timeline_of(self.events)

    def calls_of(self, stage: str, item: int | None = None) -> list[Call]:
        """Return the calls of *stage* (of one fan-out *item*, if given)."""
        return [
            c
            for c in self.calls
            if c.stage == stage and (item is None or c.item == item)
        ]

    @property
    def cancelled_at(self) -> float | None:
        """When the run was cancelled, or ``None`` if it was not.

        From the fault that fired, the pipeline's timeout, or the first
        critical failure under fail-fast. A crash is no cancellation.
        """
        for at, fault in self.fired:
            if not isinstance(fault, CrashAt):
                return at
        if self.outcome is None:
            return None
        status = self.outcome.status
        if status is PipelineStatus.TIMED_OUT and self.definition.timeout_ms:
            return self.definition.timeout_ms / 1000
        if status is PipelineStatus.FAILED and self.definition.fail_fast:
            critical = {s.id for s in self.definition.stages if s.critical}
            for event in self.events:
                if (
                    isinstance(event, StageFinished)
                    and event.status is StageStatus.FAILED
                    and event.stage_id in critical
                ):
                    return event.at_ms / 1000
        return None


def run(
    definition: PipelineDefinition,
    initial_input: Any = None,
    *,
    context: PipelineContext[Any] | None = None,
    store: Store | None = None,
    resume: str | None = None,
    limits: Mapping[str, RateLimit] | None = None,
    seed: int = 0,
    observers: Iterable[Observer] = (),
    faults: Sequence[Fault] = (),
    give_up_after: float | None = GIVE_UP_AFTER,
) -> TestRun:
    """Run *definition* in a fresh ``trio.run`` on virtual time; return the record.

    The clock is ``MockClock(autojump_threshold=0)``: sleeps, timeouts and
    retries take no real time and every time is exact. For callers outside
    trio; inside a trio test, ``await arun(...)``.

    The run is journaled in *store* (any :class:`~actors.checkpoint.Store`;
    a :class:`~actors.checkpoint.MemoryStore` keeps time exact), and
    *resume* (a run id, or ``"latest"``) restores what that run journaled,
    as ``PipelineExecutor.execute`` does. *limits* are the executor's named
    quotas, for stages with ``rate_limit=`` (a fresh set per run).

    Raises:
        PipelineValidationError: The definition is invalid; nothing ran.
        ValueError: *resume* without a store, or more than one ``crash_at``.
        actors.checkpoint.UnknownRunError: The store holds no run *resume*.
        AssertionError: The run had not ended after *give_up_after* virtual
            seconds (it hangs). ``None`` never gives up: the autojump clock
            leaps to the next deadline whenever every task waits, so a stage
            waiting on a thread or real I/O would meet that deadline at once.
    """
    clock = trio.testing.MockClock(autojump_threshold=0)
    options = {
        "context": context,
        "store": store,
        "resume": resume,
        "limits": limits,
        "seed": seed,
        "observers": tuple(observers),
        "faults": tuple(faults),
        "give_up_after": give_up_after,
    }
    return trio.run(_arun_kw, definition, initial_input, options, clock=clock)


async def _arun_kw(
    definition: PipelineDefinition, initial_input: Any, options: dict[str, Any]
) -> TestRun:
    return await arun(definition, initial_input, **options)


async def arun(
    definition: PipelineDefinition,
    initial_input: Any = None,
    *,
    context: PipelineContext[Any] | None = None,
    store: Store | None = None,
    resume: str | None = None,
    limits: Mapping[str, RateLimit] | None = None,
    seed: int = 0,
    observers: Iterable[Observer] = (),
    faults: Sequence[Fault] = (),
    give_up_after: float | None = GIVE_UP_AFTER,
) -> TestRun:
    """Run *definition* in the current trio run and return the record.

    Use a mock clock (pytest-trio's ``autojump_clock``) for virtual time.
    Retry jitter draws from ``random.Random(seed)``. A FakeLLM given as the
    context's ``provider`` counts its calls and tokens into the run's
    metrics. This is a checkpoint; cancelling it cancels the run.

    Takes the arguments of :func:`run`.

    Raises:
        PipelineValidationError: The definition is invalid; nothing ran.
        ValueError: *resume* without a store, or more than one ``crash_at``.
        actors.checkpoint.UnknownRunError: The store holds no run *resume*.
        AssertionError: The run had not ended after *give_up_after* virtual
            seconds (it hangs).
    """
    recorder = Recorder()
    if context is None:
        context = PipelineContext()
    if (
        any(isinstance(f, CancelTokenAt) for f in faults)
        and context.cancel_token is None
    ):
        # A copy: the caller's context is left as it was.
        context = dataclasses.replace(context, cancel_token=trio.Event())
    if isinstance(context.provider, FakeLLM):
        context.provider.attach(context)
    crashes = [f for f in faults if isinstance(f, CrashAt)]
    if len(crashes) > 1:
        raise ValueError(f"a run crashes once; got {crashes!r}")
    observers = tuple(observers)
    check_observers(observers)
    start = trio.current_time()
    hooks = [Interrupter(f, start) for f in faults if isinstance(f, InterruptAt)]
    fired: list[tuple[float, Fault]] = []
    caller = trio.CancelScope()
    crasher = None
    if crashes:
        store, observers, crasher = _arm(
            crashes[0],
            store=store,
            context=context,
            observers=observers,
            recorder=recorder,
            caller=caller,
            fired=fired,
        )
    executor = PipelineExecutor(
        log_events=False,
        limits=limits,
        rng=random.Random(seed),
        # The crasher comes last: every other observer hears the fatal event.
        observers=(recorder, *hooks, *observers, *([crasher] if crasher else [])),
    )
    raised: BaseException | None = None
    refused: Exception | None = None
    result: PipelineResult | None = None
    async with trio.open_nursery() as nursery:
        with (
            caller,
            trio.move_on_at(
                math.inf if give_up_after is None else start + give_up_after
            ) as limit,
        ):
            for fault in faults:
                if isinstance(fault, CancelAt | CancelTokenAt):
                    nursery.start_soon(_fire, fault, start, caller, context, fired)
                elif isinstance(fault, CrashAt) and isinstance(fault.when, int | float):
                    assert crasher is not None  # armed above
                    nursery.start_soon(_crash_at, start + fault.when, crasher)
            try:
                result = await executor.execute(
                    definition, initial_input, context, store=store, resume=resume
                )
            except InjectedInterrupt as interrupt:
                raised = interrupt
                # A planned stage raises one too, with no interrupt_at fault.
                interrupting = _interrupt_of(faults)
                if interrupting is not None:
                    fired.append((trio.current_time() - start, interrupting))
            except Exception as exc:  # nothing ran: raised bare, not in a group
                refused = exc
        nursery.cancel_scope.cancel()  # faults not yet due never fire
    if refused is not None:
        try:
            raise refused
        finally:
            del refused  # its traceback holds this frame: no cycle
    if crasher is not None and crasher.error is not None:
        raise AssertionError(f"the predicate of {crashes[0]!r} raised") from (
            crasher.error
        )
    if limit.cancelled_caught:
        raise AssertionError(
            f"pipeline {definition.name!r} had not ended after {give_up_after} "
            "virtual seconds: a stage hangs (script it with a result, or cancel it)"
        )
    if recorder.stopped:
        result = None  # crashed: whatever execute returned, nobody was there
    elif result is None:
        result = next(
            e.result for e in recorder.events if isinstance(e, PipelineFinished)
        )
    fired.sort(key=lambda pair: pair[0])
    return TestRun(definition, result, recorder.events, recorder.calls, raised, fired)


def _arm(
    crash: CrashAt,
    *,
    store: Store | None,
    context: PipelineContext[Any],
    observers: tuple[Observer, ...],
    recorder: Recorder,
    caller: trio.CancelScope,
    fired: list[tuple[float, Fault]],
) -> tuple[Store | None, tuple[Observer, ...], Crasher]:
    """Prepare *crash*: return the store and observers to run with, and the crasher.

    At the crash, the store stops writing, the recorder and the observers
    stop hearing, and the caller's scope cancels what is left of the run.
    """
    if store is None and context.checkpoint_dir is not None:
        store = FileStore(context.checkpoint_dir)  # execute's, made here to sever
    severed = None if store is None else SeveredStore(store)
    quiet = [silenced(o) for o in observers]
    start = trio.current_time()

    def kill() -> None:
        # Synchronous, inside the event's emit: nothing happens between the
        # event and the kill, as in a process killed at that instant.
        fired.append((round(trio.current_time() - start, 9), crash))
        if severed is not None:
            severed.sever()
        recorder.stop()
        for observer in quiet:
            observer.silent = True
        caller.cancel()

    return severed, tuple(quiet), Crasher(crash, kill)


async def _crash_at(deadline: float, crasher: Crasher) -> None:
    await trio.sleep_until(deadline)
    crasher.crash()


def _interrupt_of(faults: Sequence[Fault]) -> Fault | None:
    return next((f for f in faults if isinstance(f, InterruptAt)), None)


async def _fire(
    fault: CancelAt | CancelTokenAt,
    start: float,
    caller: trio.CancelScope,
    context: PipelineContext[Any],
    fired: list[tuple[float, Fault]],
) -> None:
    await trio.sleep_until(start + fault.at)
    fired.append((fault.at, fault))
    if isinstance(fault, CancelAt):
        caller.cancel()
    else:
        assert context.cancel_token is not None  # arun provided one
        context.cancel_token.set()


def with_stages(definition: PipelineDefinition, **stages: Stage) -> PipelineDefinition:
    """Return a validated copy of *definition* with the named stages replaced.

    Everything else about each stage (inputs, pattern, retries, timeouts)
    is kept. Pure and synchronous.

    Raises:
        ValueError: A name is not a stage of *definition*.
        PipelineValidationError: The copy is invalid (say, a replacement
            that is not a stage).
    """
    known = [stage.id for stage in definition.stages]
    unknown = [name for name in stages if name not in known]
    if unknown:
        raise ValueError(
            f"pipeline {definition.name!r} has no stage "
            f"{', '.join(repr(n) for n in unknown)}; known stages: "
            f"{', '.join(repr(n) for n in known)}"
        )
    replaced = tuple(
        stage.model_copy(update={"stage": stages[stage.id]})
        if stage.id in stages
        else stage
        for stage in definition.stages
    )
    copy = definition.model_copy(update={"stages": replaced})
    errors = copy.validate_pipeline()
    if errors:
        raise PipelineValidationError(copy.name, errors)
    return copy

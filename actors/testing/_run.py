"""Runners on virtual time, the record of a test run, and stage swapping."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Sequence
from typing import Any

import trio
import trio.testing

from .._context import PipelineContext
from .._core import PipelineExecutor
from .._definition import PipelineDefinition, Stage
from .._events import PipelineFinished, StageFinished
from .._exceptions import PipelineValidationError
from .._observers import Observer
from .._results import PipelineResult, PipelineStatus, StageStatus
from ._llm import FakeLLM
from ._recorder import Event, Recorder
from ._script import Call
from .faults import (
    CancelAt,
    CancelTokenAt,
    Fault,
    InjectedInterrupt,
    InterruptAt,
    Interrupter,
)

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
    result: PipelineResult
    """What ``execute`` returned (or, if it raised, what it had decided)."""
    events: list[Event]
    """Every event, in order."""
    calls: list[Call]
    """Every call of a scripted stage, in the order they started."""
    raised: BaseException | None = None
    """The KeyboardInterrupt an ``interrupt_at`` fault made ``execute`` raise."""
    fired: list[tuple[float, Fault]] = dataclasses.field(default_factory=list)
    """The faults that fired, with their times."""

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
        critical failure under fail-fast.
        """
        if self.fired:
            return self.fired[0][0]
        status = self.result.status
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
    seed: int = 0,
    observers: Iterable[Observer] = (),
    faults: Sequence[Fault] = (),
    give_up_after: float | None = GIVE_UP_AFTER,
) -> TestRun:
    """Run *definition* in a fresh ``trio.run`` on virtual time; return the record.

    The clock is ``MockClock(autojump_threshold=0)``: sleeps, timeouts and
    retries take no real time and every time is exact. For callers outside
    trio; inside a trio test, ``await arun(...)``.

    Raises:
        PipelineValidationError: The definition is invalid; nothing ran.
        AssertionError: The run had not ended after *give_up_after* virtual
            seconds (it hangs). ``None`` never gives up: the autojump clock
            leaps to the next deadline whenever every task waits, so a stage
            waiting on a thread or real I/O would meet that deadline at once.
    """
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(
        _arun_kw,
        (definition, initial_input, context, seed, tuple(observers), tuple(faults)),
        give_up_after,
        clock=clock,
    )


async def _arun_kw(args: tuple[Any, ...], give_up_after: float | None) -> TestRun:
    definition, initial_input, context, seed, observers, faults = args
    return await arun(
        definition,
        initial_input,
        context=context,
        seed=seed,
        observers=observers,
        faults=faults,
        give_up_after=give_up_after,
    )


async def arun(
    definition: PipelineDefinition,
    initial_input: Any = None,
    *,
    context: PipelineContext[Any] | None = None,
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

    Raises:
        PipelineValidationError: The definition is invalid; nothing ran.
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
    start = trio.current_time()
    hooks = [Interrupter(f, start) for f in faults if isinstance(f, InterruptAt)]
    executor = PipelineExecutor(
        log_events=False,
        rng=random.Random(seed),
        observers=(recorder, *hooks, *observers),
    )
    fired: list[tuple[float, Fault]] = []
    raised: BaseException | None = None
    result: PipelineResult | None = None
    async with trio.open_nursery() as nursery:
        with (
            trio.CancelScope() as caller,
            trio.move_on_at(
                math.inf if give_up_after is None else start + give_up_after
            ) as limit,
        ):
            for fault in faults:
                if isinstance(fault, CancelAt | CancelTokenAt):
                    nursery.start_soon(_fire, fault, start, caller, context, fired)
            try:
                result = await executor.execute(definition, initial_input, context)
            except InjectedInterrupt as interrupt:
                raised = interrupt
                fired.append((trio.current_time() - start, _interrupt_of(faults)))
        nursery.cancel_scope.cancel()  # faults not yet due never fire
    if limit.cancelled_caught:
        raise AssertionError(
            f"pipeline {definition.name!r} had not ended after {give_up_after} "
            "virtual seconds: a stage hangs (script it with a result, or cancel it)"
        )
    if result is None:
        result = next(
            e.result for e in recorder.events if isinstance(e, PipelineFinished)
        )
    fired.sort(key=lambda pair: pair[0])
    return TestRun(definition, result, recorder.events, recorder.calls, raised, fired)


def _interrupt_of(faults: Sequence[Fault]) -> Fault:
    return next(f for f in faults if isinstance(f, InterruptAt))


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

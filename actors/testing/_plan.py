"""Fault plans: what every stage of a definition does, attempt by attempt.

A :class:`FaultPlan` is plain data. :meth:`FaultPlan.apply` turns it into a
copy of a definition whose stages act the plan (through the kit's scripted
outcomes, recorded as :class:`~actors.testing.Call`\\ s), and
:func:`actors.testing.oracle.expect` predicts, from the same plan, what that
run must produce. :func:`actors.testing.strategies.fault_plans` draws plans
with hypothesis.

Durations are :class:`~fractions.Fraction`\\ s of virtual seconds (numbers
are taken as their decimal value); the kit's stages sleep them as floats, so
binary fractions (0.25, 3/1024) keep every time exact.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import trio

from .._definition import ExecutionPattern, PipelineDefinition, StageDefinition
from .._exceptions import PipelineValidationError
from .._graph import _is_generator
from ._script import (
    Outcome,
    Yields,
    _current,
    _recorded,
    hangs,
    raises,
    returns,
    returns_input,
)
from .faults import CancelTokenAt, InjectedInterrupt

if TYPE_CHECKING:
    from .._context import PipelineContext

Number = Fraction | int | float
"""A duration in virtual seconds."""


def seconds(value: Number) -> Fraction:
    """Return *value* as an exact Fraction (a float by its decimal value)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    return Fraction(repr(float(value)))


class Act(enum.Enum):
    """What one attempt does once its ``after`` seconds have passed."""

    RETURNS = "returns"
    """Return the stage's planned output (a fan-out item: its input)."""
    RAISES = "raises"
    """Raise a copy of the step's ``error``."""
    BREAKS_CONTRACT = "breaks_contract"
    """Return a coroutine instead of a value (a forgotten ``await``)."""
    HANGS = "hangs"
    """Sleep until cancelled (``after`` is ignored)."""
    INTERRUPTS = "interrupts"
    """Raise KeyboardInterrupt (:class:`~actors.testing.faults.InjectedInterrupt`)."""


@dataclass(frozen=True)
class Step:
    """One attempt: sleep ``after`` seconds, then ``act``."""

    act: Act = Act.RETURNS
    after: Number = 0
    error: Exception | None = None
    """What an :attr:`Act.RAISES` step raises (default ``ValueError("boom")``)."""

    def raised(self) -> Exception:
        """Return the exception this step raises (a RAISES step)."""
        return self.error if self.error is not None else ValueError("boom")


@dataclass(frozen=True)
class StreamStep:
    """One attempt of a streaming stage.

    It yields the items up to index ``items - 1``, sleeping ``every``
    seconds before each (from index 0, or from ``context.stream_cursor`` if
    the stage is ``resumable``), then acts ``then`` (RETURNS ends the
    stream; RAISES and HANGS after ``then.after``). Item ``i`` is the string
    ``f"{stage}:{i}"``.
    """

    items: int = 0
    every: Number = 0
    then: Step = Step()


@dataclass(frozen=True)
class StagePlan:
    """What one stage does; every field has a do-nothing default."""

    script: tuple[Step, ...] = (Step(),)
    """Attempt ``k`` follows ``script[k - 1]``; the last step repeats. For a
    FAN_OUT: every item not in ``items``."""
    items: Mapping[int, tuple[Step, ...]] = field(default_factory=dict)
    """FAN_OUT: the script of particular items, by index."""
    spread: Number = 0
    """FAN_OUT: item ``i``'s ``after`` is longer by ``(i + 1) * spread``, so
    that items of one stage do not end in the same instant."""
    stream: tuple[StreamStep, ...] = (StreamStep(),)
    """Streaming stages: attempt ``k`` follows ``stream[k - 1]`` (the last repeats)."""
    condition: bool | None = None
    """Stages with a condition: what it returns (``None``: True)."""
    emit: int | None = None
    """Other stages: output ``list(range(emit))``; ``None``: the stage id."""

    def item_script(self, item: int) -> tuple[Step, ...]:
        """Return the script of fan-out item *item*."""
        return self.items.get(item, self.script)

    def output(self, stage_id: str) -> Any:
        """Return what a RETURNS step of a (non fan-out) stage returns."""
        return list(range(self.emit)) if self.emit is not None else stage_id


def stream_item(stage_id: str, index: int) -> str:
    """Return item *index* of a planned stream."""
    return f"{stage_id}:{index}"


@dataclass(frozen=True)
class FaultPlan:
    """A plan for every stage of one definition, and the run's outside events.

    Stages left out act :class:`StagePlan`'s defaults (return at once).
    """

    stages: Mapping[str, StagePlan] = field(default_factory=dict)
    initial: int = 0
    """The run's initial input is ``list(range(initial))``."""
    cancel_at: Number | None = None
    """When the context's cancel token is set (``None``: never)."""

    def stage(self, stage_id: str) -> StagePlan:
        """Return the plan of *stage_id* (the default if it has none)."""
        return self.stages.get(stage_id, _DEFAULT)

    @property
    def initial_input(self) -> list[int]:
        """The initial input to run the planned definition with."""
        return list(range(self.initial))

    @property
    def faults(self) -> tuple[CancelTokenAt, ...]:
        """The faults to run it with (``actors.testing.run(..., faults=...)``)."""
        if self.cancel_at is None:
            return ()
        return (CancelTokenAt(float(self.cancel_at)),)

    def apply(self, definition: PipelineDefinition) -> PipelineDefinition:
        """Return a validated copy of *definition* whose stages act this plan.

        Each stage is replaced by one that follows its :class:`StagePlan`
        (a streaming stage by a planned stream); a condition by a constant;
        retry jitter is set to 0 and ``offload``, ``rate_limit`` and
        ``cost`` are dropped, so the run is exactly predictable. Inputs,
        patterns, retries, timeouts and streaming settings are kept. Run it
        under :func:`~actors.testing.run` (or any executor observed by a
        :class:`~actors.testing.Recorder`). Pure and synchronous.

        Raises:
            ValueError: The plan names a stage *definition* does not have.
            PipelineValidationError: *definition* is invalid.
        """
        check_names(self, definition)
        errors = definition.validate_pipeline()
        if errors:
            raise PipelineValidationError(definition.name, errors)
        stages = []
        for stage in definition.stages:
            plan = self.stage(stage.id)
            update: dict[str, Any] = {
                "stage": planned_stage(stage, plan),
                "offload": None,
                "rate_limit": None,
                "cost": None,
            }
            if stage.condition is not None:
                update["condition"] = _Answer(plan.condition is not False)
            retry = stage.retry_config
            if retry is not None and retry.jitter:
                update["retry_config"] = retry.model_copy(update={"jitter": 0.0})
            stages.append(stage.model_copy(update=update))
        copy = definition.model_copy(update={"stages": tuple(stages)})
        errors = copy.validate_pipeline()
        if errors:  # pragma: no cover  # the planned stages keep every shape valid
            raise PipelineValidationError(copy.name, errors)
        return copy


_DEFAULT = StagePlan()


def check_names(plan: FaultPlan, definition: PipelineDefinition) -> None:
    """Refuse a plan naming a stage the definition does not have."""
    known = [stage.id for stage in definition.stages]
    unknown = [name for name in plan.stages if name not in known]
    if unknown:
        raise ValueError(
            f"the plan names no stage of pipeline {definition.name!r}: "
            f"{', '.join(repr(n) for n in unknown)}; known stages: "
            f"{', '.join(repr(n) for n in known)}"
        )


class _Answer:
    """A condition that always answers the same."""

    __slots__ = ("answer",)

    def __init__(self, answer: bool) -> None:
        self.answer = answer

    def __call__(self, context: PipelineContext[Any]) -> bool:
        return self.answer

    def __repr__(self) -> str:
        return f"planned condition ({self.answer})"


def planned_stage(stage: StageDefinition, plan: StagePlan) -> Any:
    """Return the stage object that acts *plan* in place of *stage*'s."""
    if _is_generator(stage.stage):
        return PlannedStream(stage.id, plan.stream, resumable=stage.resumable)
    return PlannedStage(
        stage.id, plan, fan_out=stage.pattern is ExecutionPattern.FAN_OUT
    )


class _BreaksContract(Outcome):
    __slots__ = ()

    async def play(self, value: Any) -> Any:
        await trio.sleep(self.after)
        return _forgotten()  # the executor closes it

    def __repr__(self) -> str:
        return f"breaks_contract(after={self.after:g})"


async def _forgotten() -> None:
    """What a stage returns when it forgets an ``await``."""


class _Interrupts(Outcome):
    __slots__ = ()

    async def play(self, value: Any) -> Any:
        await trio.sleep(self.after)
        raise InjectedInterrupt("planned interrupt")

    def __repr__(self) -> str:
        return f"interrupts(after={self.after:g})"


INPUT = object()
"""As the output of a step: return the input (a fan-out item)."""


def outcome_of(step: Step, output: Any, extra: Fraction = Fraction(0)) -> Outcome:
    """Return the kit's outcome acting *step* (``output=INPUT``: return the input)."""
    after = float(seconds(step.after) + extra)
    if step.act is Act.RETURNS:
        if output is INPUT:
            return returns_input(after=after)
        return returns(output, after=after)
    if step.act is Act.RAISES:
        return raises(step.raised(), after=after)
    if step.act is Act.HANGS:
        return hangs()
    if step.act is Act.BREAKS_CONTRACT:
        return _BreaksContract(after)
    return _Interrupts(after)


class PlannedStage:
    """A stage (or fan-out item function) acting a :class:`StagePlan`.

    Like a scripted stage, it learns its item and attempt from the
    :class:`~actors.testing.Recorder` and records each call in it.
    """

    def __init__(self, stage_id: str, plan: StagePlan, *, fan_out: bool) -> None:
        self.stage_id = stage_id
        self.plan = plan
        self.fan_out = fan_out

    def outcome(self, item: int | None, attempt: int) -> Outcome:
        """Return the outcome of *attempt* (from 1) of *item* (``None``: the stage)."""
        plan = self.plan
        if item is None or not self.fan_out:
            script = plan.script
            return outcome_of(
                script[min(attempt, len(script)) - 1], plan.output(self.stage_id)
            )
        script = plan.item_script(item)
        extra = (item + 1) * seconds(plan.spread)
        return outcome_of(script[min(attempt, len(script)) - 1], INPUT, extra)

    async def __call__(self, value: Any, context: PipelineContext[Any]) -> Any:
        """Play the planned outcome of the current attempt; record the call."""
        current = _current()
        outcome = self.outcome(current.item_index, current.attempt)
        with _recorded(current, value, outcome):
            return await outcome.play(value)

    def __repr__(self) -> str:
        return f"PlannedStage({self.stage_id!r}, {self.plan!r})"


class PlannedStream:
    """A streaming stage acting the :class:`StreamStep`\\ s of a plan.

    Each attempt is recorded as a :class:`~actors.testing.Call` (``ended``
    is when its ``finally`` ran); ``produced`` lists ``(seconds, index)``
    for every item yielded past the cursor, over every run.
    """

    def __init__(
        self, stage_id: str, steps: tuple[StreamStep, ...], *, resumable: bool
    ) -> None:
        self.stage_id = stage_id
        self.steps = steps
        self.resumable = resumable
        self.produced: list[tuple[float, int]] = []

    async def stream(
        self, value: Any, context: PipelineContext[Any]
    ) -> AsyncIterator[str]:
        """Yield the planned items of the current attempt, then end as planned."""
        current = _current()
        recorder = current.recorder
        step = self.steps[min(current.attempt, len(self.steps)) - 1]
        cursor = context.stream_cursor
        first = cursor if self.resumable else 0
        indices = range(first, step.items)
        every = float(seconds(step.every))
        then = step.then
        end = None if then.act is Act.RETURNS else outcome_of(then, None)
        shown = Yields([stream_item(self.stage_id, i) for i in indices], every, end)
        # Ended also when the library closes it early (GeneratorExit).
        with _recorded(current, value, shown):
            for index in indices:
                await trio.sleep(every)
                if index >= cursor:
                    self.produced.append((recorder.now(), index))
                yield stream_item(self.stage_id, index)
            if then.act is Act.HANGS:
                await trio.sleep_forever()
            await trio.sleep(float(seconds(then.after)))
            if then.act is Act.RAISES:
                # A fresh copy per attempt: each failure keeps its own traceback.
                raise copy.copy(then.raised())

    def __repr__(self) -> str:
        return f"PlannedStream({self.stage_id!r}, {self.steps!r})"

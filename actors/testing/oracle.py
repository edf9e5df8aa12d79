"""The reference model: what a run of a planned definition must produce.

:func:`expect` reads your definition (inputs, patterns, retries, timeouts,
fail-fast, streaming settings) and a :class:`FaultPlan` (what each stage does,
attempt by attempt), and predicts, from the documented semantics alone, every
stage's status, attempts, exact finish time, output and error, and how the
run ends. Run ``plan.apply(definition)`` and compare::

    from actors.testing import run
    from actors.testing.oracle import expect
    from actors.testing.strategies import fault_plans

    @given(plan=fault_plans(pipeline))
    def test_my_pipeline_follows_the_semantics(plan):
        done = run(plan.apply(pipeline), plan.initial_input, faults=plan.faults)
        expect(pipeline, plan).assert_matches(done)

Trio runs the tasks woken in one instant in an unspecified order, so where
an event falls on exactly the instant of a cancellation, several outcomes are
legal: a stage then has several :class:`Alternative`\\ s, and where such a tie
changes the course of a stream, the expectation holds several
:class:`Scenario`\\ s. A run matches if it matches one scenario.

This module imports no hypothesis.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from .._definition import PipelineDefinition
from .._graph import graph_of
from .._results import PipelineResult, PipelineStatus, StageResult, StageStatus
from .._util import fix_module_names
from ._model import Expected, Run, play
from ._model_chain import NEVER, UNSET, Alt, Spec, Time, Unpredicted
from ._plan import Act, FaultPlan, StagePlan, Step, StreamStep, check_names, seconds

if TYPE_CHECKING:
    from ._run import TestRun

UNPREDICTED = UNSET
"""A detail of a result the oracle does not predict."""

MAX_SCENARIOS = 64
"""More legal courses than this and :func:`expect` gives up (see its Raises)."""


@dataclass(frozen=True)
class Alternative:
    """One legal outcome of a stage."""

    status: StageStatus
    attempts: tuple[int, int]
    """The lowest and highest legal attempt count."""
    finished_at: Fraction
    """Virtual seconds since the run started (compared to 1 ns: see :func:`same_ms`)."""
    output: Any = UNPREDICTED
    error: str | None = None
    """A regular expression the error text matches (``None``: not predicted)."""
    metadata: Any = UNPREDICTED
    item_errors: Mapping[int, str] | None = None
    """A collecting fan-out: exactly these items failed, each error matching."""

    def problems(self, actual: StageResult[Any]) -> list[str]:
        """Say how *actual* differs from this outcome (empty: it is this one)."""
        found = []
        if actual.status is not self.status:
            found.append(f"status {actual.status.value}, expected {self.status.value}")
        low, high = self.attempts
        if not low <= actual.attempts <= high:
            legal = str(low) if low == high else f"{low} to {high}"
            found.append(f"{actual.attempts} attempts, expected {legal}")
        finished = None if actual.profile is None else actual.profile.finished_at_ms
        if not same_ms(finished, self.finished_at):
            found.append(
                f"finished at {finished} ms, expected {ms(self.finished_at)} ms"
            )
        if self.output is not UNPREDICTED and actual.output != self.output:
            found.append(f"output {actual.output!r}, expected {self.output!r}")
        if self.error is not None and not re.search(self.error, actual.error or ""):
            found.append(f"error {actual.error!r} does not match {self.error!r}")
        if self.metadata is not UNPREDICTED and actual.metadata != self.metadata:
            found.append(f"metadata {actual.metadata!r}, expected {self.metadata!r}")
        if self.item_errors is not None:
            errors = actual.item_errors
            if sorted(errors) != sorted(self.item_errors) or not all(
                re.search(pattern, errors[index])
                for index, pattern in self.item_errors.items()
            ):
                found.append(
                    f"item errors {errors!r}, expected items matching "
                    f"{dict(self.item_errors)!r}"
                )
            elif actual.partial is not bool(self.item_errors):
                found.append(f"partial={actual.partial}, expected {not actual.partial}")
        return found


@dataclass(frozen=True)
class StageExpectation:
    """What one stage must do: one of its alternatives."""

    id: str
    alternatives: tuple[Alternative, ...]
    """Every legal outcome (one, unless a tie leaves several)."""
    input: Any = UNPREDICTED
    """What it receives when it runs (a fan-out: its list; fed by a stream:
    not predicted)."""
    stopped_at: Fraction | None = None
    """A fan-out: when a failed (or interrupting) item stopped its other items."""

    @property
    def statuses(self) -> frozenset[StageStatus]:
        """Every legal status."""
        return frozenset(alt.status for alt in self.alternatives)

    @property
    def exact(self) -> Alternative | None:
        """The single legal outcome, or ``None`` when several are legal."""
        return self.alternatives[0] if len(self.alternatives) == 1 else None

    def problems(self, actual: StageResult[Any]) -> list[str]:
        """Say how *actual* differs from every alternative (empty: it matches one)."""
        if not self.alternatives:
            return [f"stage {self.id!r} was not expected to have a result"]
        best: list[str] | None = None
        for alt in self.alternatives:
            found = alt.problems(actual)
            if not found:
                return []
            if best is None or len(found) < len(best):
                best = found
        assert best is not None
        return [f"stage {self.id!r}: {'; '.join(best)}"]


@dataclass(frozen=True)
class Scenario:
    """One consistent course of the run."""

    stages: Mapping[str, StageExpectation]
    statuses: frozenset[PipelineStatus]
    """Every legal status of the run (one, unless it ends on a tie)."""
    finished_at: Fraction | None
    """When ``execute`` returns or raises (``None``: it never does)."""
    cancelled_at: Fraction | None
    """When the run is cancelled: its timeout, its cancel token, or fail-fast."""
    interrupted: frozenset[bool]
    """Whether ``execute`` raises KeyboardInterrupt (both: a tie)."""
    interrupted_at: Fraction | None

    @property
    def hangs(self) -> bool:
        """True if the run never ends."""
        return self.finished_at is None

    def problems(self, run: TestRun | PipelineResult) -> list[str]:
        """Say how *run* differs from this scenario (empty: it follows it)."""
        if isinstance(run, PipelineResult):
            result, interrupted = run, False
        else:
            result, interrupted = run.result, run.raised is not None
        if self.hangs:
            return ["the run was expected never to end"]
        if interrupted not in self.interrupted:
            expected = "raise" if interrupted is False else "not raise"
            return [f"execute was expected to {expected} KeyboardInterrupt"]
        if interrupted:
            assert self.interrupted_at is not None
            if not same_ms(result.total_duration_ms, self.interrupted_at):
                return [
                    f"interrupted at {result.total_duration_ms} ms, expected "
                    f"{ms(self.interrupted_at)} ms"
                ]
            return []
        found = []
        assert self.finished_at is not None
        if not same_ms(result.total_duration_ms, self.finished_at):
            found.append(
                f"the run ended at {result.total_duration_ms} ms, expected "
                f"{ms(self.finished_at)} ms"
            )
        if result.status not in self.statuses:
            legal = " or ".join(sorted(s.value for s in self.statuses))
            found.append(f"the run ended {result.status.value}, expected {legal}")
        for stage_id, stage in self.stages.items():
            actual = result.stage_results.get(stage_id)
            if actual is None:
                found.append(f"stage {stage_id!r} has no result")
            else:
                found.extend(stage.problems(actual))
        return found


@dataclass(frozen=True)
class Expectation:
    """What a run of ``plan.apply(definition)`` must produce: one of its scenarios."""

    scenarios: tuple[Scenario, ...]

    @property
    def stages(self) -> Mapping[str, StageExpectation]:
        """Each stage's expectation, its alternatives from every scenario."""
        first = self.scenarios[0].stages
        if len(self.scenarios) == 1:
            return first
        merged = {}
        for stage_id, stage in first.items():
            alternatives: list[Alternative] = []
            for scenario in self.scenarios:
                for alt in scenario.stages[stage_id].alternatives:
                    if alt not in alternatives:
                        alternatives.append(alt)
            merged[stage_id] = StageExpectation(
                stage_id, tuple(alternatives), stage.input, stage.stopped_at
            )
        return merged

    @property
    def statuses(self) -> frozenset[PipelineStatus]:
        """Every legal status of the run."""
        return frozenset().union(*(s.statuses for s in self.scenarios))

    @property
    def hangs(self) -> bool:
        """True if the run never ends (the kit's runner then gives up)."""
        return all(s.hangs for s in self.scenarios)

    def mismatches(self, run: TestRun | PipelineResult) -> list[str]:
        """Say how *run* differs from what it must produce (empty: it matches).

        *run* is a :class:`~actors.testing.TestRun` or a ``PipelineResult``
        (which cannot show a KeyboardInterrupt). Describes the differences
        from the closest scenario. Pure.
        """
        best: list[str] | None = None
        for number, scenario in enumerate(self.scenarios, 1):
            found = scenario.problems(run)
            if not found:
                return []
            if len(self.scenarios) > 1:
                found = [
                    f"(scenario {number} of {len(self.scenarios)}) {p}" for p in found
                ]
            if best is None or len(found) < len(best):
                best = found
        assert best is not None
        return best

    def assert_matches(self, run: TestRun | PipelineResult) -> None:
        """Raise AssertionError naming each stage that did not do what it must."""
        found = self.mismatches(run)
        if found:
            raise AssertionError(
                "the run differs from the oracle:\n" + "\n".join(found)
            )


def ms(seconds: Time) -> float:
    """Convert a time to the executor's milliseconds (rounded to 1 ns)."""
    return round(float(seconds) * 1000, 6)


def same_ms(actual: float | None, expected: Time) -> bool:
    """True if the executor's *actual* ms are the time *expected*.

    Exact up to the executor's resolution: it rounds milliseconds to 1 ns
    from a float clock, so a duration that is not a binary fraction of a
    second (a 100 ms timeout) may round to the neighbouring nanosecond.
    """
    return actual is not None and abs(actual - ms(expected)) < 1.5e-6


def expect(definition: PipelineDefinition, plan: FaultPlan) -> Expectation:
    """Return what running ``plan.apply(definition)`` must produce.

    The run is ``run(plan.apply(definition), plan.initial_input,
    faults=plan.faults)`` (any seed: jitter is planned away). Pure and
    synchronous; imports no hypothesis.

    Raises:
        ValueError: The plan names an unknown stage, asks for something the
            oracle does not model (a ``RateLimited`` error, a wait of exactly
            a timeout, a FAN_OUT fed by a stream among other inputs), or
            ties in more than ``MAX_SCENARIOS`` ways.
        PipelineValidationError: *definition* is invalid.
    """
    check_names(plan, definition)
    specs = _specs(definition, plan)
    cancel_at = None if plan.cancel_at is None else seconds(plan.cancel_at)
    timeout_ms = definition.timeout_ms
    if timeout_ms is not None and timeout_ms == float("inf"):
        timeout_ms = None
    settings = Run(
        fail_fast=definition.fail_fast,
        timeout_ms=timeout_ms,
        cancel_at=cancel_at,
        initial=plan.initial_input,
    )
    scenarios: list[Scenario] = []
    prefix: list[int] = []
    while True:
        taken: list[int] = []
        arity: list[int] = []

        def choose(
            n: int,
            taken: list[int] = taken,
            arity: list[int] = arity,
            prefix: list[int] = prefix,
        ) -> int:
            position = len(taken)
            choice = prefix[position] if position < len(prefix) else 0
            taken.append(choice)
            arity.append(n)
            return choice

        scenario = _scenario(play(specs, settings, choose))
        if scenario not in scenarios:
            scenarios.append(scenario)
        position = len(taken) - 1
        while position >= 0 and taken[position] + 1 >= arity[position]:
            position -= 1
        if position < 0:
            return Expectation(tuple(scenarios))
        if len(scenarios) >= MAX_SCENARIOS:
            raise ValueError(
                f"pipeline {definition.name!r}: the plan ties in more than "
                f"{MAX_SCENARIOS} ways; give its durations distinct offsets"
            )
        prefix = [*taken[:position], taken[position] + 1]


def _specs(definition: PipelineDefinition, plan: FaultPlan) -> list[Spec]:
    graph = graph_of(definition)
    specs = []
    for node in graph.nodes:
        stage = node.definition
        stage_plan: StagePlan = plan.stage(node.id)
        if node.stream_fed and len(node.inputs) > 1:
            raise ValueError(
                f"stage {node.id!r}: the oracle does not model a FAN_OUT fed by a "
                "stream among other inputs"
            )
        retry = stage.retry_config
        if retry is not None and retry.jitter:
            retry = retry.model_copy(update={"jitter": 0.0})
        condition = None
        if stage.condition is not None:
            condition = stage_plan.condition is not False
        timeout_ms = stage.timeout_ms
        if timeout_ms is not None and timeout_ms == float("inf"):
            timeout_ms = None
        specs.append(
            Spec(
                index=node.index,
                id=node.id,
                inputs=node.inputs,
                pattern=stage.pattern,
                critical=stage.critical,
                condition=condition,
                retry=retry,
                timeout_ms=timeout_ms,
                max_concurrency=stage.max_concurrency,
                item_failures=stage.item_failures,
                min_successes=stage.min_successes,
                plan=stage_plan,
                generator=node.generator,
                stream_fed=node.stream_fed,
                consumers=tuple(
                    other.index
                    for other in graph.nodes
                    if other.stream_fed and other.inputs[0] == node.index
                ),
                buffer=stage.stream_buffer or 0,
                stream_timeout_ms=stage.stream_timeout_ms,
                resumable=stage.resumable,
                collect=stage.collect,
            )
        )
    return specs


def _time(value: Time) -> Fraction | None:
    return None if value == NEVER else Fraction(value)


def _alternative(alt: Alt) -> Alternative | None:
    try:
        status = StageStatus(alt.status)
    except ValueError:
        return None  # "interrupt", "hang": no result to compare
    if alt.finish == NEVER:
        return None  # the run never ends: no result either
    details = alt.details
    if details is None:
        return Alternative(status, alt.attempts, Fraction(alt.finish))
    return Alternative(
        status,
        alt.attempts,
        Fraction(alt.finish),
        output=details.output,
        error=details.error,
        metadata=details.metadata,
        item_errors=details.item_errors,
    )


def _scenario(expected: Expected) -> Scenario:
    stages = {}
    for stage in expected.stages:
        alternatives = [_alternative(alt) for alt in stage.alternatives]
        stopped = min(stage.item_failure_at, stage.item_interrupt_at)
        runs = stage.natural_status not in ("never", "upstream_failed", "")
        stages[stage.spec.id] = StageExpectation(
            stage.spec.id,
            tuple(alt for alt in alternatives if alt is not None),
            stage.input if runs and not stage.spec.stream_fed else UNPREDICTED,
            _time(stopped),
        )
    hangs = expected.hangs
    return Scenario(
        stages=stages,
        statuses=frozenset(expected.statuses),
        finished_at=None if hangs else _time(min(expected.end, expected.interrupt_at)),
        cancelled_at=_time(expected.cancel_at),
        interrupted=frozenset(expected.interrupt),
        interrupted_at=_time(expected.interrupt_at),
    )


__all__ = [
    "UNPREDICTED",
    "Act",
    "Alternative",
    "Expectation",
    "FaultPlan",
    "Scenario",
    "StageExpectation",
    "StagePlan",
    "Step",
    "StreamStep",
    "Unpredicted",
    "expect",
]

fix_module_names(globals(), __all__)

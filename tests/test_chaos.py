"""Chaos property suite: random DAGs and faults, executor vs model.

Each example builds a real pipeline from a random :class:`~tests.strategies.Plan`,
runs it in a fresh ``trio.run`` under a mock clock (virtual time, exact),
and compares what happened with :func:`tests.model.expect`, then checks the
documented invariants on the recorded trace.

The normal test run uses the fast profile (a few hundred examples). Set
``ACTORS_CHAOS=large`` for the large profile (10,000 examples)::

    ACTORS_CHAOS=large .venv/bin/pytest -q -p no:cacheprovider tests/test_chaos.py
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from model import NEVER, Expected, Time, expect
from strategies import (
    INTERRUPT_LAG,
    SLOW,
    Fault,
    Kind,
    Plan,
    Retry,
    StageSpec,
    plans,
)

from actors import (
    ExecutionPattern,
    Observer,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    PipelineStatus,
    RetryConfig,
    StageDefinition,
    StageFinished,
    StageResult,
    StageRetrying,
    StageStarted,
    StageStatus,
    StageUnresponsive,
    success_result,
)

WATCHDOG = 1_000_000.0
"""Virtual seconds after which a run counts as hung (no plan needs this long)."""

_PROFILES = {
    "fast": settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    ),
    "large": settings(
        max_examples=10_000,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    ),
}
_PROFILE = os.environ.get("ACTORS_CHAOS", "fast")
CHAOS = _PROFILES[_PROFILE]


def ms(t: Time) -> float:
    """Convert a model time to the executor's rounded milliseconds."""
    return round(float(t) * 1000, 6)


class TaskCounter(trio.abc.Instrument):
    """Counts live tasks, so a task left behind by ``execute`` is caught."""

    def __init__(self) -> None:
        self.live = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        """Count a new task."""
        self.live += 1

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        """Count a task gone."""
        self.live -= 1


@dataclass
class Attempt:
    """One call of a stage function, as the stage itself saw it."""

    stage: str
    item: int | None
    number: int
    start: float
    input: Any
    end: float | None = None
    cancelled_at: float | None = None


@dataclass
class Trace:
    """Everything recorded during one run."""

    attempts: list[Attempt] = field(default_factory=list)
    numbers: Counter[tuple[str, int | None]] = field(default_factory=Counter)
    active: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    started: list[StageStarted] = field(default_factory=list)
    retrying: list[StageRetrying] = field(default_factory=list)
    finished: list[StageFinished] = field(default_factory=list)
    unresponsive: list[StageUnresponsive] = field(default_factory=list)


class Recorder(Observer):
    """Keeps the executor's events in the trace."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace

    def stage_started(self, event: StageStarted) -> None:
        """Record an attempt start."""
        self.trace.started.append(event)

    def stage_retrying(self, event: StageRetrying) -> None:
        """Record a retry."""
        self.trace.retrying.append(event)

    def stage_finished(self, event: StageFinished) -> None:
        """Record a terminal status."""
        self.trace.finished.append(event)

    def stage_unresponsive(self, event: StageUnresponsive) -> None:
        """Record an unresponsive stage (none is expected: chaos stages cooperate)."""
        self.trace.unresponsive.append(event)


_WRONG = object()


def _item_index(value: Any) -> int:
    """Recover a fan-out item's index from its value (``[stage, [stage, j]]``)."""
    while isinstance(value, list):
        value = value[1]
    assert isinstance(value, int)
    return value


def _body(spec: StageSpec, trace: Trace) -> Any:
    """Return the stage function for *spec*: it sleeps, records, then acts its fault."""

    async def body(value: Any, context: PipelineContext[Any]) -> Any:
        item = _item_index(value) if spec.pattern is ExecutionPattern.FAN_OUT else None
        key = (spec.id, item)
        trace.numbers[key] += 1
        fault = spec.fault_of(item)
        kind = fault.attempt(trace.numbers[key])
        attempt = Attempt(spec.id, item, trace.numbers[key], trio.current_time(), value)
        trace.attempts.append(attempt)
        trace.active[spec.id] += 1
        trace.peak[spec.id] = max(trace.peak[spec.id], trace.active[spec.id])
        try:
            if kind is Kind.HANG:
                await trio.sleep_forever()
            elif kind is Kind.SLOW:
                await trio.sleep(float(SLOW))
            elif kind is Kind.INTERRUPT:
                await trio.sleep(float(fault.base + INTERRUPT_LAG + spec.eps(item)))
            else:
                await trio.sleep(float(fault.base + spec.eps(item)))
        except trio.Cancelled:
            attempt.cancelled_at = trio.current_time()
            raise
        finally:
            trace.active[spec.id] -= 1
        attempt.end = trio.current_time()
        if kind is Kind.INTERRUPT:
            raise KeyboardInterrupt
        if kind is Kind.RAISE:
            raise ValueError("boom")
        if kind is Kind.WRONG:
            return _WRONG
        if item is not None:
            return [spec.index, value]
        return list(range(spec.emit)) if spec.emit is not None else spec.id

    return body


class _ObjectStage:
    """The object form of a stage: ``name`` and ``async execute``."""

    def __init__(self, spec: StageSpec, body: Any) -> None:
        self.name = f"object {spec.id}"
        self._body = body

    async def execute(self, input: Any, context: PipelineContext[Any]) -> StageResult:
        output = await self._body(input, context)
        if output is _WRONG:
            return 42  # type: ignore[return-value]  # the fault: a wrong type
        return success_result(output, self.name)


def _retry_config(retry: Retry | None) -> RetryConfig | None:
    if retry is None:
        return None
    return RetryConfig(
        max_attempts=retry.max_attempts,
        initial_delay_ms=retry.initial_delay_ms,
        backoff_multiplier=retry.backoff_multiplier,
        max_delay_ms=retry.max_delay_ms,
        retryable_errors=retry.retryable_errors,
        retry_on=(ValueError,) if retry.retry_on_value_error else None,
    )


def build(plan: Plan, trace: Trace) -> PipelineDefinition:
    """Return the real pipeline of *plan*, declared in ``plan.order``."""
    definitions = []
    for index in plan.order:
        spec = plan.stages[index]
        body = _body(spec, trace)
        stage: Any = _ObjectStage(spec, body) if spec.object_form else body
        condition = None
        if spec.condition is not None:
            answer = spec.condition

            def condition(context: PipelineContext[Any], answer: bool = answer) -> bool:
                return answer

        definitions.append(
            StageDefinition(
                spec.id,
                stage,
                pattern=spec.pattern,
                inputs=[f"s{i}" for i in spec.inputs],
                condition=condition,
                retry_config=_retry_config(spec.retry),
                timeout_ms=spec.timeout_ms,
                critical=spec.critical,
                max_concurrency=spec.max_concurrency,
                item_failures="collect" if spec.item_failures == "collect" else "fail",
                min_successes=spec.min_successes,
            )
        )
    return PipelineDefinition(
        name="chaos",
        stages=definitions,
        fail_fast=plan.fail_fast,
        timeout_ms=None if plan.timeout_ms is None else float(plan.timeout_ms),
    )


@dataclass
class Observed:
    """How one run ended, from the caller's side."""

    trace: Trace
    result: PipelineResult | None = None
    interrupted: bool = False
    watchdog: bool = False
    end: float = 0.0
    live_before: int = 0
    live_after: int = 0


def run_plan(plan: Plan) -> Observed:
    """Run *plan* for real, in a fresh trio run under a mock clock."""
    trace = Trace()
    observed = Observed(trace)
    pipeline = build(plan, trace)
    counter = TaskCounter()
    executor = PipelineExecutor(log_events=False, observers=[Recorder(trace)])

    async def main() -> None:
        token = trio.Event() if plan.cancel_at is not None else None
        context: PipelineContext[None] = PipelineContext(cancel_token=token)

        setter_alive = [False]

        async def set_token(at: float) -> None:
            assert token is not None
            setter_alive[0] = True
            try:
                await trio.sleep(at)
                token.set()
            finally:
                setter_alive[0] = False

        async with trio.open_nursery() as nursery:
            if plan.cancel_at is not None:
                nursery.start_soon(set_token, float(plan.cancel_at))
            await trio.testing.wait_all_tasks_blocked()
            observed.live_before = counter.live - setter_alive[0]
            with trio.move_on_after(WATCHDOG) as watchdog:
                try:
                    observed.result = await executor.execute(
                        pipeline, list(range(plan.initial)), context
                    )
                except KeyboardInterrupt:
                    observed.interrupted = True
            observed.watchdog = watchdog.cancelled_caught
            observed.end = trio.current_time()
            observed.live_after = counter.live - setter_alive[0]
            nursery.cancel_scope.cancel()

    trio.run(
        main,
        clock=trio.testing.MockClock(autojump_threshold=0),
        instruments=[counter],
    )
    return observed


def check(plan: Plan, expected: Expected, observed: Observed) -> None:
    """Compare one run with the model and check every documented invariant."""
    trace = observed.trace
    # No task outlives execute, however it ended.
    assert observed.live_before == observed.live_after
    # Every attempt that started either ended or saw Cancelled.
    assert all(a.end is not None or a.cancelled_at is not None for a in trace.attempts)
    assert trace.unresponsive == []
    # Fan-out never runs more items at once than its limit.
    for spec in plan.stages:
        if spec.max_concurrency is not None:
            assert trace.peak[spec.id] <= spec.max_concurrency
    _check_retries(plan, trace)
    _check_cancellation_times(plan, expected, trace)

    if expected.hangs:
        assert observed.watchdog
        assert observed.end == WATCHDOG
        return
    assert not observed.watchdog, "the run did not end inside the virtual watchdog"
    assert observed.interrupted in expected.interrupt
    if observed.interrupted:
        assert observed.end == float(expected.interrupt_at)
        return

    result = observed.result
    assert result is not None
    assert observed.end == float(expected.end)
    assert result.total_duration_ms == ms(expected.end)
    assert result.status in expected.statuses
    assert result.success is (result.status is PipelineStatus.SUCCEEDED)
    # Success is exactly: every critical stage succeeded or was skipped, and
    # the run was not cut (a cut that comes after every stage ended is none).
    critical_ok = all(
        result.stage_results[spec.id].status
        in (StageStatus.SUCCEEDED, StageStatus.SKIPPED)
        for spec in plan.stages
        if spec.critical
    )
    cut = result.status in (PipelineStatus.CANCELLED, PipelineStatus.TIMED_OUT)
    assert result.success is (critical_ok and not cut)
    if cut:
        # A cut run always has a stage it cut.
        assert any(
            r.status is StageStatus.CANCELLED for r in result.stage_results.values()
        )
    ids = [plan.stages[i].id for i in plan.order]
    # Every stage has exactly one terminal status, reported once.
    assert list(result.stage_results) == ids
    assert sorted(e.stage_id for e in trace.finished) == sorted(ids)
    assert result.failed_stages == [
        i for i in ids if result.stage_results[i].status is StageStatus.FAILED
    ]
    assert set(result.outputs) == {
        i
        for i in ids
        if result.stage_results[i].status
        in (StageStatus.SUCCEEDED, StageStatus.SKIPPED)
    }
    for stage in expected.stages:
        _check_stage(stage, result)
    _check_starts(plan, expected, result, trace)


def _check_stage(stage: Any, result: PipelineResult) -> None:
    spec = stage.spec
    actual = result.stage_results[spec.id]
    status = actual.status.value
    matching = [alt for alt in stage.alternatives if alt.status == status]
    assert matching, (spec.id, status, stage.alternatives)
    assert actual.profile is not None
    assert any(
        alt.attempts[0] <= actual.attempts <= alt.attempts[1]
        and actual.profile.finished_at_ms == ms(alt.finish)
        for alt in matching
    ), (spec.id, actual.attempts, actual.profile.finished_at_ms, matching)
    if status == stage.natural_status:
        if status in (StageStatus.SUCCEEDED, StageStatus.SKIPPED):
            assert result.outputs[spec.id] == stage.output
        if stage.error is not None and status in (
            StageStatus.FAILED,
            StageStatus.UPSTREAM_FAILED,
        ):
            assert actual.error is not None
            assert re.search(stage.error, actual.error), (stage.error, actual.error)
    if status == StageStatus.SKIPPED:
        assert actual.metadata["skipped"] is True
    if status == stage.natural_status and stage.item_errors is not None:
        # A collecting fan-out that ran all its items: exactly these failed.
        assert sorted(actual.item_errors) == sorted(stage.item_errors)
        for index, pattern in stage.item_errors.items():
            assert re.search(pattern, actual.item_errors[index])
        assert actual.partial is bool(stage.item_errors)
        if status == StageStatus.FAILED and stage.items:
            assert actual.metadata == {"partial": stage.partial}


def _check_starts(
    plan: Plan, expected: Expected, result: PipelineResult, trace: Trace
) -> None:
    """No stage starts before its inputs finished, and each gets the right input."""
    by_id = {stage.spec.id: stage for stage in expected.stages}
    for attempt in trace.attempts:
        spec = by_id[attempt.stage].spec
        for source in spec.inputs:
            profile = result.stage_results[f"s{source}"].profile
            assert profile is not None
            assert profile.finished_at_ms is not None
            assert ms(Fraction(attempt.start)) >= profile.finished_at_ms
        if attempt.item is None:
            assert attempt.input == by_id[attempt.stage].input


def _check_retries(plan: Plan, trace: Trace) -> None:
    """Retry delays follow the formula exactly; the next attempt starts on time."""
    specs = {spec.id: spec for spec in plan.stages}
    starts: dict[tuple[str, int | None, int], float] = {
        (e.stage_id, e.item_index, e.attempt): e.at_ms for e in trace.started
    }
    for event in trace.retrying:
        retry = specs[event.stage_id].retry
        assert retry is not None
        expected_ms = min(
            retry.initial_delay_ms * retry.backoff_multiplier ** (event.attempt - 1),
            retry.max_delay_ms,
        )
        assert event.delay_ms == expected_ms
        following = starts.get((event.stage_id, event.item_index, event.attempt + 1))
        if following is not None:
            assert following == round(event.at_ms + event.delay_ms, 6)


def _check_cancellation_times(plan: Plan, expected: Expected, trace: Trace) -> None:
    """After a cancel at T nothing starts; cooperating stages see Cancelled at T.

    Cancelled also arrives at an attempt's own timeout, and, inside a fan-out,
    when another item of the same stage failed.
    """
    cut = min(expected.cancel_at, expected.interrupt_at)
    specs = {spec.id: spec for spec in plan.stages}
    local = {stage.spec.id: stage.item_failure_at for stage in expected.stages}
    local_interrupt = {
        stage.spec.id: stage.item_interrupt_at for stage in expected.stages
    }
    for attempt in trace.attempts:
        if cut != NEVER:
            assert Fraction(attempt.start) <= cut, "an attempt started after the cancel"
        if attempt.cancelled_at is None:
            continue
        at = Fraction(attempt.cancelled_at)
        spec = specs[attempt.stage]
        legal: set[Time] = {cut, local[spec.id], local_interrupt[spec.id]}
        if spec.timeout_ms is not None:
            legal.add(Fraction(attempt.start) + Fraction(spec.timeout_ms, 1000))
        if expected.hangs:
            legal.add(Fraction(WATCHDOG))
        assert at in legal, (attempt, legal)
    for event in trace.started:
        if cut != NEVER:
            assert event.at_ms <= ms(cut)


@pytest.mark.timeout(0 if _PROFILE == "large" else 300)
@CHAOS
@given(plan=plans())
@example(
    plan=Plan(
        stages=(
            StageSpec(0, fault=Fault(Kind.RAISE, Fraction(1))),
            StageSpec(1, fault=Fault(Kind.OK, Fraction(1)), timeout_ms=750),
            StageSpec(2, inputs=(0, 1)),
        ),
        order=(2, 1, 0),
    )
)
@example(
    plan=Plan(
        stages=(
            StageSpec(0, emit=6),
            StageSpec(
                1,
                inputs=(0,),
                pattern=ExecutionPattern.FAN_OUT,
                retry=Retry(max_attempts=2, initial_delay_ms=250),
                item_faults={
                    1: Fault(Kind.RAISE, Fraction(1)),
                    4: Fault(Kind.FLAKY, Fraction(1, 2), fails=1),
                },
                max_concurrency=2,
                item_failures="collect",
                min_successes=5,
            ),
            StageSpec(2, inputs=(1,)),
        ),
        order=(0, 1, 2),
    )
)
@example(
    plan=Plan(
        stages=(
            StageSpec(0, emit=6),
            StageSpec(
                1,
                inputs=(0,),
                pattern=ExecutionPattern.FAN_OUT,
                item_faults={1: Fault(Kind.RAISE, Fraction(1))},
                item_failures="collect",
                min_successes=6,
            ),
            StageSpec(2, inputs=(1,)),
            StageSpec(3, fault=Fault(Kind.HANG)),
        ),
        order=(3, 2, 1, 0),
    )
)
def test_executor_matches_the_model(plan: Plan) -> None:
    """On random DAGs and faults, the executor does what the model predicts."""
    expected = expect(plan)
    observed = run_plan(plan)
    check(plan, expected, observed)


def test_chaos_profile_is_known() -> None:
    """ACTORS_CHAOS names a registered profile (fast or large)."""
    assert _PROFILE in _PROFILES
    assert CHAOS.max_examples >= (10_000 if _PROFILE == "large" else 100)

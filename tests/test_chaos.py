"""Chaos property suite: random DAGs and faults, executor vs the public oracle.

Each example draws a random definition (:func:`strategies.definitions`, with
streams and the fan-outs they feed) and a fault plan for it from the public
:func:`actors.testing.strategies.fault_plans`, runs ``plan.apply(definition)``
in a fresh ``trio.run`` under a mock clock (virtual time, exact), compares
what happened with :func:`actors.testing.oracle.expect`, then checks the
documented invariants on the recorded calls and events.

The normal test run uses the fast profile (a few hundred examples). Set
``ACTORS_CHAOS=large`` for the large profile (10,000 examples)::

    ACTORS_CHAOS=large .venv/bin/pytest -q -p no:cacheprovider tests/test_chaos.py
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from strategies import Case, cases, unplanned, unplanned_stream

from actors import (
    ExecutionPattern,
    ItemFinished,
    LiveRun,
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
    TapItem,
    success_result,
)
from actors.testing import Call, Recorder, with_stages
from actors.testing._plan import PlannedStage, PlannedStream
from actors.testing.oracle import (
    Act,
    Expectation,
    FaultPlan,
    Scenario,
    StagePlan,
    Step,
    StreamStep,
    expect,
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


def ms(t: Fraction | float) -> float:
    """Convert a time in seconds to the executor's rounded milliseconds."""
    return round(float(t) * 1000, 6)


def seconds(t: Fraction | float) -> float:
    """Round a time in seconds as the recorder does (to 1 ns)."""
    return round(float(t), 9)


NS = 1.5e-9
"""Times compare to the recorder's resolution: 1 ns, and float rounding of a
duration that is not a binary fraction (a whole-stream timeout) may land on
the neighbouring nanosecond."""


def near(a: float, b: float | None) -> bool:
    """True if the times *a* and *b* (seconds) are the same nanosecond."""
    return b is not None and abs(a - b) < NS


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


class ObjectStage:
    """The object form of a planned stage: ``name`` and ``async execute``.

    A planned contract breach (a returned coroutine) becomes the object
    form's own: ``execute`` returning an int.
    """

    def __init__(self, stage_id: str, body: PlannedStage) -> None:
        self.name = f"object {stage_id}"
        self._body = body

    async def execute(self, input: Any, context: PipelineContext[Any]) -> StageResult:
        output = await self._body(input, context)
        if hasattr(output, "close") and hasattr(output, "cr_code"):
            output.close()
            return 42  # type: ignore[return-value]  # the fault: a wrong type
        return success_result(output, self.name)


@dataclass
class Observed:
    """How one run ended, from the caller's side, and what it recorded."""

    recorder: Recorder
    streams: dict[str, PlannedStream]
    result: PipelineResult | None = None
    interrupted: bool = False
    watchdog: bool = False
    end: float = 0.0
    live_before: int = 0
    live_after: int = 0
    tapped: dict[str, list[TapItem]] | None = None
    """With ``case.live``: what each stage's tap delivered."""

    @property
    def calls(self) -> list[Call]:
        """Every call of a planned stage."""
        return self.recorder.calls


def build(case: Case) -> PipelineDefinition:
    """Return the definition the plan acts, some stages in object form."""
    applied = case.plan.apply(case.definition)
    objects = {
        stage.id: ObjectStage(stage.id, stage.stage)
        for stage in applied.stages
        if stage.id in case.object_form
    }
    return with_stages(applied, **objects) if objects else applied


def run_case(case: Case) -> Observed:
    """Run the planned definition for real, in a fresh trio run under a mock clock."""
    pipeline = build(case)
    recorder = Recorder()
    streams = {
        stage.id: stage.stage
        for stage in pipeline.stages
        if isinstance(stage.stage, PlannedStream)
    }
    observed = Observed(recorder, streams)
    counter = TaskCounter()
    executor = PipelineExecutor(log_events=False, observers=[recorder])
    cancel_at = case.plan.cancel_at

    async def main() -> None:
        token = trio.Event() if cancel_at is not None else None
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
            if cancel_at is not None:
                nursery.start_soon(set_token, float(cancel_at))
            await trio.testing.wait_all_tasks_blocked()
            observed.live_before = counter.live - setter_alive[0]
            with trio.move_on_after(WATCHDOG) as watchdog:
                try:
                    if case.live:
                        observed.result = await tapped(
                            executor, pipeline, case, context, observed
                        )
                    else:
                        observed.result = await executor.execute(
                            pipeline, case.plan.initial_input, context
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


async def tapped(
    executor: PipelineExecutor,
    pipeline: PipelineDefinition,
    case: Case,
    context: PipelineContext[None],
    observed: Observed,
) -> PipelineResult:
    """Run through ``open_run`` with a tap on every stage, each read at once."""
    taps: dict[str, list[TapItem]] = {stage.id: [] for stage in pipeline.stages}
    observed.tapped = taps

    async def read(run: LiveRun, stage: str) -> None:
        async with run.tap(stage) as items:
            taps[stage].extend([item async for item in items])

    async with (
        executor.open_run(pipeline, case.plan.initial_input, context) as run,
        trio.open_nursery() as nursery,
    ):
        for stage in taps:
            nursery.start_soon(read, run, stage)
    return run.result


def _check_taps(case: Case, result: PipelineResult, observed: Observed) -> None:
    """Each tap delivered each item once; a succeeded stage's, exactly its output."""
    if observed.tapped is None:
        return
    for stage in case.definition.stages:
        got = observed.tapped[stage.id]
        indices = [item.index for item in got]
        assert len(indices) == len(set(indices)), (stage.id, indices)
        stage_result = result.stage_results[stage.id]
        if stage_result.status is not StageStatus.SUCCEEDED:
            continue
        output = stage_result.output
        if not stage.collect:  # only a count: the tap, open from the start, saw all
            assert stage_result.profile is not None
            assert sorted(indices) == list(range(stage_result.profile.items or 0))
            continue
        if stage.pattern is ExecutionPattern.FAN_OUT or inspect.isasyncgenfunction(
            stage.stage
        ):
            assert isinstance(output, list), stage.id
            expected = dict(enumerate(output))
        else:
            expected = {0: output}
        assert {item.index: item.output for item in got} == expected, stage.id


def events(observed: Observed, kind: type[Any]) -> list[Any]:
    """The recorded events of one kind."""
    return [e for e in observed.recorder.events if isinstance(e, kind)]


def check(case: Case, expectation: Expectation, observed: Observed) -> None:
    """Compare one run with the oracle and check every documented invariant."""
    # No task outlives execute, however it ended.
    assert observed.live_before == observed.live_after
    # Every call that started either ended or saw Cancelled (its finally ran).
    assert all(call.ended is not None for call in observed.calls)
    assert events(observed, StageUnresponsive) == []
    _check_concurrency(case, observed)
    _check_retries(case, observed)
    scenario = _scenario(expectation, observed)
    _check_cancellation_times(case, scenario, observed)

    if expectation.hangs:
        assert observed.watchdog
        assert observed.end == WATCHDOG
        return
    assert not observed.watchdog, "the run did not end inside the virtual watchdog"
    if observed.interrupted:
        return  # the scenario matched: interrupted, and when

    result = observed.result
    assert result is not None
    assert result.success is (result.status is PipelineStatus.SUCCEEDED)
    # Success is exactly: every critical stage succeeded or was skipped, and
    # the run was not cut (a cut that comes after every stage ended is none).
    stages = case.definition.stages
    critical_ok = all(
        result.stage_results[stage.id].status
        in (StageStatus.SUCCEEDED, StageStatus.SKIPPED)
        for stage in stages
        if stage.critical
    )
    cut = result.status in (PipelineStatus.CANCELLED, PipelineStatus.TIMED_OUT)
    assert result.success is (critical_ok and not cut)
    if cut:
        # A cut run always has a stage it cut.
        assert any(
            r.status is StageStatus.CANCELLED for r in result.stage_results.values()
        )
    ids = [stage.id for stage in stages]
    # Every stage has exactly one terminal status, reported once.
    assert list(result.stage_results) == ids
    assert sorted(e.stage_id for e in events(observed, StageFinished)) == sorted(ids)
    assert result.failed_stages == [
        i for i in ids if result.stage_results[i].status is StageStatus.FAILED
    ]
    assert set(result.outputs) == {
        i
        for i in ids
        if result.stage_results[i].status
        in (StageStatus.SUCCEEDED, StageStatus.SKIPPED)
    }
    _check_starts(case, scenario, result, observed)
    _check_streams(case, scenario, result, observed)
    _check_taps(case, result, observed)


def _scenario(expectation: Expectation, observed: Observed) -> Scenario:
    """The scenario the run followed; fails naming the differences if none."""
    run: Any = observed.result
    if observed.watchdog:
        matching = [s for s in expectation.scenarios if s.hangs]
        assert matching, "the run hung, which the oracle did not expect"
        return matching[0]
    if observed.interrupted:
        matching = [
            s
            for s in expectation.scenarios
            if True in s.interrupted and s.interrupted_at == Fraction(observed.end)
        ]
        assert matching, (observed.end, expectation.scenarios)
        return matching[0]
    assert run is not None
    assert ms(observed.end) == run.total_duration_ms
    for scenario in expectation.scenarios:
        if not scenario.problems(run):
            return scenario
    expectation.assert_matches(run)  # raises, naming what differs
    raise AssertionError("unreachable")


def _busy(calls: list[Call]) -> int:
    """The most calls running at once (a call ending at t frees its slot at t)."""
    edges = sorted(
        [(c.started, 1) for c in calls] + [(c.ended or 0.0, -1) for c in calls]
    )
    peak = running = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def _check_concurrency(case: Case, observed: Observed) -> None:
    """A fan-out never runs more items at once than its limit."""
    for stage in case.definition.stages:
        if stage.max_concurrency is not None:
            calls = [c for c in observed.calls if c.stage == stage.id]
            assert _busy(calls) <= stage.max_concurrency, stage.id


def _check_retries(case: Case, observed: Observed) -> None:
    """Retry delays follow the formula exactly; the next attempt starts on time."""
    retries = {stage.id: stage.retry_config for stage in case.definition.stages}
    starts: dict[tuple[str, int | None, int], float] = {
        (e.stage_id, e.item_index, e.attempt): e.at_ms
        for e in events(observed, StageStarted)
    }
    for event in events(observed, StageRetrying):
        retry = retries[event.stage_id]
        assert retry is not None
        assert event.delay_ms == retry.delay_ms(event.attempt + 1)
        following = starts.get((event.stage_id, event.item_index, event.attempt + 1))
        if following is not None:
            assert near(following / 1000, (event.at_ms + event.delay_ms) / 1000)


def _check_cancellation_times(
    case: Case, scenario: Scenario, observed: Observed
) -> None:
    """After a cancel at T nothing starts; cooperating stages see Cancelled at T.

    Cancelled also arrives at an attempt's own timeout, and, inside a fan-out,
    when another item of the same stage failed; a stream's generator also at
    its per-item or whole-stream timeout.
    """
    cuts = [
        t for t in (scenario.cancelled_at, scenario.interrupted_at) if t is not None
    ]
    cut = seconds(min(cuts)) if cuts else None
    stages = {stage.id: stage for stage in case.definition.stages}
    for call in observed.calls:
        assert call.ended is not None
        if cut is not None:
            assert call.started < cut + NS, "a call started after the cancel"
            assert call.ended < cut + NS
        if not call.cancelled or call.stage in observed.streams:
            continue  # a stream's waits for items are timed out of the call's sight
        stage = stages[call.stage]
        stopped = scenario.stages[call.stage].stopped_at
        legal = {cut, None if stopped is None else seconds(stopped)}
        if stage.timeout_ms is not None:
            legal.add(
                seconds(
                    Fraction(call.started) + Fraction(repr(stage.timeout_ms)) / 1000
                )
            )
        if scenario.hangs:
            legal.add(WATCHDOG)
        assert any(near(call.ended, at) for at in legal), (call, legal)
    for event in events(observed, StageStarted):
        if cut is not None:
            assert event.at_ms / 1000 < cut + NS


def _check_starts(
    case: Case, scenario: Scenario, result: PipelineResult, observed: Observed
) -> None:
    """No stage starts before its inputs finished, and each gets the right input."""
    stages = {stage.id: stage for stage in case.definition.stages}
    fed = _stream_fed(case.definition)
    for call in observed.calls:
        if call.stage in fed:
            continue  # it starts on its stream's first item
        for source in stages[call.stage].inputs:
            profile = result.stage_results[source].profile
            assert profile is not None
            assert profile.finished_at_ms is not None
            assert call.started > profile.finished_at_ms / 1000 - NS
        if call.item is None:
            assert call.input == scenario.stages[call.stage].input


def _stream_fed(definition: PipelineDefinition) -> dict[str, str]:
    """Each FAN_OUT fed by a stream, and the stage feeding it."""
    streaming = {s.id for s in definition.stages if s.stage is unplanned_stream}
    fed: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for stage in definition.stages:
            if (
                stage.id not in fed
                and stage.pattern is ExecutionPattern.FAN_OUT
                and stage.inputs
                and (stage.inputs[0] in streaming or stage.inputs[0] in fed)
            ):
                fed[stage.id] = stage.inputs[0]
                changed = True
    return fed


def _check_streams(
    case: Case, scenario: Scenario, result: PipelineResult, observed: Observed
) -> None:
    """A generator's finally has run by the time its stage ends; rule 4's bound holds."""
    stages = {stage.id: stage for stage in case.definition.stages}
    for stage_id in observed.streams:
        profile = result.stage_results[stage_id].profile
        assert profile is not None
        finished = profile.finished_at_ms
        assert finished is not None
        for call in observed.calls:
            if call.stage == stage_id:
                assert call.ended is not None
                assert call.ended < finished / 1000 + NS
    fed = _stream_fed(case.definition)
    for consumer in fed:
        # Walk up to the producer, summing the bound of every edge.
        bound: int | None = 0
        path = [consumer]
        node = consumer
        while node in fed:
            source = fed[node]
            limit = stages[node].max_concurrency
            buffer = 0 if source in fed else (stages[source].stream_buffer or 0)
            bound = (
                None if limit is None or bound is None else bound + limit + buffer + 1
            )
            path.append(source)
            node = source
        if bound is None:
            continue  # no max_concurrency: no backpressure, no bound
        producer = observed.streams[node]
        ends = [
            result.stage_results[s].profile.finished_at_ms  # type: ignore[union-attr]
            for s in path[:-1]
        ]
        until = min(e for e in ends if e is not None) / 1000
        done = sorted(
            e.at_ms / 1000
            for e in events(observed, ItemFinished)
            if e.stage_id == consumer
        )
        edges = sorted(
            [(t, 0) for t in done if t < until]
            + [(t, 1) for t, _ in producer.produced if t < until]
        )
        running = peak = 0
        for _, produced in edges:
            running += 1 if produced else -1
            peak = max(peak, running)
        assert peak <= bound, (consumer, path, peak, bound)


def case(
    stages: list[StageDefinition],
    plans: dict[str, StagePlan],
    *,
    initial: int = 0,
    order: list[int] | None = None,
    **options: Any,
) -> Case:
    """An explicit chaos example: stages declared in *order*, and their plans."""
    declared = stages if order is None else [stages[i] for i in order]
    definition = PipelineDefinition(name="chaos", stages=declared, **options)
    return Case(definition, FaultPlan(plans, initial=initial), frozenset())


def after(k: int, n: int = 1, stage: int = 0) -> Fraction:
    """``k / n`` seconds plus stage *stage*'s own offset."""
    return Fraction(k, n) + Fraction(stage + 1, 2**10)


RETURNS = Act.RETURNS
RAISES = Act.RAISES
FAN_OUT = ExecutionPattern.FAN_OUT


@pytest.mark.timeout(0 if _PROFILE == "large" else 300)
@CHAOS
@given(case=cases())
@example(
    case=case(
        [
            StageDefinition("s0", unplanned),
            StageDefinition("s1", unplanned, timeout_ms=750),
            StageDefinition("s2", unplanned, inputs=["s0", "s1"]),
        ],
        {
            "s0": StagePlan(script=(Step(RAISES, after(1, stage=0)),)),
            "s1": StagePlan(script=(Step(RETURNS, after(1, stage=1)),)),
        },
        order=[2, 1, 0],
    )
)
@example(
    case=case(
        [
            StageDefinition("s0", unplanned),
            StageDefinition(
                "s1",
                unplanned,
                inputs=["s0"],
                pattern=FAN_OUT,
                retry_config=RetryConfig(max_attempts=2, initial_delay_ms=250),
                max_concurrency=2,
                item_failures="collect",
                min_successes=5,
            ),
            StageDefinition("s2", unplanned, inputs=["s1"]),
        ],
        {
            "s0": StagePlan(emit=6),
            "s1": StagePlan(
                script=(Step(RETURNS, after(1, 4, 1)),),
                items={
                    1: (Step(RAISES, after(1, stage=1)),),
                    4: (Step(RAISES, after(1, 2, 1)), Step(RETURNS, after(1, 2, 1))),
                },
                spread=Fraction(1, 2**20),
            ),
        },
    )
)
@example(
    case=case(
        [
            StageDefinition("s0", unplanned),
            StageDefinition(
                "s1",
                unplanned,
                inputs=["s0"],
                pattern=FAN_OUT,
                item_failures="collect",
                min_successes=6,
            ),
            StageDefinition("s2", unplanned, inputs=["s1"]),
            StageDefinition("s3", unplanned),
        ],
        {
            "s0": StagePlan(emit=6),
            "s1": StagePlan(items={1: (Step(RAISES, after(1, stage=1)),)}),
            "s3": StagePlan(script=(Step(Act.HANGS),)),
        },
        order=[3, 2, 1, 0],
    )
)
@example(
    # A critical consumer's item fails for good under fail-fast: the
    # producer is cancelled mid-stream (its finally runs then).
    case=case(
        [
            StageDefinition("s0", unplanned_stream, stream_buffer=1),
            StageDefinition(
                "s1", unplanned, inputs=["s0"], pattern=FAN_OUT, max_concurrency=2
            ),
            StageDefinition("s2", unplanned, inputs=["s0"]),
        ],
        {
            "s0": StagePlan(stream=(StreamStep(10, after(1, 4, 0)),)),
            "s1": StagePlan(
                script=(Step(RETURNS, after(1, 1, 1)),),
                items={3: (Step(RAISES, after(1, 2, 1)),)},
                spread=Fraction(1, 2**20),
            ),
        },
    )
)
@example(
    # A producer failing part-way, without fail-fast: the consumers finish
    # the items delivered and end upstream_failed, a chain of them too.
    case=case(
        [
            StageDefinition(
                "s0",
                unplanned_stream,
                retry_config=RetryConfig(max_attempts=2, initial_delay_ms=500),
            ),
            StageDefinition(
                "s1", unplanned, inputs=["s0"], pattern=FAN_OUT, max_concurrency=1
            ),
            StageDefinition("s2", unplanned, inputs=["s1"], pattern=FAN_OUT),
            StageDefinition("s3", unplanned, inputs=["s1"]),
        ],
        {
            "s0": StagePlan(
                stream=(StreamStep(3, after(1, 2, 0), Step(RAISES, after(1, 4, 0))),)
            ),
            "s1": StagePlan(script=(Step(RETURNS, after(1, 1, 1)),)),
            "s2": StagePlan(script=(Step(RETURNS, after(1, 4, 2)),)),
        },
        fail_fast=False,
    )
)
@example(
    # Two workers of a fan-out blocked handing items to a non-critical
    # fan-out that stops: both drop it, and go on.
    case=case(
        [
            StageDefinition("s0", unplanned_stream),
            StageDefinition(
                "s1", unplanned, inputs=["s0"], pattern=FAN_OUT, max_concurrency=2
            ),
            StageDefinition(
                "s2",
                unplanned,
                inputs=["s1"],
                pattern=FAN_OUT,
                max_concurrency=1,
                critical=False,
            ),
        ],
        {
            "s0": StagePlan(stream=(StreamStep(4, after(1, 64, 0)),)),
            "s1": StagePlan(
                script=(Step(RETURNS, after(1, 4, 1)),), spread=Fraction(1, 2**20)
            ),
            "s2": StagePlan(script=(Step(RAISES, after(1, 1, 2)),)),
        },
    )
)
def test_executor_matches_the_model(case: Case) -> None:
    """On random DAGs, streams and faults, the executor does what the oracle predicts."""
    expectation = expect(case.definition, case.plan)
    observed = run_case(case)
    check(case, expectation, observed)


def test_chaos_profile_is_known() -> None:
    """ACTORS_CHAOS names a registered profile (fast or large)."""
    assert _PROFILE in _PROFILES
    assert CHAOS.max_examples >= (10_000 if _PROFILE == "large" else 100)

"""The public oracle and fault plans: property tests of a user's pipeline, and the oracle's own truth.

The first tests are what docs/testing.md ("Property tests of your
pipelines") shows; the others check that :func:`expect` predicts exact,
hand-computed outcomes, that it flags a run that differs, and what it refuses.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineStatus,
    RateLimited,
    RetryConfig,
    StageDefinition,
    StageStatus,
)
from actors.testing import per_item, raises, returns, run, script, with_stages
from actors.testing.oracle import (
    UNPREDICTED,
    Act,
    Alternative,
    FaultPlan,
    StagePlan,
    Step,
    StreamStep,
    expect,
)
from actors.testing.strategies import fault_plans

FAN_OUT = ExecutionPattern.FAN_OUT
SUCCEEDED = StageStatus.SUCCEEDED
F = Fraction

# -- the user's pipelines (normally imported from the application) ---------


async def fetch(url: str, context: PipelineContext[Any]) -> list[str]:
    raise NotImplementedError("talks to the network; planned in the tests")


async def summarize(page: str, context: PipelineContext[Any]) -> str:
    raise NotImplementedError("calls an LLM; planned in the tests")


async def publish(summaries: list[str], context: PipelineContext[Any]) -> int:
    raise NotImplementedError("writes to a database; planned in the tests")


async def crawl(query: str, context: PipelineContext[Any]) -> AsyncIterator[str]:
    raise NotImplementedError("crawls the web; planned in the tests")
    yield  # an async generator function: a streaming stage


pipeline = PipelineDefinition(
    name="digest",
    timeout_ms=30_000,
    stages=[
        StageDefinition(
            "fetch",
            fetch,
            retry_config=RetryConfig(
                max_attempts=3, initial_delay_ms=500, retry_on=[ConnectionError]
            ),
            timeout_ms=2_000,
        ),
        StageDefinition(
            "summarize",
            summarize,
            inputs=["fetch"],
            pattern=FAN_OUT,
            max_concurrency=2,
            retry_config=RetryConfig(
                max_attempts=2, initial_delay_ms=250, retryable_errors=["rate limit"]
            ),
            timeout_ms=1_500,
        ),
        StageDefinition("publish", publish, inputs=["summarize"]),
    ],
)

crawler = PipelineDefinition(
    name="crawler",
    fail_fast=False,
    stages=[
        StageDefinition(
            "pages",
            crawl,
            stream_buffer=1,
            retry_config=RetryConfig(max_attempts=2, initial_delay_ms=250),
            timeout_ms=1_500,
        ),
        StageDefinition(
            "summaries", summarize, inputs=["pages"], pattern=FAN_OUT, max_concurrency=2
        ),
        StageDefinition("report", publish, inputs=["summaries"]),
    ],
)

# -- property tests of the user's pipelines (docs/testing.md) ---------------


@settings(max_examples=60, deadline=None)
@given(plan=fault_plans(pipeline))
def test_the_digest_pipeline_follows_the_semantics(plan: FaultPlan) -> None:
    """Whatever fails, hangs or is cancelled, the run does what the oracle says."""
    done = run(plan.apply(pipeline), plan.initial_input, faults=plan.faults)
    expect(pipeline, plan).assert_matches(done)
    # The user's own invariant: nothing is published unless every summary is.
    if done.calls_of("publish"):
        assert done.result.stage_results["summarize"].status is SUCCEEDED


@settings(max_examples=60, deadline=None)
@given(plan=fault_plans(crawler))
def test_the_crawler_follows_the_semantics(plan: FaultPlan) -> None:
    """A streaming pipeline too: items flow, fail and retry as the oracle says."""
    done = run(plan.apply(crawler), plan.initial_input, faults=plan.faults)
    expect(crawler, plan).assert_matches(done)


# -- exact, hand-computed predictions ---------------------------------------


def test_a_hand_written_plan() -> None:
    """The hand-written plan of docs/testing.md: fetch retries, three summaries."""
    plan = FaultPlan(
        {
            "fetch": StagePlan(
                script=(
                    Step(Act.RAISES, 0.25, ConnectionError("reset")),
                    Step(Act.RETURNS, 0.25),
                ),
                emit=3,  # fetch returns [0, 1, 2]
            ),
            "summarize": StagePlan(script=(Step(Act.RETURNS, 0.5),)),
        }
    )
    stage = expect(pipeline, plan).stages["summarize"]
    assert stage.exact == Alternative(
        StageStatus.SUCCEEDED, (3, 3), Fraction(2), output=[0, 1, 2], metadata={}
    )
    expect(pipeline, plan).assert_matches(run(plan.apply(pipeline)))


def digest_plan(**stages: StagePlan) -> FaultPlan:
    """A plan for the digest pipeline: fetch three pages, 0.5 s per summary."""
    plans = {
        "fetch": StagePlan(script=(Step(Act.RETURNS, F(1, 4)),), emit=3),
        "summarize": StagePlan(script=(Step(Act.RETURNS, F(1, 2)),)),
    }
    return FaultPlan(plans | stages)


def test_expect_predicts_retries_and_exact_times() -> None:
    """fetch retries a ConnectionError after 500 ms; one summary retries a rate limit."""
    plan = digest_plan(
        fetch=StagePlan(
            script=(
                Step(Act.RAISES, F(1, 4), ConnectionError("reset")),
                Step(Act.RETURNS, F(1, 4)),
            ),
            emit=3,
        ),
        summarize=StagePlan(
            script=(Step(Act.RETURNS, F(1, 2)),),
            items={
                1: (
                    Step(Act.RAISES, F(1, 4), RuntimeError("rate limit")),
                    Step(Act.RETURNS, F(1, 4)),
                )
            },
        ),
    )
    expectation = expect(pipeline, plan)
    assert len(expectation.scenarios) == 1
    assert expectation.statuses == {PipelineStatus.SUCCEEDED}
    # fetch: 0-0.25 fails, retried at 0.75, done at 1. summarize: items 0
    # and 1 start at 1; item 1 fails at 1.25, retried at 1.5, done at 1.75;
    # item 2 takes item 0's worker at 1.5 and ends at 2.
    assert {k: s.alternatives for k, s in expectation.stages.items()} == {
        "fetch": (Alternative(SUCCEEDED, (2, 2), F(1), output=[0, 1, 2], metadata={}),),
        "summarize": (
            Alternative(SUCCEEDED, (4, 4), F(2), output=[0, 1, 2], metadata={}),
        ),
        "publish": (
            Alternative(SUCCEEDED, (1, 1), F(2), output="publish", metadata={}),
        ),
    }
    assert expectation.scenarios[0].finished_at == 2
    done = run(plan.apply(pipeline), plan.initial_input)
    expectation.assert_matches(done)
    calls = done.calls_of("summarize")
    assert sorted((c.item, c.attempt, c.started, c.ended) for c in calls) == [
        (0, 1, 1.0, 1.5),
        (1, 1, 1.0, 1.25),
        (1, 2, 1.5, 1.75),
        (2, 1, 1.5, 2.0),
    ]


@pytest.mark.parametrize(
    ("error", "attempts"),
    [(ConnectionError("reset"), 3), (ValueError("bad"), 1)],
)
def test_expect_follows_the_stages_own_retry_filters(
    error: Exception, attempts: int
) -> None:
    """retry_on=[ConnectionError]: retried to max_attempts; anything else is not."""
    plan = digest_plan(fetch=StagePlan(script=(Step(Act.RAISES, F(1, 4), error),)))
    expectation = expect(pipeline, plan)
    # Three attempts: at 0, 0.75 (after 500 ms) and 2 (after 1000 ms).
    fetch_ends = F(1, 4) if attempts == 1 else F(9, 4)
    assert expectation.stages["fetch"].alternatives == (
        Alternative(
            StageStatus.FAILED,
            (attempts, attempts),
            fetch_ends,
            error=rf"^{type(error).__name__}: {error}$",
            metadata={},
        ),
    )
    # Fail-fast: the others never start.
    assert expectation.stages["publish"].statuses == {StageStatus.CANCELLED}
    expectation.assert_matches(run(plan.apply(pipeline), plan.initial_input))


def test_a_timeout_is_retried_only_if_the_filters_admit_its_text() -> None:
    """retryable_errors=["rate limit"] does not admit 'timed out': one attempt, failed."""
    plan = digest_plan(
        summarize=StagePlan(
            script=(Step(Act.RETURNS, F(1, 2)),), items={2: (Step(Act.HANGS),)}
        )
    )
    stage = expect(pipeline, plan).stages["summarize"]
    assert stage.exact is not None
    assert (stage.exact.status, stage.exact.attempts) == (StageStatus.FAILED, (3, 3))
    # Item 2 starts at 0.75 (when item 0 ends) and times out 1.5 s later.
    assert stage.exact.finished_at == F(9, 4)
    assert stage.exact.error == (
        r"^item 2: StageTimeoutError: stage 'summarize' timed out after 1500 ms "
        r"\(attempt 1\)$"
    )


def test_expect_predicts_a_stream_with_backpressure() -> None:
    """Four pages every 0.25 s, two summaries at a time of 1 s: hand-computed times."""
    plan = FaultPlan(
        {
            "pages": StagePlan(stream=(StreamStep(4, F(1, 4)),)),
            "summaries": StagePlan(script=(Step(Act.RETURNS, F(1)),)),
        }
    )
    expectation = expect(crawler, plan)
    pages = [f"pages:{i}" for i in range(4)]
    # Items start at 0.25, 0.5, 1.25 and 1.5 (a worker frees at 1.25 and 1.5):
    # the producer hands its last item on at 1.5.
    assert {k: s.alternatives for k, s in expectation.stages.items()} == {
        "pages": (Alternative(SUCCEEDED, (1, 1), F(3, 2), output=pages, metadata={}),),
        "summaries": (
            Alternative(SUCCEEDED, (4, 4), F(5, 2), output=pages, metadata={}),
        ),
        "report": (
            Alternative(SUCCEEDED, (1, 1), F(5, 2), output="report", metadata={}),
        ),
    }
    done = run(plan.apply(crawler), plan.initial_input)
    expectation.assert_matches(done)
    assert [c.started for c in done.calls_of("summaries")] == [0.25, 0.5, 1.25, 1.5]


def test_expect_predicts_a_failing_stream_without_fail_fast() -> None:
    """The producer fails after two items, twice: the consumer finishes them, upstream_failed."""
    plan = FaultPlan(
        {
            "pages": StagePlan(
                stream=(StreamStep(2, F(1, 4), Step(Act.RAISES, F(1, 8))),)
            ),
            "summaries": StagePlan(script=(Step(Act.RETURNS, F(1)),)),
        }
    )
    expectation = expect(crawler, plan)
    pages = ["pages:0", "pages:1"]
    # Attempt 1 yields at 0.25 and 0.5, raises at 0.625; attempt 2 starts at
    # 0.875, replays both (discarded, at 1.125 and 1.375), raises at 1.5.
    assert expectation.stages["pages"].alternatives == (
        Alternative(
            StageStatus.FAILED,
            (2, 2),
            F(3, 2),
            error=r"^ValueError: boom$",
            metadata={"items": pages},
        ),
    )
    assert expectation.stages["summaries"].alternatives == (
        Alternative(
            StageStatus.UPSTREAM_FAILED,
            (2, 2),
            F(3, 2),
            error=r"^upstream stage 'pages' failed$",
            metadata={"partial": pages},
        ),
    )
    done = run(plan.apply(crawler))
    expectation.assert_matches(done)
    # Each attempt of the generator is a call, closed (its finally ran) as it raised.
    assert [(c.attempt, c.started, c.ended) for c in done.calls_of("pages")] == [
        (1, 0.0, 0.625),
        (2, 0.875, 1.5),
    ]


def test_a_tie_with_the_pipeline_timeout_leaves_both_outcomes_legal() -> None:
    """A stage ending in the very instant of the run's timeout: done, or cancelled."""
    definition = PipelineDefinition(
        name="tie", stages=[StageDefinition("a", fetch)], timeout_ms=1_000
    )
    plan = FaultPlan({"a": StagePlan(script=(Step(Act.RETURNS, F(1)),))})
    expectation = expect(definition, plan)
    assert expectation.statuses == {PipelineStatus.SUCCEEDED, PipelineStatus.TIMED_OUT}
    assert expectation.stages["a"].statuses == {SUCCEEDED, StageStatus.CANCELLED}
    assert expectation.stages["a"].exact is None
    expectation.assert_matches(run(plan.apply(definition)))


def test_items_meeting_in_one_instant_make_two_scenarios() -> None:
    """Two finished items wait for one free worker downstream: either goes first."""
    definition = PipelineDefinition(
        name="meet",
        stages=[
            StageDefinition("p", crawl),
            StageDefinition("c", summarize, inputs=["p"], pattern=FAN_OUT),
            StageDefinition(
                "d", summarize, inputs=["c"], pattern=FAN_OUT, max_concurrency=1
            ),
        ],
    )
    plan = FaultPlan(
        {
            "p": StagePlan(stream=(StreamStep(2, F(1, 4)),)),
            # Item 0 (from 0.25) and item 1 (from 0.5) both end at 1.25.
            "c": StagePlan(
                items={0: (Step(Act.RETURNS, F(1)),), 1: (Step(Act.RETURNS, F(3, 4)),)}
            ),
            "d": StagePlan(
                items={
                    0: (Step(Act.RETURNS, F(1, 2)),),
                    1: (Step(Act.RAISES, F(1, 4)),),
                }
            ),
        }
    )
    expectation = expect(definition, plan)
    # d fails when item 1 fails: at 1.5 if it went first, else at 2.
    finishes = sorted(
        alt.finished_at
        for scenario in expectation.scenarios
        for alt in scenario.stages["d"].alternatives
    )
    assert finishes == [F(3, 2), F(2)]
    expectation.assert_matches(run(plan.apply(definition)))


# -- expect flags a run that differs ----------------------------------------


def test_a_slower_stage_is_flagged_with_its_times() -> None:
    """A summary slower than planned: the stage, its time and the run's end are named."""
    expectation = expect(pipeline, digest_plan())
    slower = run(
        digest_plan(summarize=StagePlan(script=(Step(Act.RETURNS, F(3, 4)),))).apply(
            pipeline
        )
    )
    assert expectation.mismatches(slower) == [
        "the run ended at 1750.0 ms, expected 1250.0 ms",
        "stage 'summarize': finished at 1750.0 ms, expected 1250.0 ms",
        "stage 'publish': finished at 1750.0 ms, expected 1250.0 ms",
    ]
    with pytest.raises(AssertionError, match=r"stage 'summarize': finished at 1750"):
        expectation.assert_matches(slower)


def test_a_wrong_status_and_output_are_flagged() -> None:
    """A summary that fails where the plan says it succeeds; an output that differs."""
    plan = digest_plan()
    expectation = expect(pipeline, plan)
    failing = with_stages(
        plan.apply(pipeline),
        summarize=per_item(
            {1: raises(ValueError("no"), after=0.25), "*": returns("s", after=0.5)}
        ),
    )
    assert expectation.mismatches(run(failing)) == [
        "the run ended at 500.0 ms, expected 1250.0 ms",
        "the run ended failed, expected succeeded",
        "stage 'summarize': status failed, expected succeeded; 2 attempts, expected "
        "3; finished at 500.0 ms, expected 1250.0 ms; output None, expected [0, 1, 2]",
        "stage 'publish': status cancelled, expected succeeded; 0 attempts, expected "
        "1; finished at 500.0 ms, expected 1250.0 ms; output None, expected 'publish'",
    ]
    wrong = with_stages(plan.apply(pipeline), publish=script(returns("other")))
    assert expectation.mismatches(run(wrong)) == [
        "stage 'publish': output 'other', expected 'publish'"
    ]


def test_extra_retries_and_errors_are_flagged() -> None:
    """More attempts than the filters allow, and an error text that differs."""
    plan = digest_plan(
        fetch=StagePlan(script=(Step(Act.RAISES, F(1, 4), ValueError("bad")),))
    )
    expectation = expect(pipeline, plan)
    retried = with_stages(
        plan.apply(pipeline),
        fetch=script(raises(ValueError("other"), after=0.125)),
    )
    # A stand-in that also retries ValueError, as a wrong retry filter would.
    retried = retried.model_copy(
        update={
            "stages": [
                s.model_copy(
                    update={
                        "retry_config": RetryConfig(max_attempts=2, initial_delay_ms=0)
                    }
                )
                if s.id == "fetch"
                else s
                for s in retried.stages
            ]
        }
    )
    assert expectation.mismatches(run(retried)) == [
        "stage 'fetch': 2 attempts, expected 1; error 'ValueError: other' does not "
        "match '^ValueError: bad$'"
    ]


def test_a_result_of_another_pipeline_is_flagged() -> None:
    """A stage with no result at all is named."""
    other = PipelineDefinition(name="other", stages=[StageDefinition("fetch", fetch)])
    expectation = expect(pipeline, digest_plan())
    found = expectation.mismatches(run(FaultPlan().apply(other)).result)
    assert "stage 'summarize' has no result" in found
    assert "stage 'publish' has no result" in found


def test_an_expected_interrupt_is_flagged_when_missing() -> None:
    """The plan interrupts fetch; a run that did not raise KeyboardInterrupt differs."""
    plan = digest_plan(fetch=StagePlan(script=(Step(Act.INTERRUPTS, F(1, 4)),)))
    expectation = expect(pipeline, plan)
    assert expectation.scenarios[0].interrupted == {True}
    assert expectation.scenarios[0].interrupted_at == F(1, 4)
    calm = run(digest_plan().apply(pipeline))
    assert expectation.mismatches(calm) == [
        "execute was expected to raise KeyboardInterrupt"
    ]


def test_a_planned_interrupt_runs_under_the_kits_runner() -> None:
    """run() keeps a planned stage's KeyboardInterrupt on the TestRun (no fault needed)."""
    plan = digest_plan(fetch=StagePlan(script=(Step(Act.INTERRUPTS, F(1, 4)),)))
    interrupted = run(plan.apply(pipeline))
    assert isinstance(interrupted.raised, KeyboardInterrupt)
    expect(pipeline, plan).assert_matches(interrupted)


# -- plans and what the oracle refuses --------------------------------------


def test_apply_keeps_the_shape_and_plans_away_jitter_conditions_and_offload() -> None:
    """The copy keeps inputs and settings; conditions answer as planned; jitter is 0."""
    definition = PipelineDefinition(
        name="shape",
        stages=[
            StageDefinition(
                "a",
                fetch,
                retry_config=RetryConfig(max_attempts=2, jitter=0.5),
                condition=lambda context: True,
            ),
        ],
    )
    applied = FaultPlan({"a": StagePlan(condition=False)}).apply(definition)
    (stage,) = applied.stages
    assert stage.retry_config == RetryConfig(max_attempts=2, jitter=0.0)
    assert stage.condition(None) is False
    assert run(applied).result.stage_results["a"].status is StageStatus.SKIPPED


def test_unknown_stages_are_refused() -> None:
    """A plan naming a stage the definition lacks is refused, by apply and expect."""
    plan = FaultPlan({"fetsh": StagePlan()})
    message = r"the plan names no stage of pipeline 'digest': 'fetsh'; known stages"
    with pytest.raises(ValueError, match=message):
        plan.apply(pipeline)
    with pytest.raises(ValueError, match=message):
        expect(pipeline, plan)


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        (
            StagePlan(script=(Step(Act.RETURNS, 2),)),
            r"stage 'fetch': a planned wait of exactly its timeout \(2000 ms\)",
        ),
        (
            StagePlan(script=(Step(Act.RAISES, 1, RateLimited("slow down")),)),
            r"stage 'fetch': the oracle does not model RateLimited",
        ),
    ],
)
def test_plans_the_oracle_cannot_predict_are_refused(
    stage: StagePlan, message: str
) -> None:
    """A wait of exactly a timeout (either outcome is legal) and RateLimited are refused."""
    with pytest.raises(ValueError, match=message):
        expect(pipeline, FaultPlan({"fetch": stage}))


def test_unpredicted_details_are_not_compared() -> None:
    """UNPREDICTED marks what the oracle leaves open (a cancelled stage's output)."""
    alternative = Alternative(StageStatus.CANCELLED, (0, 0), F(0))
    assert alternative.output is UNPREDICTED
    assert repr(UNPREDICTED) == "UNPREDICTED"


def test_the_oracle_imports_no_hypothesis_and_the_strategies_do() -> None:
    """hypothesis is imported by actors.testing.strategies alone."""
    code = (
        "import sys, actors, actors.testing, actors.testing.oracle\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'hypothesis'))\n"
        "import actors.testing.strategies\n"
        "print('hypothesis' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout == "[]\nTrue\n"


def test_a_stream_timing_out_as_it_yields_is_bracketed() -> None:
    """stream_timeout_ms in the very instant of an item: counted or not, never delivered."""
    definition = PipelineDefinition(
        name="race",
        stages=[
            StageDefinition("p", crawl, stream_timeout_ms=1_000),
            StageDefinition("c", summarize, inputs=["p"], pattern=FAN_OUT),
        ],
    )
    # Items at 0.25, 0.5, 0.75 and 1.0: the last in the instant of the deadline.
    plan = FaultPlan({"p": StagePlan(stream=(StreamStep(8, F(1, 4)),))})
    expectation = expect(definition, plan)
    (alternative,) = expectation.stages["p"].alternatives
    assert (alternative.status, alternative.finished_at) == (StageStatus.FAILED, F(1))
    assert alternative.error == (
        r"^StageTimeoutError: stage 'p': stream timed out after 1000 ms \(\d+ items\)$"
    )
    assert alternative.metadata is UNPREDICTED
    for _ in range(5):
        done = run(plan.apply(definition))
        expectation.assert_matches(done)
        assert done.result.outputs == {}  # fail-fast: c is cancelled at 1

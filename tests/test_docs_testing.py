"""The examples of docs/testing.md, as tests: keep the two in step."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineStatus,
    RetryConfig,
    StageDefinition,
    failure_result,
)
from actors.checkpoint import MemoryStore
from actors.testing import (
    assert_cancelled_promptly,
    assert_timeline,
    faults,
    hangs,
    raises,
    returns,
    returns_input,
    run,
    script,
    with_stages,
    yields,
)

# -- the user's pipeline (normally imported from the application) ----------


async def fetch(url: str, context: PipelineContext[Any]) -> list[str]:
    raise NotImplementedError("talks to the network; scripted in the tests")


async def summarize(page: str, context: PipelineContext[Any]) -> str:
    raise NotImplementedError("calls an LLM; scripted in the tests")


async def publish(summaries: list[str], context: PipelineContext[Any]) -> int:
    raise NotImplementedError("writes to a database; scripted in the tests")


pipeline = PipelineDefinition(
    name="digest",
    timeout_ms=30_000,
    stages=[
        StageDefinition(
            "fetch",
            fetch,
            retry_config=RetryConfig(
                max_attempts=4,
                initial_delay_ms=500,
                retry_on=[ConnectionError],
            ),
        ),
        StageDefinition(
            "summarize",
            summarize,
            inputs=["fetch"],
            pattern=ExecutionPattern.FAN_OUT,
            max_concurrency=2,
            timeout_ms=10_000,
        ),
        StageDefinition("publish", publish, inputs=["summarize"]),
    ],
)

# -- a supervisor-level cancellation test -----------------------------------


def test_a_hanging_summary_is_cancelled_by_the_pipeline_timeout() -> None:
    """The run's 30 s timeout stops a hanging item at once; publish never starts."""
    test = with_stages(
        pipeline,
        fetch=script(returns(["a", "b"], after=1)),
        summarize=script(hangs()),
        publish=script(returns(2)),
    )
    # Each item's 10 s timeout would fail the stage first: lift it for this test.
    test = test.model_copy(
        update={
            "stages": [
                s.model_copy(update={"timeout_ms": None}) if s.id == "summarize" else s
                for s in test.stages
            ]
        }
    )
    done = run(test, "https://example.org")
    assert done.result.status is PipelineStatus.TIMED_OUT
    assert done.cancelled_at == 30.0
    assert_cancelled_promptly(done, "summarize")
    assert [(c.item, c.ended, c.cancelled) for c in done.calls_of("summarize")] == [
        (0, 30.0, True),
        (1, 30.0, True),
    ]
    assert done.calls_of("publish") == []


def test_the_caller_cancelling_stops_everything_in_the_same_instant() -> None:
    """Cancelling the caller at 2.5 s leaves no stage running after 2.5 s."""
    test = with_stages(
        pipeline,
        fetch=script(returns(["a", "b", "c"], after=1)),
        summarize=script(returns_input(after=3)),
        publish=script(returns(3)),
    )
    done = run(test, faults=[faults.cancel_at(2.5)])
    assert done.result.status is PipelineStatus.CANCELLED
    assert max(c.ended or 0 for c in done.calls) == 2.5
    assert_cancelled_promptly(done, "summarize")


# -- a retry-schedule test --------------------------------------------------


def test_fetch_retries_connection_errors_on_schedule() -> None:
    """Attempts start 0.5 s, 1 s and 2 s after each failure; then it succeeds."""
    reset = ConnectionError("reset by peer")
    test = with_stages(
        pipeline,
        fetch=script(
            raises(reset, after=0.1),
            raises(reset, after=0.1),
            raises(reset, after=0.1),
            returns(["a"], after=0.1),
        ),
        summarize=script(returns_input(after=0.2)),
        publish=script(returns(1)),
    )
    done = run(test)
    assert done.result.success
    assert_timeline(
        done,
        """
        0.00 fetch started
        0.10 fetch failed attempt=1 ConnectionError: reset by peer
        0.60 fetch started attempt=2
        0.70 fetch failed attempt=2 ConnectionError: reset by peer
        1.70 fetch started attempt=3
        1.80 fetch failed attempt=3 ConnectionError: reset by peer
        3.80 fetch started attempt=4
        3.90 fetch succeeded
        """,
        mode="subsequence",
    )


def test_failure_result_defeats_retry_on() -> None:
    """A stage that returns failure_result(str(e)) is never retried on its type."""

    async def old_style(url: str, context: PipelineContext[Any]) -> Any:
        try:
            raise ConnectionError("reset by peer")
        except Exception as e:
            return failure_result(str(e))  # the exception type is lost here

    done = run(with_stages(pipeline, fetch=old_style))
    assert done.result.stage_results["fetch"].attempts == 1
    assert done.result.stage_results["fetch"].error == "reset by peer"


# -- a crash, then a resume --------------------------------------------------


def test_a_crash_mid_summaries_resumes_without_fetching_again() -> None:
    """Killed at 2 s: fetch was journaled, so the resume starts at summarize."""
    store = MemoryStore()
    test = with_stages(
        pipeline,
        fetch=script(returns(["a", "b"], after=1)),
        summarize=script(returns_input(after=2)),
        publish=script(returns(2)),
    )
    crashed = run(
        test, "https://example.org", store=store, faults=[faults.crash_at(2.0)]
    )
    assert crashed.crashed
    assert store.get_run(crashed.run_id).status == "running"  # as a kill leaves it
    assert [(c.item, c.ended) for c in crashed.calls_of("summarize")] == [
        (0, None),  # killed mid-call
        (1, None),
    ]

    resumed = run(test, "https://example.org", store=store, resume=crashed.run_id)
    assert resumed.calls_of("fetch") == []  # restored from the journal
    assert resumed.result.outputs["publish"] == 2
    assert resumed.result.total_duration_ms == 2000.0


# -- a streaming stage -------------------------------------------------------


def test_summaries_start_on_the_first_streamed_page() -> None:
    """fetch scripted as a stream: summarize starts at 0.5 s, two at a time."""
    test = with_stages(
        pipeline,
        fetch=script(yields(["a", "b", "c"], every=0.5)),
        summarize=script(returns_input(after=1)),
        publish=script(returns(3)),
    )
    done = run(test, "https://example.org")
    assert [(c.input, c.started) for c in done.calls_of("summarize")] == [
        ("a", 0.5),
        ("b", 1.0),
        ("c", 1.5),  # produced at 1.5, as a slot frees
    ]
    assert done.calls_of("publish")[0].started == 2.5


# -- a property test of the user's pipeline ---------------------------------


@settings(max_examples=50, deadline=None, database=None)
@given(
    pages=st.integers(0, 6),
    latency=st.integers(1, 16).map(lambda k: k / 8),
    # Off the 1/8 s grid of the latencies: no stage ends in the very instant
    # of the cancel (trio orders events of one instant arbitrarily).
    cancel=st.none() | st.integers(0, 80).map(lambda k: k / 8 + 1 / 16),
)
def test_the_run_never_outlives_its_cancellation(
    pages: int, latency: float, cancel: float | None
) -> None:
    """Whatever the page count, latency and cancel time: nothing runs past the cancel."""
    test = with_stages(
        pipeline,
        fetch=script(returns([f"p{i}" for i in range(pages)], after=0.5)),
        summarize=script(returns_input(after=latency)),
        publish=script(returns(pages, after=0.25)),
    )
    done = run(test, faults=[] if cancel is None else [faults.cancel_at(cancel)])
    end = done.result.total_duration_ms / 1000
    assert all(c.ended is not None and c.ended <= end for c in done.calls)
    if done.result.status is PipelineStatus.SUCCEEDED:
        assert done.result.outputs["publish"] == pages
        # Two at a time: ceil(pages / 2) rounds of summaries.
        assert end == 0.5 + -(-pages // 2) * latency + 0.25
    else:
        assert cancel is not None
        assert done.result.status is PipelineStatus.CANCELLED
        assert end == cancel
        assert all(c.cancelled for c in done.calls if c.ended == cancel)

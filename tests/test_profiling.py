"""Per-stage profiles, the timeline and the critical path, exact under autojump."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from stages import execute, failing, fan_out, sleeper

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineResult,
    RetryConfig,
    StageDefinition,
    StageProfile,
    StageStatus,
    TimelineEntry,
)


async def sleep_for(value: float, context: PipelineContext[Any]) -> float:
    """A fan-out item: sleep *value* seconds."""
    await trio.sleep(value)
    return value


def profile_of(result: PipelineResult, stage_id: str) -> StageProfile:
    """Return the profile of *stage_id* (every executed stage has one)."""
    profile = result.stage_results[stage_id].profile
    assert profile is not None
    return profile


async def test_retried_stage_profile_splits_running_and_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each attempt's running time and the backoff add up to the duration."""
    calls = 0

    async def flaky(value: Any, context: PipelineContext[Any]) -> Any:
        nonlocal calls
        calls += 1
        await trio.sleep(0.5)
        if calls < 3:
            raise ValueError("again")
        return value

    retry = RetryConfig(max_attempts=3, initial_delay_ms=100, backoff_multiplier=3)
    definition = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("first", sleeper(1)),
            StageDefinition("flaky", flaky, inputs=["first"], retry_config=retry),
        ],
    )
    result = await execute(definition)
    stage = result.stage_results["flaky"]
    assert profile_of(result, "flaky") == StageProfile(
        ready_at_ms=1000.0,
        started_at_ms=1000.0,
        finished_at_ms=2900.0,
        queued_ms=0.0,
        attempt_ms=(500.0, 500.0, 500.0),
        backoff_ms=400.0,
    )
    assert (stage.attempts, stage.duration_ms) == (3, 1900.0)
    assert profile_of(result, "flaky").running_ms == 1500.0


async def test_join_is_ready_when_its_last_input_arrives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage with two inputs is ready at the later input's finish time."""
    definition = PipelineDefinition(
        name="diamond",
        stages=[
            StageDefinition("a", sleeper(1)),
            StageDefinition("b", sleeper(2), inputs=["a"]),
            StageDefinition("c", sleeper(1), inputs=["a"]),
            StageDefinition("d", sleeper(0.25), inputs=["b", "c"]),
        ],
    )
    result = await execute(definition)
    ready = {s: profile_of(result, s).ready_at_ms for s in "abcd"}
    assert ready == {"a": 0.0, "b": 1000.0, "c": 1000.0, "d": 3000.0}
    assert profile_of(result, "d").finished_at_ms == 3250.0


async def test_timed_out_attempts_count_their_running_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An attempt cut by the stage timeout ran for exactly the timeout."""
    retry = RetryConfig(max_attempts=2, initial_delay_ms=100)
    definition = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("slow", sleeper(1), timeout_ms=300, retry_config=retry)
        ],
    )
    result = await execute(definition)
    stage = result.stage_results["slow"]
    assert stage.status is StageStatus.FAILED
    assert profile_of(result, "slow").attempt_ms == (300.0, 300.0)
    assert profile_of(result, "slow").backoff_ms == 100.0
    assert stage.duration_ms == 700.0


async def test_cancel_during_backoff_counts_only_the_time_spent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A run cancelled mid-backoff records the part of the delay that passed."""
    token = trio.Event()
    retry = RetryConfig(max_attempts=3, initial_delay_ms=1000)
    definition = PipelineDefinition(
        name="p",
        stages=[StageDefinition("f", failing(0.5), retry_config=retry)],
    )

    async def cancel_later() -> None:
        await trio.sleep(0.75)
        token.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancel_later)
        result = await execute(definition, None, PipelineContext(cancel_token=token))
    stage = result.stage_results["f"]
    assert stage.status is StageStatus.CANCELLED
    assert profile_of(result, "f").attempt_ms == (500.0,)
    assert profile_of(result, "f").backoff_ms == 250.0
    assert (stage.attempts, stage.duration_ms) == (1, 750.0)


async def test_cancelled_attempt_counts_its_running_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage cancelled mid-attempt records the attempt up to the cancellation."""
    definition = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("long", sleeper(10)),
            StageDefinition("bad", failing(2)),
        ],
    )
    result = await execute(definition)
    assert profile_of(result, "long").attempt_ms == (2000.0,)
    assert profile_of(result, "long").finished_at_ms == 2000.0


async def test_fan_out_profile_counts_items_slots_and_percentiles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Items wait for one of two slots; waits, running time and percentiles add up.

    Items take 1, 2, 3, 1, 1 s. Slot 1 runs items 0 then 2 (from 1 s); slot 2
    runs items 1, 3 (from 2 s) and 4 (from 3 s): waits 0+0+1+2+3 = 6 s.
    """
    definition = PipelineDefinition(
        name="fan",
        stages=[
            StageDefinition(
                "each", sleep_for, pattern=ExecutionPattern.FAN_OUT, max_concurrency=2
            )
        ],
    )
    result = await execute(definition, [1, 2, 3, 1, 1])
    stage = result.stage_results["each"]
    assert stage.output == [1, 2, 3, 1, 1]
    assert profile_of(result, "each") == StageProfile(
        ready_at_ms=0.0,
        started_at_ms=0.0,
        finished_at_ms=4000.0,
        queued_ms=6000.0,
        attempt_ms=(),
        backoff_ms=0.0,
        items=5,
        item_p50_ms=1000.0,
        item_p95_ms=3000.0,
        item_max_ms=3000.0,
        item_running_ms=8000.0,
    )
    assert profile_of(result, "each").running_ms == 8000.0
    assert (stage.attempts, stage.duration_ms) == (5, 4000.0)


async def test_fan_out_percentiles_use_the_nearest_rank(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Twenty items of 1..20 s: p50 is the 10th, p95 the 19th, max the 20th."""
    definition = fan_out(sleep_for)
    result = await execute(definition, list(range(20, 0, -1)))
    profile = profile_of(result, "each")
    assert (profile.item_p50_ms, profile.item_p95_ms, profile.item_max_ms) == (
        10000.0,
        19000.0,
        20000.0,
    )
    assert (profile.queued_ms, profile.items, profile.finished_at_ms) == (
        0.0,
        20,
        20000.0,
    )


async def test_fan_out_item_backoff_is_summed_over_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two items that each retry once after 200 ms add 400 ms of backoff."""
    failed: set[int] = set()

    async def once(value: int, context: PipelineContext[Any]) -> int:
        await trio.sleep(1)
        if value not in failed:
            failed.add(value)
            raise ValueError("first try")
        return value

    definition = fan_out(once, retry_delay_ms=200)
    result = await execute(definition, [1, 2])
    profile = profile_of(result, "each")
    assert (profile.backoff_ms, profile.item_running_ms) == (400.0, 4000.0)
    assert (profile.item_p50_ms, profile.item_max_ms) == (2200.0, 2200.0)
    assert result.stage_results["each"].attempts == 4


async def test_empty_fan_out_has_zero_items_and_no_percentiles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An empty list gives items=0, no percentiles, zero running time."""
    definition = fan_out(sleep_for)
    result = await execute(definition, [])
    profile = profile_of(result, "each")
    assert (profile.items, profile.item_p50_ms, profile.item_running_ms) == (
        0,
        None,
        0.0,
    )


async def test_timeline_orders_stages_by_start_unstarted_last(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The timeline lists each stage's ready, start and end, by start time."""
    definition = PipelineDefinition(
        name="p",
        fail_fast=False,
        stages=[
            StageDefinition("late", sleeper(1), inputs=["slow"]),
            StageDefinition("broken", failing(0.5), inputs=["slow"]),
            StageDefinition("never", sleeper(1), inputs=["broken"]),
            StageDefinition("slow", sleeper(2)),
        ],
    )
    result = await execute(definition)
    assert result.timeline() == [
        TimelineEntry(
            stage_id="slow",
            status=StageStatus.SUCCEEDED,
            ready_at_ms=0.0,
            started_at_ms=0.0,
            finished_at_ms=2000.0,
            attempts=1,
        ),
        TimelineEntry(
            stage_id="late",
            status=StageStatus.SUCCEEDED,
            ready_at_ms=2000.0,
            started_at_ms=2000.0,
            finished_at_ms=3000.0,
            attempts=1,
        ),
        TimelineEntry(
            stage_id="broken",
            status=StageStatus.FAILED,
            ready_at_ms=2000.0,
            started_at_ms=2000.0,
            finished_at_ms=2500.0,
            attempts=1,
        ),
        TimelineEntry(
            stage_id="never",
            status=StageStatus.UPSTREAM_FAILED,
            ready_at_ms=None,
            started_at_ms=None,
            finished_at_ms=2500.0,
            attempts=0,
        ),
    ]


async def test_critical_path_follows_the_latest_input(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The path walks back from the last stage through the input it waited for."""
    definition = PipelineDefinition(
        name="uneven",
        stages=[
            StageDefinition("a", sleeper(1)),
            StageDefinition("b", sleeper(3), inputs=["a"]),
            StageDefinition("c", sleeper(1), inputs=["a"]),
            StageDefinition("d", sleeper(1), inputs=["c"]),
            StageDefinition("e", sleeper(1), inputs=["b", "d"]),
            StageDefinition("side", sleeper(2)),
        ],
    )
    result = await execute(definition)
    assert result.critical_path() == ["a", "b", "e"]
    assert result.total_duration_ms == 5000.0


async def test_critical_path_never_ends_on_a_stage_that_did_not_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An upstream-failed stage finishing in the same instant does not end the path.

    Regression: ties went to the first declared stage, here one that never ran.
    """
    definition = PipelineDefinition(
        name="p",
        fail_fast=False,
        stages=[
            StageDefinition("b", sleeper(1), inputs=["a"]),
            StageDefinition("a", failing(1)),
            StageDefinition("x", sleeper(1)),
        ],
    )
    result = await execute(definition)
    assert result.stage_results["b"].status is StageStatus.UPSTREAM_FAILED
    assert result.critical_path() == ["a"]


async def test_critical_path_does_not_end_on_a_trailing_skip(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A skipped last stage takes no time; the path ends at what it waited for."""
    definition = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "maybe",
                sleeper(1),
                inputs=["a"],
                pattern=ExecutionPattern.CONDITIONAL,
                condition=lambda context: False,
            ),
            StageDefinition("a", sleeper(1)),
        ],
    )
    result = await execute(definition)
    assert result.critical_path() == ["a"]


async def test_critical_path_of_a_run_where_nothing_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With every stage skipped, the path still names the last one to finish."""
    definition = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "s",
                sleeper(1),
                pattern=ExecutionPattern.CONDITIONAL,
                condition=lambda context: False,
            )
        ],
    )
    result = await execute(definition)
    assert result.critical_path() == ["s"]

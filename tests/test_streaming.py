"""Streaming stages: async generators feeding fan-outs item by item, timed exactly."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from stages import Log, execute, sleeper

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineStatus,
    PipelineValidationError,
    RetryConfig,
    StageDefinition,
    StageStatus,
)

# Not yet re-exported by the facade (the lead adds it to actors/__init__.py).
from actors._exceptions import StreamReplayMismatch

FAN_OUT = ExecutionPattern.FAN_OUT


def pipeline(*stages: StageDefinition, **options: Any) -> PipelineDefinition:
    """Build a PipelineDefinition named 'stream'."""
    return PipelineDefinition(name="stream", stages=stages, **options)


def ticks(count: int, every: float, log: Log | None = None) -> Any:
    """A producer yielding 0, 1, ... count-1, the first at once, then every *every* s.

    With *log*, it records ``(time, "yield i")`` and ``(time, "closed")`` (its
    ``finally``).
    """

    async def produce(value: Any, ctx: PipelineContext[Any]) -> AsyncIterator[int]:
        try:
            for i in range(count):
                if i:
                    await trio.sleep(every)
                if log is not None:
                    log.append((trio.current_time(), f"yield {i}"))
                yield i
        finally:
            if log is not None:
                log.append((trio.current_time(), "closed"))

    return produce


def item_worker(seconds: float, log: Log, name: str = "c") -> Any:
    """A fan-out item function: logs its start and end, sleeps, returns 10 * item."""

    async def work(item: int, ctx: PipelineContext[Any]) -> int:
        log.append((trio.current_time(), f"{name} start {item}"))
        await trio.sleep(seconds)
        log.append((trio.current_time(), f"{name} end {item}"))
        return 10 * item

    return work


def times(log: Log, prefix: str) -> dict[str, float]:
    """Map each logged name starting with *prefix* to its time."""
    return {name.removeprefix(prefix): t for t, name in log if name.startswith(prefix)}


async def test_a_fan_out_starts_on_each_item_as_it_is_produced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Items yielded at t = 0..4, 0.5 s each: item i starts at i, the run ends at 4.5."""
    log: Log = []
    result = await execute(
        pipeline(
            StageDefinition("pages", ticks(5, 1)),
            StageDefinition(
                "summaries", item_worker(0.5, log), inputs=["pages"], pattern=FAN_OUT
            ),
        )
    )
    assert result.status is PipelineStatus.SUCCEEDED
    assert times(log, "c start ") == {str(i): float(i) for i in range(5)}
    assert result.total_duration_ms == 4500.0
    assert result.outputs == {
        "pages": [0, 1, 2, 3, 4],
        "summaries": [0, 10, 20, 30, 40],
    }
    profile = result.stage_results["summaries"].profile
    assert profile is not None
    assert (profile.first_item_ms, profile.items, profile.finished_at_ms) == (
        0.0,
        5,
        4500.0,
    )
    producer = result.stage_results["pages"].profile
    assert producer is not None
    assert (producer.first_item_ms, producer.items, producer.finished_at_ms) == (
        0.0,
        5,
        4000.0,
    )


async def test_barrier_gets_the_list_and_every_consumer_sees_every_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two fan-outs each take every item; a plain stage waits for the whole list."""
    log: Log = []
    seen: list[tuple[float, Any]] = []

    async def report(items: list[int], ctx: PipelineContext[Any]) -> int:
        seen.append((trio.current_time(), items))
        return len(items)

    result = await execute(
        pipeline(
            StageDefinition("p", ticks(3, 1)),
            StageDefinition(
                "a", item_worker(0.25, log, "a"), inputs=["p"], pattern=FAN_OUT
            ),
            StageDefinition(
                "b", item_worker(2, log, "b"), inputs=["p"], pattern=FAN_OUT
            ),
            StageDefinition("report", report, inputs=["p"]),
        )
    )
    assert result.outputs == {
        "p": [0, 1, 2],
        "a": [0, 10, 20],
        "b": [0, 10, 20],
        "report": 3,
    }
    assert times(log, "a start ") == {"0": 0, "1": 1, "2": 2}
    # b has no limit: one task per item, so it never holds the producer back.
    assert times(log, "b start ") == {"0": 0, "1": 1, "2": 2}
    assert seen == [(2.0, [0, 1, 2])]
    assert result.total_duration_ms == 4000.0


@pytest.mark.parametrize("buffer", [None, 0, 1, 3])
async def test_items_in_flight_never_exceed_the_bound(
    autojump_clock: trio.testing.MockClock, buffer: int | None
) -> None:
    """Produced but unfinished items stay <= max_concurrency + stream_buffer + 1, and reach it."""
    produced = finished = 0
    peak = 0

    def check() -> None:
        nonlocal peak
        peak = max(peak, produced - finished)

    async def fast(value: Any, ctx: PipelineContext[Any]) -> AsyncIterator[int]:
        nonlocal produced
        for i in range(20):
            produced += 1
            check()
            yield i

    async def slow(item: int, ctx: PipelineContext[Any]) -> int:
        nonlocal finished
        await trio.sleep(1)
        finished += 1
        check()
        return item

    result = await execute(
        pipeline(
            StageDefinition("p", fast, stream_buffer=buffer),
            StageDefinition(
                "c", slow, inputs=["p"], pattern=FAN_OUT, max_concurrency=2
            ),
        )
    )
    assert result.outputs["c"] == list(range(20))
    assert peak == 2 + (buffer or 0) + 1
    assert result.total_duration_ms == 10_000.0
    profile = result.stage_results["p"].profile
    assert profile is not None
    # Blocked on backpressure until the last item was taken (at 9 s), less
    # what the read-ahead absorbed: with 3 slots ahead it was done at 8 s.
    assert (profile.blocked_ms, profile.finished_at_ms) == (
        8000.0 if buffer == 3 else 9000.0,
        9000.0,
    )
    consumer = result.stage_results["c"].profile
    assert consumer is not None
    assert consumer.starved_ms == 0.0  # the consumer was never short of items


async def test_starved_ms_sums_the_free_slots_waiting_for_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two slots, an item every 1 s taking 0.5 s: the slots wait 6 s in all."""
    log: Log = []
    result = await execute(
        pipeline(
            StageDefinition("p", ticks(5, 1)),
            StageDefinition(
                "c",
                item_worker(0.5, log),
                inputs=["p"],
                pattern=FAN_OUT,
                max_concurrency=2,
            ),
        )
    )
    assert times(log, "c start ") == {str(i): float(i) for i in range(5)}
    consumer = result.stage_results["c"].profile
    assert consumer is not None
    # The slots take turns (trio wakes waiting receivers in order) and wait
    # 0-1, 0.5-2, 1.5-3, 2.5-4, then 3.5-4 for the end of the stream.
    assert (consumer.starved_ms, consumer.finished_at_ms) == (6000.0, 4500.0)


async def test_a_chain_of_fan_outs_runs_depth_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each item flows on to the second fan-out as soon as the first finishes it."""
    log: Log = []
    result = await execute(
        pipeline(
            StageDefinition("p", ticks(3, 1)),
            StageDefinition(
                "a",
                item_worker(0.5, log, "a"),
                inputs=["p"],
                pattern=FAN_OUT,
                max_concurrency=1,
            ),
            StageDefinition(
                "b",
                item_worker(0.25, log, "b"),
                inputs=["a"],
                pattern=FAN_OUT,
                max_concurrency=1,
            ),
        )
    )
    assert times(log, "b start ") == {"0": 0.5, "10": 1.5, "20": 2.5}
    assert result.outputs["b"] == [0, 100, 200]
    assert result.total_duration_ms == 2750.0


async def test_a_failing_consumer_cancels_the_producer_under_fail_fast(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An item failing for good fails the consumer; the producer is cancelled, its finally runs."""
    log: Log = []

    async def picky(item: int, ctx: PipelineContext[Any]) -> int:
        await trio.sleep(0.5)
        if item == 2:
            raise ValueError("two")
        return item

    result = await execute(
        pipeline(
            StageDefinition("p", ticks(10, 1, log)),
            StageDefinition("c", picky, inputs=["p"], pattern=FAN_OUT),
        )
    )
    assert result.status is PipelineStatus.FAILED
    assert result.stage_results["c"].error == "item 2: ValueError: two"
    assert result.stage_results["p"].status is StageStatus.CANCELLED
    assert log[-1] == (2.5, "closed")
    assert result.total_duration_ms == 2500.0


async def test_a_non_critical_consumer_never_stops_the_producer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A failed non-critical consumer drops out; the producer and the others go on."""
    log: Log = []

    async def picky(item: int, ctx: PipelineContext[Any]) -> int:
        raise ValueError("no")

    result = await execute(
        pipeline(
            StageDefinition("p", ticks(4, 1, log)),
            StageDefinition(
                "c",
                picky,
                inputs=["p"],
                pattern=FAN_OUT,
                critical=False,
                max_concurrency=1,
            ),
            StageDefinition(
                "d", item_worker(0.5, log, "d"), inputs=["p"], pattern=FAN_OUT
            ),
        )
    )
    assert result.status is PipelineStatus.SUCCEEDED
    assert result.stage_results["c"].status is StageStatus.FAILED
    assert result.outputs["d"] == [0, 10, 20, 30]
    assert result.total_duration_ms == 3500.0


async def test_workers_blocked_on_a_downstream_fan_out_that_stops_go_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two workers waiting to hand items to a stopped fan-out both drop it, and go on.

    Found by the chaos suite's oracle: the second worker used to raise
    ValueError (the consumer was already dropped), crashing the run.
    """
    log: Log = []

    async def stops(item: int, ctx: PipelineContext[Any]) -> int:
        await trio.sleep(2)
        raise ValueError("d stops")

    result = await execute(
        pipeline(
            StageDefinition("p", ticks(4, 0.25)),
            StageDefinition(
                "c",
                item_worker(1, log),
                inputs=["p"],
                pattern=FAN_OUT,
                max_concurrency=2,
            ),
            StageDefinition(
                "d",
                stops,
                inputs=["c"],
                pattern=FAN_OUT,
                max_concurrency=1,
                critical=False,
            ),
        )
    )
    # d takes item 0 at 1 and fails at 3; meanwhile c's workers finished
    # items 1 (at 1.25) and 2 (at 2) and wait on d until then.
    assert result.stage_results["d"].error == "item 0: ValueError: d stops"
    assert result.status is PipelineStatus.SUCCEEDED
    assert result.outputs == {"p": [0, 1, 2, 3], "c": [0, 10, 20, 30]}
    assert times(log, "c start ") == {"0": 0, "1": 0.25, "2": 1, "3": 3}
    assert result.total_duration_ms == 4000.0


@pytest.mark.parametrize("fail_fast", [True, False])
async def test_a_failing_producer(
    autojump_clock: trio.testing.MockClock, fail_fast: bool
) -> None:
    """The producer fails with its items so far; consumers are cancelled, or end upstream_failed."""
    log: Log = []

    async def broken(value: Any, ctx: PipelineContext[Any]) -> AsyncIterator[int]:
        yield 0
        await trio.sleep(1)
        yield 1
        await trio.sleep(1)
        raise RuntimeError("source gone")

    result = await execute(
        pipeline(
            StageDefinition("p", broken),
            StageDefinition("c", item_worker(1.5, log), inputs=["p"], pattern=FAN_OUT),
            fail_fast=fail_fast,
        )
    )
    producer = result.stage_results["p"]
    assert producer.status is StageStatus.FAILED
    assert producer.error == "RuntimeError: source gone"
    assert producer.metadata == {"items": [0, 1]}
    consumer = result.stage_results["c"]
    if fail_fast:
        assert consumer.status is StageStatus.CANCELLED
        assert result.total_duration_ms == 2000.0
    else:
        # It finishes the items already delivered (item 1 ends at 2.5).
        assert consumer.status is StageStatus.UPSTREAM_FAILED
        assert consumer.metadata == {"partial": [0, 10]}
        assert result.total_duration_ms == 2500.0


async def test_timeout_bounds_each_next_item_and_the_whole_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """timeout_ms bounds the wait for each item; stream_timeout_ms the whole stream."""
    log: Log = []
    result = await execute(
        pipeline(StageDefinition("p", ticks(5, 2, log), timeout_ms=1500)),
    )
    stage = result.stage_results["p"]
    assert (
        stage.error
        == "StageTimeoutError: stage 'p' timed out after 1500 ms waiting for item 1"
    )
    assert stage.metadata == {"items": [0]}
    assert result.total_duration_ms == 1500.0
    assert log[-1] == (1.5, "closed")

    log.clear()
    start = trio.current_time()  # 1.5: the clock runs on from the first run
    result = await execute(
        pipeline(StageDefinition("p", ticks(5, 1, log), stream_timeout_ms=2500)),
    )
    stage = result.stage_results["p"]
    assert (
        stage.error
        == "StageTimeoutError: stage 'p': stream timed out after 2500 ms (3 items)"
    )
    assert stage.metadata == {"items": [0, 1, 2]}
    assert result.total_duration_ms == 2500.0
    assert log[-1] == (start + 2.5, "closed")


async def test_collect_false_keeps_only_the_count(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """collect=False: no list in the result, the count in the profile."""
    log: Log = []
    result = await execute(
        pipeline(
            StageDefinition("p", ticks(4, 1), collect=False),
            StageDefinition(
                "c", item_worker(0.5, log), inputs=["p"], pattern=FAN_OUT, collect=False
            ),
        )
    )
    assert result.outputs == {"p": None, "c": None}
    profile = result.stage_results["p"].profile
    assert profile is not None
    assert profile.items == 4
    assert times(log, "c end ") == {"0": 0.5, "1": 1.5, "2": 2.5, "3": 3.5}


async def test_collected_consumer_failures_never_stop_the_producer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A 'collect' consumer keeps going past failed items, with None in their place."""

    async def picky(item: int, ctx: PipelineContext[Any]) -> int:
        await trio.sleep(0.5)
        if item % 2:
            raise ValueError(f"odd {item}")
        return item

    result = await execute(
        pipeline(
            StageDefinition("p", ticks(4, 1)),
            StageDefinition(
                "c", picky, inputs=["p"], pattern=FAN_OUT, item_failures="collect"
            ),
        )
    )
    stage = result.stage_results["c"]
    assert stage.status is StageStatus.SUCCEEDED
    assert stage.output == [0, None, 2, None]
    assert stage.item_errors == {1: "ValueError: odd 1", 3: "ValueError: odd 3"}
    assert result.total_duration_ms == 3500.0


async def test_an_object_with_a_stream_method_streams(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage object whose stream() is an async generator is a streaming stage."""

    class Source:
        async def stream(
            self, value: int, ctx: PipelineContext[Any]
        ) -> AsyncIterator[int]:
            for i in range(value):
                await trio.sleep(1)
                yield i

    log: Log = []
    result = await execute(
        pipeline(
            StageDefinition("p", Source()),
            StageDefinition("c", item_worker(0.5, log), inputs=["p"], pattern=FAN_OUT),
        ),
        3,
    )
    assert result.outputs == {"p": [0, 1, 2], "c": [0, 10, 20]}
    assert times(log, "c start ") == {"0": 1, "1": 2, "2": 3}


async def test_an_empty_stream(autojump_clock: trio.testing.MockClock) -> None:
    """A stream that yields nothing: the fan-out succeeds with [] when it ends."""
    log: Log = []
    result = await execute(
        pipeline(
            StageDefinition("p", ticks(0, 1)),
            StageDefinition("c", item_worker(0.5, log), inputs=["p"], pattern=FAN_OUT),
        )
    )
    assert result.outputs == {"p": [], "c": []}
    assert log == []


def flaky_source(cursors: list[int], *, resumable: bool, second: int = 1) -> Any:
    """Yields 0..4, one a second; the first attempt raises instead of yielding 3.

    Records ``ctx.stream_cursor`` per attempt. A *resumable* source starts at
    the cursor; the other starts over, its second attempt yielding *second*
    in place of 1.
    """

    async def source(value: Any, ctx: PipelineContext[Any]) -> AsyncIterator[int]:
        cursors.append(ctx.stream_cursor)
        attempt = len(cursors)
        for i in range(ctx.stream_cursor if resumable else 0, 5):
            await trio.sleep(1)
            if attempt == 1 and i == 3:
                raise ConnectionError("lost")
            yield second if i == 1 and attempt > 1 else i

    return source


RETRY = RetryConfig(max_attempts=3, initial_delay_ms=500)


async def test_a_retry_starts_over_and_discards_what_was_delivered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Not resumable: the retry re-yields 0..2 (discarded), then 3 and 4 flow on."""
    log: Log = []
    cursors: list[int] = []
    result = await execute(
        pipeline(
            StageDefinition(
                "p", flaky_source(cursors, resumable=False), retry_config=RETRY
            ),
            StageDefinition("c", item_worker(0.25, log), inputs=["p"], pattern=FAN_OUT),
        )
    )
    assert result.outputs == {"p": [0, 1, 2, 3, 4], "c": [0, 10, 20, 30, 40]}
    assert cursors == [0, 3]
    # Attempt 1 yields at 1, 2, 3 and fails at 4; attempt 2 starts at 4.5.
    assert times(log, "c start ") == {"0": 1, "1": 2, "2": 3, "3": 8.5, "4": 9.5}
    stage = result.stage_results["p"]
    assert stage.attempts == 2
    assert stage.profile is not None
    assert stage.profile.attempt_ms == (4000.0, 5000.0)
    assert stage.profile.backoff_ms == 500.0
    assert result.total_duration_ms == 9750.0


async def test_a_resumable_retry_starts_at_the_cursor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Resumable: the retry starts at item 3 itself."""
    log: Log = []
    cursors: list[int] = []
    result = await execute(
        pipeline(
            StageDefinition(
                "p",
                flaky_source(cursors, resumable=True),
                retry_config=RETRY,
                resumable=True,
            ),
            StageDefinition("c", item_worker(0.25, log), inputs=["p"], pattern=FAN_OUT),
        )
    )
    assert result.outputs == {"p": [0, 1, 2, 3, 4], "c": [0, 10, 20, 30, 40]}
    assert cursors == [0, 3]
    assert times(log, "c start ") == {"0": 1, "1": 2, "2": 3, "3": 5.5, "4": 6.5}
    assert result.total_duration_ms == 6750.0


async def test_a_replay_that_differs_fails_with_stream_replay_mismatch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """verify_replay: a re-yielded item unlike the delivered one fails, unretried."""
    log: Log = []
    cursors: list[int] = []
    result = await execute(
        pipeline(
            StageDefinition(
                "p",
                flaky_source(cursors, resumable=False, second=99),
                retry_config=RETRY,
                verify_replay=True,
            ),
            StageDefinition("c", item_worker(0.25, log), inputs=["p"], pattern=FAN_OUT),
        )
    )
    stage = result.stage_results["p"]
    assert stage.status is StageStatus.FAILED
    assert stage.error == (
        "StreamReplayMismatch: stage 'p': item 1 differs from the one delivered "
        "before this attempt (verify_replay)"
    )
    assert isinstance(stage.exception, StreamReplayMismatch)
    assert stage.attempts == 2
    assert stage.metadata == {"items": [0, 1, 2]}
    assert cursors == [0, 3]
    assert result.total_duration_ms == 6500.0


async def test_the_same_replay_passes_verification(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """verify_replay: an identical replay goes on as without it."""
    log: Log = []
    cursors: list[int] = []
    result = await execute(
        pipeline(
            StageDefinition(
                "p",
                flaky_source(cursors, resumable=False),
                retry_config=RETRY,
                verify_replay=True,
            ),
            StageDefinition("c", item_worker(0.25, log), inputs=["p"], pattern=FAN_OUT),
        )
    )
    assert result.outputs["c"] == [0, 10, 20, 30, 40]
    assert result.total_duration_ms == 9750.0


async def _gen(value: Any, ctx: PipelineContext[Any]) -> AsyncIterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (
            [StageDefinition("x", sleeper(1), stream_buffer=2)],
            r"stage 'x': stream_buffer applies only to streaming stages .*",
        ),
        (
            [StageDefinition("x", _gen, stream_buffer=-1)],
            r"stage 'x': stream_buffer must be >= 0, got -1",
        ),
        (
            [StageDefinition("x", _gen, pattern=FAN_OUT)],
            r"stage 'x': a FAN_OUT's per-item function cannot be an async generator .*",
        ),
        (
            [StageDefinition("x", sleeper(1), stream_timeout_ms=5)],
            r"stage 'x': stream_timeout_ms applies only to streaming stages",
        ),
        (
            [StageDefinition("x", sleeper(1), collect=False)],
            r"stage 'x': collect=False applies only to streaming stages",
        ),
        (
            [
                StageDefinition("p", _gen, collect=False),
                StageDefinition("x", sleeper(1), inputs=["p"]),
            ],
            r"stage 'x' needs the whole list of stage 'p', which keeps only a count "
            r"\(collect=False\); consume it with a FAN_OUT, or collect it",
        ),
        (
            [StageDefinition("x", sleeper(1), resumable=True)],
            r"stage 'x': resumable applies only to streaming stages",
        ),
        (
            [StageDefinition("x", sleeper(1), verify_replay=True)],
            r"stage 'x': verify_replay applies only to streaming stages",
        ),
        (
            [StageDefinition("x", _gen, resumable=True, verify_replay=True)],
            r"stage 'x': verify_replay needs resumable=False "
            r"\(a resumable stage replays nothing\)",
        ),
        (
            [
                StageDefinition("p", _gen),
                StageDefinition(
                    "x",
                    sleeper(1),
                    inputs=["p"],
                    pattern=FAN_OUT,
                    condition=lambda ctx: True,
                ),
            ],
            r"stage 'x': a FAN_OUT fed by a stream cannot have a condition .*",
        ),
    ],
)
def test_bad_streaming_settings_are_refused(
    stages: list[StageDefinition], message: str
) -> None:
    """Stream-only settings on other stages, and unsupported shapes, are refused."""
    definition = pipeline(*stages)
    errors = definition.validate_pipeline()
    assert len(errors) == 1, errors
    assert re.fullmatch(message, errors[0]), errors
    with pytest.raises(PipelineValidationError):
        trio.run(execute, definition)


async def test_a_stream_retry_draws_its_jitter_from_the_executors_rng(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Streams retry on the same schedule as other stages: a seeded run repeats."""
    import random

    from actors import PipelineExecutor, RetryConfig

    retry = RetryConfig(max_attempts=2, initial_delay_ms=1000, jitter=0.5)
    expected_ms = retry.delay_ms(2, random.Random(7))
    failed_once: list[bool] = []

    async def pages(query: Any, ctx: Any) -> Any:
        if not failed_once:
            failed_once.append(True)
            raise ValueError("flaky source")
        yield 1

    pipeline = PipelineDefinition(
        name="p", stages=[StageDefinition("pages", pages, retry_config=retry)]
    )
    result = await PipelineExecutor(rng=random.Random(7)).execute(pipeline)
    assert result.success
    assert result.stage_results["pages"].profile.backoff_ms == round(expected_ms, 6)  # type: ignore[union-attr]
    assert expected_ms != 1000  # the jitter is really there

"""Live consumption: ``open_run``, item taps, progress taps and ``ctx.emit``, timed exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import (
    ExecutionPattern,
    LiveRun,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    PipelineStatus,
    Progress,
    ProgressTap,
    StageDefinition,
    StageStatus,
    TapItem,
)

FAN_OUT = ExecutionPattern.FAN_OUT
Seen = list[tuple[float, int, Any]]


def ticks(count: int, every: float, closed: list[float] | None = None) -> Any:
    """A producer yielding 0..count-1, the first at once, then every *every* s."""

    async def produce(value: Any, ctx: PipelineContext[Any]) -> AsyncIterator[int]:
        try:
            for i in range(count):
                if i:
                    await trio.sleep(every)
                yield i
        finally:
            if closed is not None:
                closed.append(trio.current_time())

    return produce


def work(seconds: float) -> Any:
    """A fan-out item function: sleeps *seconds*, returns 10 * item."""

    async def one(item: int, ctx: PipelineContext[Any]) -> int:
        await trio.sleep(seconds)
        return 10 * item

    return one


def crawler(count: int = 5, every: float = 1, each: float = 0.5, **options: Any) -> Any:
    """pages (a stream) -> summaries (a fan-out, 2 at a time)."""
    return PipelineDefinition(
        name="crawl",
        stages=[
            StageDefinition("pages", ticks(count, every)),
            StageDefinition(
                "summaries",
                work(each),
                inputs=["pages"],
                pattern=FAN_OUT,
                max_concurrency=2,
                **options,
            ),
        ],
    )


async def read(run: LiveRun, stage: str, seen: Seen, pause: float = 0) -> None:
    async with run.tap(stage) as items:
        async for item in items:
            assert isinstance(item, TapItem)
            assert item.stage == stage
            seen.append((trio.current_time(), item.index, item.output))
            if pause:
                await trio.sleep(pause)


async def test_a_tap_gets_every_item_as_it_finishes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Items yielded at t = 0..4, 0.5 s each: the tap sees item i at i + 0.5."""
    seen: Seen = []
    async with PipelineExecutor().open_run(crawler()) as run:
        assert not run.done
        await read(run, "summaries", seen)
    assert trio.current_time() == 4.5
    assert seen == [(i + 0.5, i, 10 * i) for i in range(5)]
    assert run.done
    assert run.result.success
    assert run.result.outputs["summaries"] == [0, 10, 20, 30, 40]
    assert run.result.run_id == run.run_id


async def test_a_tap_of_the_stream_itself_and_of_a_plain_stage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stream's tap sees each item as it is yielded; a plain stage's, its output as item 0."""

    async def total(items: list[int], ctx: PipelineContext[Any]) -> int:
        await trio.sleep(1)
        return sum(items)

    definition = PipelineDefinition(
        name="sum",
        stages=[
            StageDefinition("pages", ticks(3, 1)),
            StageDefinition("total", total, inputs=["pages"]),
        ],
    )
    pages: Seen = []
    totals: Seen = []
    async with PipelineExecutor().open_run(definition) as run, trio.open_nursery() as n:
        n.start_soon(read, run, "pages", pages)
        n.start_soon(read, run, "total", totals)
    assert pages == [(0, 0, 0), (1, 1, 1), (2, 2, 2)]
    assert totals == [(3, 0, 3)]
    assert trio.current_time() == 3


async def test_a_slow_tap_backpressures_the_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A reader taking 2 s per item holds each finished item's worker: lossless."""
    seen: Seen = []
    async with PipelineExecutor().open_run(
        crawler(count=3, every=0.5, each=0.5)
    ) as run:
        await read(run, "summaries", seen, pause=2)
    # Item 0 is taken at 0.5 and read until 2.5; item 1 (done at 1.0) waits
    # for the reader and is taken at 2.5; item 2 (done at 1.5) at 4.5.
    assert seen == [(0.5, 0, 0), (2.5, 1, 10), (4.5, 2, 20)]
    assert trio.current_time() == 6.5
    assert run.result.outputs["summaries"] == [0, 10, 20]


async def test_a_tap_opened_late_replays_what_was_produced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Opened at 2.2, the tap first gets items 0 and 1 (done at 0.5, 1.5), then the rest live."""
    seen: Seen = []
    async with PipelineExecutor().open_run(crawler()) as run:
        await trio.sleep(2.2)
        await read(run, "summaries", seen)
    assert seen == [(2.2, 0, 0), (2.2, 1, 10), (2.5, 2, 20), (3.5, 3, 30), (4.5, 4, 40)]
    # And once the run has ended, a tap replays everything and ends.
    after: Seen = []
    await read(run, "summaries", after)
    assert [(i, o) for _, i, o in after] == [(i, 10 * i) for i in range(5)]


async def test_without_collect_a_late_tap_sees_only_later_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``collect=False`` keeps nothing to replay: a tap opened at 2.2 starts with item 2."""
    seen: Seen = []
    async with PipelineExecutor().open_run(crawler(collect=False)) as run:
        await trio.sleep(2.2)
        await read(run, "summaries", seen)
    assert seen == [(2.5, 2, 20), (3.5, 3, 30), (4.5, 4, 40)]
    assert run.result.outputs["summaries"] is None


async def test_closing_a_tap_detaches_it_and_never_cancels_the_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: Seen = []
    async with PipelineExecutor().open_run(crawler()) as run:
        async with run.tap("summaries") as items:
            async for item in items:
                seen.append((trio.current_time(), item.index, item.output))
                if item.index == 1:
                    break
        assert trio.current_time() == 1.5
    assert [i for _, i, _ in seen] == [0, 1]
    assert trio.current_time() == 4.5
    assert run.result.success


async def test_a_collecting_fan_out_taps_its_failed_items_with_their_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def half(item: int, ctx: PipelineContext[Any]) -> int:
        await trio.sleep(1)
        if item % 2:
            raise ValueError(f"odd {item}")
        return item

    definition = PipelineDefinition(
        name="collect",
        stages=[
            StageDefinition(
                "each",
                half,
                pattern=FAN_OUT,
                item_failures="collect",
                max_concurrency=1,
            )
        ],
    )
    got: list[tuple[float, TapItem]] = []
    executor = PipelineExecutor()
    async with (
        executor.open_run(definition, [0, 1, 2]) as run,
        run.tap("each") as items,
    ):
        got.extend([(trio.current_time(), item) async for item in items])
    assert got == [
        (1, TapItem(stage="each", index=0, output=0)),
        (2, TapItem(stage="each", index=1, output=None, error="ValueError: odd 1")),
        (3, TapItem(stage="each", index=2, output=2)),
    ]


async def test_a_tap_of_a_stage_that_never_runs_ends_empty(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def boom(value: Any, ctx: PipelineContext[Any]) -> None:
        await trio.sleep(1)
        raise RuntimeError("boom")

    definition = PipelineDefinition(
        name="broken",
        stages=[
            StageDefinition("a", boom),
            StageDefinition("b", work(1), inputs=["a"]),
        ],
    )
    seen: Seen = []
    async with PipelineExecutor().open_run(definition) as run:
        await read(run, "b", seen)
        assert trio.current_time() == 1
    assert seen == []
    assert run.result.status is PipelineStatus.FAILED


async def test_tapping_an_unknown_stage_names_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with PipelineExecutor().open_run(crawler()) as run:
        with pytest.raises(ValueError, match=r"no stage 'summary' to tap.*'summaries'"):
            async with run.tap("summary"):
                pass  # pragma: no cover
        with pytest.raises(ValueError, match="buffer >= 1"):
            async with run.progress(buffer=0):
                pass  # pragma: no cover
    assert run.result.success


async def test_an_exception_in_the_block_cancels_the_run_and_leaves_as_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    closed: list[float] = []
    definition = PipelineDefinition(
        name="crawl",
        stages=[
            StageDefinition("pages", ticks(5, 1, closed)),
            StageDefinition(
                "summaries",
                work(0.5),
                inputs=["pages"],
                pattern=FAN_OUT,
            ),
        ],
    )
    runs: list[LiveRun] = []

    async def block() -> None:
        async with PipelineExecutor().open_run(definition) as run:
            runs.append(run)
            await trio.sleep(1.2)
            raise KeyError("the UI went away")

    with pytest.raises(KeyError) as caught:
        await block()
    (run,) = runs
    assert type(caught.value) is KeyError  # not an exception group
    assert closed == [1.2]  # the producer's finally ran, at once
    assert trio.current_time() == 1.2
    result = run.result
    assert result.status is PipelineStatus.CANCELLED
    pages = result.stage_results["pages"]
    assert pages.status is StageStatus.CANCELLED
    assert pages.error == "cancelled: the open_run block raised KeyError"


async def test_run_cancel_ends_the_run_with_a_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with PipelineExecutor().open_run(crawler()) as run:
        await trio.sleep(2.2)
        run.cancel("enough")
        with pytest.raises(RuntimeError, match="has not ended yet"):
            _ = run.result
        result = await run.wait()
        assert trio.current_time() == 2.2
    assert result is run.result
    assert result.status is PipelineStatus.CANCELLED
    assert result.stage_results["summaries"].error == "cancelled: enough"


async def test_the_callers_cancellation_propagates_as_one_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    closed: list[float] = []
    definition = PipelineDefinition(
        name="crawl",
        stages=[StageDefinition("pages", ticks(9, 1, closed))],
    )
    with trio.move_on_after(2.5) as scope:
        async with PipelineExecutor().open_run(definition) as run:
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert closed == [2.5]
    assert run.done
    with pytest.raises(RuntimeError, match="ended without a result"):
        _ = run.result


async def test_an_interrupt_from_a_stage_leaves_open_run_bare(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def interrupt(value: Any, ctx: PipelineContext[Any]) -> None:
        await trio.sleep(1)
        raise KeyboardInterrupt

    definition = PipelineDefinition(name="ki", stages=[StageDefinition("a", interrupt)])
    with pytest.raises(KeyboardInterrupt) as caught:
        async with PipelineExecutor().open_run(definition):
            await trio.sleep_forever()
    assert type(caught.value) is KeyboardInterrupt
    assert trio.current_time() == 1


def talker(tokens: int) -> Any:
    """A stage emitting *tokens* progress values, one per 0.1 s, returning the count."""

    async def talk(value: Any, ctx: PipelineContext[Any]) -> int:
        for i in range(tokens):
            await trio.sleep(0.1)
            ctx.emit(f"token {i}")
        return tokens

    return talk


async def test_progress_reaches_a_tap_with_stage_item_and_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def per_item(item: int, ctx: PipelineContext[Any]) -> int:
        await trio.sleep(item)
        ctx.emit(item * 100)
        return item

    async def numbers(value: Any, ctx: PipelineContext[Any]) -> list[int]:
        return [1, 2]

    definition = PipelineDefinition(
        name="talk",
        stages=[
            StageDefinition("llm", talker(3)),
            StageDefinition("numbers", numbers),
            StageDefinition(
                "each",
                per_item,
                inputs=["numbers"],
                pattern=FAN_OUT,
            ),
        ],
    )
    every: list[Progress] = []
    llm_only: list[Progress] = []

    async def only(mine: ProgressTap) -> None:
        llm_only.extend([p async for p in mine])
        # The stage's tap ends when the stage does.
        assert trio.current_time() == pytest.approx(0.3)

    async with (
        PipelineExecutor().open_run(definition) as run,
        run.progress() as values,
        run.progress(stage="llm") as mine,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(only, mine)
        every.extend([p async for p in values])
    assert [(p.stage, p.item, p.value) for p in llm_only] == [
        ("llm", None, "token 0"),
        ("llm", None, "token 1"),
        ("llm", None, "token 2"),
    ]
    assert [p.at_ms for p in llm_only] == pytest.approx([100, 200, 300])
    assert sorted((p.at_ms, p.stage, p.item, p.value) for p in every) == sorted(
        [(p.at_ms, "llm", None, p.value) for p in llm_only]
        + [(1000.0, "each", 0, 100), (2000.0, "each", 1, 200)]
    )
    assert values.dropped == mine.dropped == 0


async def test_a_stalled_progress_reader_drops_the_oldest_and_never_slows_the_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    definition = PipelineDefinition(
        name="talk", stages=[StageDefinition("llm", talker(50))]
    )
    plain = await PipelineExecutor().execute(definition)
    start = trio.current_time()
    kept: list[Any] = []
    async with (
        PipelineExecutor().open_run(definition) as run,
        run.progress(stage="llm", buffer=4) as values,
    ):
        await run.wait()  # the reader stalls for the whole run
        assert values.dropped == 46
        kept.extend([p.value async for p in values])
    assert trio.current_time() - start == pytest.approx(5.0)
    assert (
        run.result.total_duration_ms == plain.total_duration_ms == pytest.approx(5000)
    )
    assert kept == [f"token {i}" for i in range(46, 50)]


async def test_emit_from_a_worker_thread_reaches_the_tap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def blocking(ctx: PipelineContext[Any]) -> str:
        for i in range(3):
            ctx.emit(i)
        return "done"

    async def stage(value: Any, ctx: PipelineContext[Any]) -> str:
        return await trio.to_thread.run_sync(blocking, ctx)

    definition = PipelineDefinition(
        name="thread", stages=[StageDefinition("work", stage)]
    )
    async with (
        PipelineExecutor().open_run(definition) as run,
        run.progress() as values,
    ):
        got = [(p.stage, p.value) async for p in values]
    assert got == [("work", 0), ("work", 1), ("work", 2)]
    assert run.result.outputs == {"work": "done"}


async def test_emit_outside_open_run_does_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    definition = PipelineDefinition(
        name="talk", stages=[StageDefinition("llm", talker(3))]
    )
    result = await PipelineExecutor().execute(definition)
    assert result.outputs == {"llm": 3}
    PipelineContext().emit("outside any stage")


async def test_open_run_refuses_what_execute_refuses_before_anything_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from actors import PipelineValidationError

    ran: list[str] = []

    async def stage(value: Any, ctx: PipelineContext[Any]) -> None:
        ran.append("ran")

    definition = PipelineDefinition(
        name="quota",
        stages=[StageDefinition("a", stage, rate_limit="nope")],
    )
    with pytest.raises(PipelineValidationError, match="nope"):
        async with PipelineExecutor().open_run(definition):
            pass  # pragma: no cover
    assert ran == []


async def test_execute_is_open_run_plus_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    executed = await PipelineExecutor().execute(crawler())
    async with PipelineExecutor().open_run(crawler()) as run:
        pass
    opened: PipelineResult = run.result
    assert opened.outputs == executed.outputs
    assert opened.status is executed.status is PipelineStatus.SUCCEEDED
    assert opened.total_duration_ms == executed.total_duration_ms == 4500


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(0, 8),
    every=st.sampled_from([0.25, 0.5, 1.0]),
    each=st.sampled_from([0.25, 0.75, 1.5]),
    limit=st.integers(1, 3),
    buffer=st.integers(0, 2),
    pause=st.sampled_from([0.0, 0.1]),
    late=st.sampled_from([0.0, 1.3]),
)
def test_taps_see_every_item_once_and_fast_readers_change_nothing(
    *,
    count: int,
    every: float,
    each: float,
    limit: int,
    buffer: int,
    pause: float,
    late: float,
) -> None:
    """Random stream shapes: taps on both stages are complete, and without reader
    pauses the run's result and makespan equal ``execute``'s."""
    definition = PipelineDefinition(
        name="crawl",
        stages=[
            StageDefinition("pages", ticks(count, every), stream_buffer=buffer or None),
            StageDefinition(
                "summaries",
                work(each),
                inputs=["pages"],
                pattern=FAN_OUT,
                max_concurrency=limit,
            ),
        ],
    )

    async def both() -> tuple[PipelineResult, PipelineResult, dict[str, Seen]]:
        executed = await PipelineExecutor(log_events=False).execute(definition)
        seen: dict[str, Seen] = {"pages": [], "summaries": []}
        async with (
            PipelineExecutor(log_events=False).open_run(definition) as run,
            trio.open_nursery() as nursery,
        ):
            await trio.sleep(late)
            for stage, items in seen.items():
                nursery.start_soon(read, run, stage, items, pause)
        return executed, run.result, seen

    executed, opened, seen = trio.run(
        both, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    assert opened.outputs == executed.outputs
    for stage, items in seen.items():
        indices = [index for _, index, _ in items]
        assert sorted(indices) == list(range(count)), stage
        assert {i: o for _, i, o in items} == dict(enumerate(opened.outputs[stage]))
    assert [i for _, i, _ in seen["pages"]] == list(range(count))
    if not pause:
        assert opened.total_duration_ms == executed.total_duration_ms

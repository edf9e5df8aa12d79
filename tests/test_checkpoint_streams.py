"""Durable streams: each produced item journaled; a resume feeds them first, then the cursor."""

from __future__ import annotations

import collections
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import trio
import trio.testing

from actors import (
    ExecutionPattern,
    Observer,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    StageDefinition,
    StageStatus,
)
from actors._checkpoint._codec import declared_item_type
from actors._checkpoint._keys import code_fingerprint
from actors._cli._runs import main_runs
from actors._events import CheckpointCorrupt, CheckpointSkipped, StageRestored
from actors._exceptions import StreamReplayMismatch
from actors.checkpoint import (
    Entry,
    FileStore,
    JournalContents,
    MemoryStore,
    SQLiteStore,
    Store,
    UnknownRunError,
)

FAN_OUT = ExecutionPattern.FAN_OUT
Log = list[tuple[float, str]]


class Events(Observer):
    """Collects the checkpoint events of a run."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def stage_restored(self, event: StageRestored) -> None:
        self.seen.append(event)

    def checkpoint_skipped(self, event: CheckpointSkipped) -> None:
        self.seen.append(event)

    def checkpoint_corrupt(self, event: CheckpointCorrupt) -> None:
        self.seen.append(event)


class Calls:
    """What the stages of one run saw: cursors, yields and consumer calls, with times."""

    def __init__(self) -> None:
        self.cursors: list[int] = []
        self.log: Log = []
        self.consumed: collections.Counter[int] = collections.Counter()


def source(
    calls: Calls,
    *,
    resumable: bool,
    count: int = 5,
    replace: dict[int, int] | None = None,
) -> Any:
    """Yields 0..count-1, the first at once, then one a second; counts each item.

    A *resumable* source starts at ``ctx.stream_cursor`` (its first item at
    once); the other starts over. *replace* yields other values at some
    positions (a source that changed).
    """
    changed = replace or {}

    async def produce(value: Any, ctx: PipelineContext[Any]) -> AsyncIterator[int]:
        start = ctx.stream_cursor if resumable else 0
        calls.cursors.append(ctx.stream_cursor)
        for i in range(start, count):
            if i > start:
                await trio.sleep(1)
            calls.log.append((trio.current_time(), f"yield {i}"))
            ctx.increment_metric("produced")
            yield changed.get(i, i)

    return produce


def worker(calls: Calls, seconds: float = 0.5) -> Any:
    """A fan-out item function: counts its calls, sleeps, returns 10 * item."""

    async def work(item: int, ctx: PipelineContext[Any]) -> int:
        calls.consumed[item] += 1
        calls.log.append((trio.current_time(), f"start {item}"))
        await trio.sleep(seconds)
        return 10 * item

    return work


async def report(items: list[int], ctx: PipelineContext[Any]) -> int:
    """A barrier consumer: the sum of every item."""
    return sum(items)


def streamed(
    calls: Calls,
    *,
    resumable: bool = False,
    verify_replay: bool = False,
    replace: dict[int, int] | None = None,
    timeout_ms: float | None = None,
    **producer: Any,
) -> PipelineDefinition:
    """p (a stream) -> c (FAN_OUT, one at a time, 0.5 s an item) and r (a barrier)."""
    return PipelineDefinition(
        name="streamed",
        stages=[
            StageDefinition(
                "p",
                source(calls, resumable=resumable, replace=replace),
                resumable=resumable,
                verify_replay=verify_replay,
                **producer,
            ),
            StageDefinition(
                "c", worker(calls), inputs=["p"], pattern=FAN_OUT, max_concurrency=1
            ),
            StageDefinition("r", report, inputs=["p"]),
        ],
        timeout_ms=timeout_ms,
    )


async def cancelled_at(
    executor: PipelineExecutor, pipeline: PipelineDefinition, at: float
) -> PipelineResult:
    """Run *pipeline* and cancel it through its cancel token at trio time *at*."""
    token = trio.Event()
    context: PipelineContext[Any] = PipelineContext(cancel_token=token)
    results: list[PipelineResult] = []

    async def run() -> None:
        results.append(await executor.execute(pipeline, None, context))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.sleep_until(at)
        token.set()
    return results[0]


async def first_run_cancelled_at_2_25(
    executor: PipelineExecutor, *, resumable: bool
) -> PipelineResult:
    """Items 0..2 produced, c finished 0 and 1, c's item 2 is cut at 2.25."""
    calls = Calls()
    first = await cancelled_at(executor, streamed(calls, resumable=resumable), 2.25)
    assert first.status == "cancelled"
    assert first.total_duration_ms == 2250.0
    assert calls.cursors == [0]
    assert calls.consumed == {0: 1, 1: 1, 2: 1}
    return first


def open_store(kind: str, path: Path) -> Store:
    """Return a MemoryStore, a FileStore in *path*, or a SQLiteStore in it."""
    if kind == "memory":
        return MemoryStore()
    if kind == "file":
        return FileStore(path)
    return SQLiteStore(path / "store.db")


@pytest.mark.parametrize("kind", ["memory", "file", "sqlite"])
async def test_a_resumable_stream_resumes_at_the_cursor_after_its_items_are_fed(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, kind: str
) -> None:
    """Restored 0..2 go first (c reruns only 2); the producer starts at cursor 3."""
    store = open_store(kind, tmp_path)
    executor = PipelineExecutor(store=store)
    begin = trio.current_time()
    first = await first_run_cancelled_at_2_25(executor, resumable=True)
    calls = Calls()
    events = Events()
    start = trio.current_time()
    assert start - begin == 2.25
    again = await executor.execute(
        streamed(calls, resumable=True), None, resume=first.run_id, observers=[events]
    )
    assert again.success
    assert again.outputs == {
        "p": [0, 1, 2, 3, 4],
        "c": [0, 10, 20, 30, 40],
        "r": 10,
    }
    assert calls.cursors == [3]
    assert calls.consumed == {2: 1, 3: 1, 4: 1}
    # Item 2 runs at once; 3 is yielded at once but waits for c's slot (0.5);
    # 4 comes a second after 3 was taken.
    assert sorted((t - start, what) for t, what in calls.log) == [
        (0.0, "start 2"),
        (0.0, "yield 3"),
        (0.5, "start 3"),
        (1.5, "start 4"),
        (1.5, "yield 4"),
    ]
    assert again.total_duration_ms == 2000.0
    # Three increments replayed with the restored items, two made again.
    assert again.metadata == {"produced": 5}
    p = again.stage_results["p"]
    assert (p.attempts, p.restored_from) == (1, None)
    assert p.profile is not None
    assert p.profile.items == 5
    assert again.stage_results["c"].restored_from is None
    assert events.seen == [
        StageRestored(
            run_id=again.run_id,
            pipeline="streamed",
            stage_id="p",
            restored_from=first.run_id,
            at_ms=0.0,
            items=3,
            total=None,
        ),
        StageRestored(
            run_id=again.run_id,
            pipeline="streamed",
            stage_id="c",
            restored_from=first.run_id,
            at_ms=2000.0,
            items=2,
            total=5,
        ),
    ]
    # Units: p's 3 items and c's 2 restored; p's 2 items, its end, c's 3, r ran.
    assert store.get_run(again.run_id).stats == {"restored": 5, "ran": 7}


@pytest.mark.parametrize("kind", ["memory", "file"])
async def test_a_non_resumable_stream_starts_over_and_discards_the_journaled_items(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, kind: str
) -> None:
    """Cursor 3: the re-yielded 0..2 are discarded; 3 and 4 flow on at t = 3 and 4."""
    store = open_store(kind, tmp_path)
    executor = PipelineExecutor(store=store)
    first = await first_run_cancelled_at_2_25(executor, resumable=False)
    calls = Calls()
    start = trio.current_time()
    again = await executor.execute(
        streamed(calls, verify_replay=True), None, resume=first.run_id
    )
    assert again.success
    assert again.outputs == {
        "p": [0, 1, 2, 3, 4],
        "c": [0, 10, 20, 30, 40],
        "r": 10,
    }
    assert calls.cursors == [3]
    assert calls.consumed == {2: 1, 3: 1, 4: 1}
    assert sorted((t - start, what) for t, what in calls.log) == [
        (0.0, "start 2"),
        (0.0, "yield 0"),
        (1.0, "yield 1"),
        (2.0, "yield 2"),
        (3.0, "start 3"),
        (3.0, "yield 3"),
        (4.0, "start 4"),
        (4.0, "yield 4"),
    ]
    assert again.total_duration_ms == 4500.0
    # The generator really ran all five again: 3 replayed + 5 made.
    assert again.metadata == {"produced": 8}


async def test_a_replay_that_differs_from_the_journal_fails_the_resumed_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """verify_replay on resume: re-yielded item 1 unlike the journaled one fails p at 1 s."""
    executor = PipelineExecutor(store=MemoryStore())
    first = await first_run_cancelled_at_2_25(executor, resumable=False)
    calls = Calls()
    again = await executor.execute(
        streamed(calls, verify_replay=True, replace={1: 99}), None, resume=first.run_id
    )
    p = again.stage_results["p"]
    assert p.status is StageStatus.FAILED
    assert p.error == (
        "StreamReplayMismatch: stage 'p': item 1 differs from the one delivered "
        "before this attempt (verify_replay)"
    )
    assert isinstance(p.exception, StreamReplayMismatch)
    assert p.metadata == {"items": [0, 1, 2]}
    assert calls.cursors == [3]
    # c had rerun its unfinished item 2 (0..0.5) before the mismatch at 1.
    assert calls.consumed == {2: 1}
    assert again.total_duration_ms == 1000.0
    assert again.status == "failed"


async def test_without_verify_replay_a_changed_replay_is_discarded_unseen(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Not verified: the journaled items stand, whatever the generator re-yields."""
    executor = PipelineExecutor(store=MemoryStore())
    first = await first_run_cancelled_at_2_25(executor, resumable=False)
    calls = Calls()
    again = await executor.execute(
        streamed(calls, replace={1: 99}), None, resume=first.run_id
    )
    assert again.success
    assert again.outputs["p"] == [0, 1, 2, 3, 4]
    assert again.total_duration_ms == 4500.0


async def test_a_stream_whose_end_was_journaled_is_not_run_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """p finished, r failed: on resume p and c are wholly restored, only r runs."""
    calls = Calls()
    broken = True

    async def fragile(items: list[int], ctx: PipelineContext[Any]) -> int:
        if broken:
            raise RuntimeError("r broke")
        return sum(items)

    def pipeline() -> PipelineDefinition:
        return PipelineDefinition(
            name="streamed",
            stages=[
                StageDefinition("p", source(calls, resumable=False)),
                StageDefinition(
                    "c", worker(calls), inputs=["p"], pattern=FAN_OUT, max_concurrency=1
                ),
                StageDefinition("r", fragile, inputs=["c"]),
            ],
        )

    store = MemoryStore()
    executor = PipelineExecutor(store=store)
    first = await executor.execute(pipeline())
    assert first.status == "failed"
    assert first.total_duration_ms == 4500.0
    # p's 5 items and its end, c's 5 items, and r (failed) ran.
    assert store.get_run(first.run_id).stats == {"restored": 0, "ran": 12}
    broken = False
    calls = Calls()
    events = Events()
    again = await executor.execute(
        pipeline(), None, resume=first.run_id, observers=[events]
    )
    assert again.success
    assert again.outputs == {"p": [0, 1, 2, 3, 4], "c": [0, 10, 20, 30, 40], "r": 100}
    assert calls.cursors == []
    assert calls.log == []
    assert again.total_duration_ms == 0.0
    assert again.metadata == {"produced": 5}
    p, c = again.stage_results["p"], again.stage_results["c"]
    assert (p.status, p.attempts, p.restored_from) == (
        StageStatus.SUCCEEDED,
        0,
        first.run_id,
    )
    assert (c.attempts, c.restored_from) == (0, first.run_id)
    assert [(e.stage_id, e.items, e.total) for e in events.seen] == [
        ("p", 5, 5),
        ("c", 5, 5),
    ]
    # Resuming the resumed run restores everything again (journaled anew).
    calls = Calls()
    third = await executor.execute(pipeline(), None, resume=again.run_id)
    assert third.stage_results["p"].restored_from == first.run_id
    assert calls.cursors == []
    assert third.outputs == again.outputs


async def test_items_produced_ahead_of_the_consumer_are_fed_from_the_store_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """stream_buffer=2: items read ahead are journaled; the resume feeds them before restarting."""
    calls = Calls()

    async def burst(value: Any, ctx: PipelineContext[Any]) -> AsyncIterator[int]:
        calls.cursors.append(ctx.stream_cursor)
        for i in range(ctx.stream_cursor, 8):
            calls.log.append((trio.current_time(), f"yield {i}"))
            yield i

    def pipeline() -> PipelineDefinition:
        return PipelineDefinition(
            name="burst",
            stages=[
                StageDefinition("p", burst, stream_buffer=2, resumable=True),
                StageDefinition(
                    "c",
                    worker(calls, seconds=1),
                    inputs=["p"],
                    pattern=FAN_OUT,
                    max_concurrency=1,
                ),
            ],
        )

    executor = PipelineExecutor(store=MemoryStore())
    first = await cancelled_at(executor, pipeline(), 1.5)
    # c finished item 0; 1 was cut; the bound 1 + 2 + 1 let 2..4 be produced.
    assert calls.consumed == {0: 1, 1: 1}
    assert calls.log[-1] == (1.0, "yield 4")
    calls = Calls()
    start = trio.current_time()
    again = await executor.execute(pipeline(), None, resume=first.run_id)
    assert again.outputs == {
        "p": list(range(8)),
        "c": [10 * i for i in range(8)],
    }
    assert calls.cursors == [5]
    assert calls.consumed == dict.fromkeys(range(1, 8), 1)
    # 1..4 come from the store, one a second as c frees its slot; the
    # generator starts once 4 is handed over, and reads ahead from there.
    assert sorted((t - start, what) for t, what in calls.log) == [
        (0.0, "start 1"),
        (1.0, "start 2"),
        (2.0, "start 3"),
        (3.0, "start 4"),
        (3.0, "yield 5"),
        (3.0, "yield 6"),
        (3.0, "yield 7"),
        (4.0, "start 5"),
        (5.0, "start 6"),
        (6.0, "start 7"),
    ]
    assert again.total_duration_ms == 7000.0


async def test_a_changed_producer_restores_nothing_of_its_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A new version: p runs from the start (cursor 0); c still restores its equal items."""
    executor = PipelineExecutor(store=MemoryStore())
    first = await first_run_cancelled_at_2_25(executor, resumable=True)
    calls = Calls()
    events = Events()
    start = trio.current_time()
    again = await executor.execute(
        streamed(calls, resumable=True, version="2"),
        None,
        resume=first.run_id,
        observers=[events],
    )
    assert again.success
    assert again.outputs["c"] == [0, 10, 20, 30, 40]
    assert calls.cursors == [0]
    assert calls.consumed == {2: 1, 3: 1, 4: 1}
    assert [(t - start, what) for t, what in calls.log if what.startswith("start")] == [
        (2.0, "start 2"),
        (3.0, "start 3"),
        (4.0, "start 4"),
    ]
    assert again.total_duration_ms == 4500.0
    assert again.metadata == {"produced": 5}
    assert [(e.stage_id, e.items, e.total) for e in events.seen] == [("c", 2, 5)]


async def test_a_stream_with_checkpoint_false_reruns_from_the_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """checkpoint=False: nothing of p is journaled, so nothing is restored."""
    store = MemoryStore()
    executor = PipelineExecutor(store=store)
    calls = Calls()
    first = await cancelled_at(
        executor, streamed(calls, resumable=True, checkpoint=False), 2.25
    )
    journaled = store.read_journal(first.run_id).entries
    assert {e.parts.stage for e in journaled} == {"c"}
    calls = Calls()
    again = await executor.execute(
        streamed(calls, resumable=True, checkpoint=False), None, resume=first.run_id
    )
    assert calls.cursors == [0]
    assert calls.consumed == {2: 1, 3: 1, 4: 1}
    assert again.total_duration_ms == 4500.0


async def test_a_pipeline_timeout_mid_stream_then_resume(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A timeout at 2.5 (c's item 2 ends at it, and counts): c reruns nothing of 0..2."""
    store = MemoryStore()
    executor = PipelineExecutor(store=store)
    calls = Calls()
    first = await executor.execute(streamed(calls, resumable=True, timeout_ms=2500))
    assert first.status == "timed_out"
    assert first.total_duration_ms == 2500.0
    items = [
        e.parts.item
        for e in store.read_journal(first.run_id).entries
        if e.parts.stage == "p"
    ]
    assert items == ["stream:0", "stream:1", "stream:2"]
    calls = Calls()
    again = await executor.execute(
        streamed(calls, resumable=True), None, resume=first.run_id
    )
    assert again.success
    assert calls.cursors == [3]
    assert calls.consumed == {3: 1, 4: 1}
    # 3 at once, 4 a second later.
    assert again.total_duration_ms == 1500.0


class Point(pydantic.BaseModel):
    """A declared item type."""

    x: int


async def test_declared_item_types_are_restored_equal_and_of_their_type(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """AsyncIterator[Point] declares each item's type; resumed items are Points."""
    seen: list[list[Point]] = []

    async def points(value: Any, ctx: PipelineContext[Any]) -> AsyncIterator[Point]:
        for i in range(ctx.stream_cursor, 3):
            await trio.sleep(1)
            yield Point(x=i)

    async def collect(items: list[Point], ctx: PipelineContext[Any]) -> int:
        seen.append(items)
        return len(items)

    pipeline = PipelineDefinition(
        name="points",
        stages=[
            StageDefinition("p", points, resumable=True),
            StageDefinition("n", collect, inputs=["p"]),
        ],
    )
    assert declared_item_type(points) is Point
    executor = PipelineExecutor(store=MemoryStore())
    first = await cancelled_at(executor, pipeline, 2.5)
    assert first.status == "cancelled"
    again = await executor.execute(pipeline, None, resume=first.run_id)
    assert again.outputs["p"] == [Point(x=0), Point(x=1), Point(x=2)]
    assert [type(p) for p in seen[0]] == [Point, Point, Point]
    # Only item 2 was produced again.
    assert again.total_duration_ms == 1000.0


async def test_an_undeclared_item_is_skipped_and_nothing_after_it_is_journaled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Item 1 has no JSON form: checkpoint_skipped names it; the resume restores item 0."""

    class Opaque:
        def __eq__(self, other: object) -> bool:
            return isinstance(other, Opaque)

        __hash__ = object.__hash__

    cursors: list[int] = []

    async def mixed(value: Any, ctx: PipelineContext[Any]) -> AsyncIterator[Any]:
        cursors.append(ctx.stream_cursor)
        for i in range(ctx.stream_cursor, 3):
            await trio.sleep(1)
            yield Opaque() if i == 1 else i

    pipeline = PipelineDefinition(
        name="mixed", stages=[StageDefinition("p", mixed, resumable=True)]
    )
    store = MemoryStore()
    executor = PipelineExecutor(store=store)
    events = Events()
    first = await executor.execute(pipeline, observers=[events])
    assert first.success
    assert [(type(e).__name__, e.item_index) for e in events.seen] == [
        ("CheckpointSkipped", 1)
    ]
    assert "not JSON-native" in events.seen[0].reason
    assert [e.parts.item for e in store.read_journal(first.run_id).entries] == [
        "stream:0"
    ]
    again = await executor.execute(pipeline, None, resume=first.run_id)
    assert again.outputs["p"] == [0, Opaque(), 2]
    assert cursors == [0, 1]
    assert again.total_duration_ms == 2000.0


async def test_a_damaged_item_ends_the_restored_prefix(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A journaled item that does not decode: items before it are restored, it and later run."""
    store = MemoryStore()
    executor = PipelineExecutor(store=store)
    calls = Calls()
    first = await executor.execute(
        PipelineDefinition(
            name="streamed",
            stages=[
                StageDefinition("p", source(calls, resumable=True), resumable=True)
            ],
        )
    )
    assert first.success
    entries = store.read_journal(first.run_id).entries
    # Tamper with item 2 in memory: a MemoryStore keeps entry objects.
    tampered = MemoryStore()
    tampered.begin_run(store.get_run(first.run_id))
    tampered.append(
        first.run_id,
        [
            Entry(
                e.run_id,
                e.parts,
                '"two"' if e.parts.item == "stream:2" else e.output,
                e.effects,
            )
            for e in entries
        ],
    )

    events = Events()
    calls = Calls()
    again = await PipelineExecutor(store=tampered).execute(
        PipelineDefinition(
            name="streamed",
            stages=[
                StageDefinition("p", source(calls, resumable=True), resumable=True)
            ],
        ),
        None,
        resume=first.run_id,
        observers=[events],
    )
    assert again.outputs["p"] == [0, 1, 2, 3, 4]
    # The end is ignored too (an item is missing): the stream runs on from 2.
    assert calls.cursors == [2]
    assert again.metadata == {"produced": 5}
    assert [(type(e).__name__, e.stage_id) for e in events.seen] == [
        ("CheckpointCorrupt", "p"),
        ("StageRestored", "p"),
    ]
    assert events.seen[0].reason == (
        f"stored item of run {first.run_id!r}: stored output does not fit int"
    )
    assert (events.seen[1].items, events.seen[1].total) == (2, None)


async def test_cache_reuses_a_finished_stream_of_any_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """cache=True: a later run (not a resume) restores the whole stream and never calls p."""
    store = MemoryStore()
    executor = PipelineExecutor(store=store)
    calls = Calls()
    first = await executor.execute(streamed(calls, cache=True))
    assert first.success
    assert first.total_duration_ms == 4500.0
    calls = Calls()
    again = await executor.execute(streamed(calls, cache=True))
    assert again.outputs["p"] == [0, 1, 2, 3, 4]
    assert again.stage_results["p"].restored_from == first.run_id
    assert calls.cursors == []
    # c is not cached: it runs every item, one at a time.
    assert calls.consumed == dict.fromkeys(range(5), 1)
    assert again.total_duration_ms == 2500.0


async def test_cache_never_reuses_an_unfinished_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """cache=True without resume: a cancelled stream's items are not reused."""
    executor = PipelineExecutor(store=MemoryStore())
    await cancelled_at(executor, streamed(Calls(), resumable=True, cache=True), 2.25)
    calls = Calls()
    again = await executor.execute(streamed(calls, resumable=True, cache=True))
    assert calls.cursors == [0]
    assert again.total_duration_ms == 4500.0


def test_an_object_stream_is_fingerprinted_and_typed_by_its_stream_method() -> None:
    """An object streaming stage's key follows its ``stream`` code; its items' type too."""

    class One:
        async def stream(
            self, value: Any, ctx: PipelineContext[Any]
        ) -> AsyncIterator[int]:
            yield 1

    class Two:
        async def stream(
            self, value: Any, ctx: PipelineContext[Any]
        ) -> AsyncIterator[int]:
            yield 2

    assert code_fingerprint(One()) != code_fingerprint(Two())
    assert declared_item_type(One()) is int
    assert declared_item_type(One(), output_type=str) is str


async def test_runs_show_counts_a_streams_items_and_its_end(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """``actors runs show``: p's restored items, and why its new items and end ran."""
    executor = PipelineExecutor(store=FileStore(tmp_path), log_events=False)
    first = await first_run_cancelled_at_2_25(executor, resumable=True)
    again = await executor.execute(
        streamed(Calls(), resumable=True), None, resume=first.run_id
    )
    out = io.StringIO()
    assert main_runs(["runs", "show", again.run_id, "--store", str(tmp_path)], out) == 0
    rows = [re.split(r"\s{2,}", line) for line in out.getvalue().splitlines()[1:]]
    assert rows == [
        ["STAGE", "RESTORED", "RAN", "WHY IT RAN"],
        ["p", "3", "3", "no recorded success"],
        ["c", "2", "3", "no recorded success"],
        ["r", "0", "1", f"no recorded success in {first.run_id}"],
    ]


class Forgetful(MemoryStore):
    """A MemoryStore that finds entries but cannot read other runs' journals."""

    def __init__(self) -> None:
        super().__init__()
        self.readable: set[str] = set()

    def read_journal(self, run_id: str) -> JournalContents:
        if run_id not in self.readable:
            raise UnknownRunError(f"run {run_id!r} was pruned")
        return super().read_journal(run_id)


async def test_a_cached_stream_whose_journal_is_gone_is_a_miss_and_recording_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """cache=True: the end is found but its run's journal cannot be read: p runs, journaled."""
    store = Forgetful()
    executor = PipelineExecutor(store=store)
    first = await executor.execute(streamed(Calls(), cache=True))
    assert first.success
    calls = Calls()
    again = await executor.execute(streamed(calls, cache=True))
    assert calls.cursors == [0]
    assert again.total_duration_ms == 4500.0
    store.readable.add(again.run_id)
    items = [e.parts.item for e in store.read_journal(again.run_id).entries]
    assert items.count("stream:end") == 1
    assert store.get_run(again.run_id).stats == {"restored": 0, "ran": 12}


def expected_resume(cut: float, *, resumable: bool) -> tuple[int, set[int], float]:
    """The items journaled, those c runs again, and the resumed run's length.

    Items are yielded at t = 0..4 and take c 0.5 s each, so at *cut* the
    items 0..floor(cut) were produced (the stream ended at 4), and item
    floor(cut) is still in c if the cut falls in the first half of its second.
    """
    produced = min(int(cut) + 1, 5)
    in_flight = cut - int(cut) < 0.5
    rerun = {produced - 1} if in_flight else set()
    new = set(range(produced, 5))
    if produced == 5:
        # The stream's end was journaled: the generator is not called.
        length = 0.5 if in_flight else 0.0
    elif not resumable:
        # The generator re-yields 0..produced-1 at t = 0..produced-1; the
        # rest flow at their own times, c at 0.5 s each.
        length = 4.5
    else:
        # The first new item is yielded at once, taken when c is free.
        length = (0.5 if in_flight else 0.0) + (4 - produced) + 0.5
    return produced, rerun | new, length


@pytest.mark.parametrize("resumable", [True, False])
@pytest.mark.parametrize("cut", [0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75, 4.25])
async def test_a_cut_anywhere_resumes_to_the_same_result_running_only_what_is_left(
    autojump_clock: trio.testing.MockClock, cut: float, resumable: bool
) -> None:
    """Whatever the instant of the cancel: complete outputs; c reruns only the cut item."""
    store = MemoryStore()
    executor = PipelineExecutor(store=store)
    calls = Calls()
    first = await cancelled_at(executor, streamed(calls, resumable=resumable), cut)
    assert first.status == "cancelled"
    produced, rerun, length = expected_resume(cut, resumable=resumable)
    journaled = [
        e.parts.item
        for e in store.read_journal(first.run_id).entries
        if e.parts.stage == "p"
    ]
    ended = ["stream:end"] if produced == 5 else []
    assert journaled == [f"stream:{i}" for i in range(produced)] + ended
    calls = Calls()
    start = trio.current_time()
    again = await executor.execute(
        streamed(calls, resumable=resumable), None, resume=first.run_id
    )
    assert again.outputs == {
        "p": [0, 1, 2, 3, 4],
        "c": [0, 10, 20, 30, 40],
        "r": 10,
    }
    assert calls.cursors == ([] if ended else [produced])
    assert calls.consumed == dict.fromkeys(rerun, 1)
    assert trio.current_time() - start == length
    assert again.total_duration_ms == length * 1000


async def test_a_chain_of_stream_fed_fan_outs_restores_depth_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """p -> c -> d: c's restored outputs flow on to d, which restores its own."""
    calls = Calls()
    second: collections.Counter[int] = collections.Counter()

    async def double(item: int, ctx: PipelineContext[Any]) -> int:
        second[item] += 1
        await trio.sleep(0.25)
        return 2 * item

    def pipeline() -> PipelineDefinition:
        return PipelineDefinition(
            name="chain",
            stages=[
                StageDefinition("p", source(calls, resumable=True), resumable=True),
                StageDefinition(
                    "c", worker(calls), inputs=["p"], pattern=FAN_OUT, max_concurrency=1
                ),
                StageDefinition(
                    "d", double, inputs=["c"], pattern=FAN_OUT, max_concurrency=1
                ),
            ],
        )

    executor = PipelineExecutor(store=MemoryStore())
    # At 2.6: c finished 0..2 (2 at 2.5); d finished 0 and 10, is on 20.
    first = await cancelled_at(executor, pipeline(), 2.6)
    assert second == {0: 1, 10: 1, 20: 1}
    calls = Calls()
    second.clear()
    again = await executor.execute(pipeline(), None, resume=first.run_id)
    assert again.outputs == {
        "p": [0, 1, 2, 3, 4],
        "c": [0, 10, 20, 30, 40],
        "d": [0, 20, 40, 60, 80],
    }
    assert calls.cursors == [3]
    assert calls.consumed == {3: 1, 4: 1}
    assert second == {20: 1, 30: 1, 40: 1}
    # d redoes 20 at 0; c does 3 at 0..0.5 and 4 at 1..1.5; d's 40 ends at 1.75.
    assert again.total_duration_ms == 1750.0

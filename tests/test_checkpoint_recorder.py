"""The recorder: batches a run's successes into a store off the event loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest
import trio
import trio.testing
from checkpoint_fixtures import entry

from actors._checkpoint import Entry, FileStore, MemoryStore, RunInfo
from actors._checkpoint._recorder import FLUSH_DELAY_S, open_recorder


class Failing(MemoryStore):
    """A MemoryStore whose appends fail like a full disk."""

    def __init__(self) -> None:
        super().__init__()
        self.appends = 0

    def append(self, run_id: str, entries: Sequence[Entry]) -> None:
        self.appends += 1
        raise OSError(28, "No space left on device")


class Watching(MemoryStore):
    """A MemoryStore that records which thread each write runs on."""

    blocking = True  # treated like a store on disk: called in worker threads

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def append(self, run_id: str, entries: Sequence[Entry]) -> None:
        self.threads.add(threading.get_ident())
        super().append(run_id, entries)

    def finish_run(self, run_id: str, status: str, stats: Mapping[str, int]) -> None:
        self.threads.add(threading.get_ident())
        super().finish_run(run_id, status, stats)


async def settle(done: Callable[[], bool]) -> None:
    """Yield until *done()*, without letting a virtual clock move.

    Store writes run in worker threads; a task that slept while one runs
    would let the autojump clock move on, so the test spins on checkpoints
    (never idle, so virtual time stands still) until the thread is done.
    """
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, "the worker thread never finished"
        await trio.lowlevel.checkpoint()


async def test_units_reach_the_store_within_the_flush_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Successes are written in one batch FLUSH_DELAY_S after the first of them."""
    store = Watching()
    reports: list[tuple[str, Exception]] = []
    start = trio.current_time()
    async with open_recorder(
        store, run_id="r1", pipeline="pipe", report=lambda *a: reports.append(a)
    ) as recorder:
        assert store.get_run("r1").status == "running"
        recorder.record(entry("r1", "a", 1))
        await trio.sleep(0.01)
        recorder.record(entry("r1", "b", 2))
        await trio.sleep_until(start + FLUSH_DELAY_S - 0.001)
        assert store.read_journal("r1").entries == ()
        await trio.sleep_until(start + FLUSH_DELAY_S)
        await settle(lambda: recorder.written == 2)
        assert [e.parts.stage for e in store.read_journal("r1").entries] == ["a", "b"]
        assert trio.current_time() - start == FLUSH_DELAY_S
        recorder.record(entry("r1", "c", 3))
        recorder.set_status("succeeded", {"ran": 3})
    # Leaving writes what is pending, without waiting, and the run's status.
    assert trio.current_time() - start == FLUSH_DELAY_S
    assert [e.parts.stage for e in store.read_journal("r1").entries] == ["a", "b", "c"]
    run = store.get_run("r1")
    assert (run.status, dict(run.stats)) == ("succeeded", {"ran": 3})
    assert recorder.written == 3
    assert reports == []
    assert threading.get_ident() not in store.threads  # never on the event loop


async def test_cancelled_run_still_writes_what_succeeded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancellation of the block still writes pending units and marks it cancelled."""
    store = MemoryStore()
    with trio.move_on_after(1):
        async with open_recorder(
            store, run_id="r1", pipeline="pipe", report=lambda *a: None
        ) as recorder:
            recorder.record(entry("r1", "a", 1))
            await trio.sleep_forever()
    assert [e.parts.stage for e in store.read_journal("r1").entries] == ["a"]
    assert store.get_run("r1").status == "cancelled"


async def test_failing_store_reports_once_and_never_raises(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A store that fails is reported once; the block runs on unrecorded."""
    store = Failing()
    reports: list[tuple[str, Exception]] = []
    async with open_recorder(
        store, run_id="r1", pipeline="pipe", report=lambda *a: reports.append(a)
    ) as recorder:
        recorder.record(entry("r1", "a", 1))
        await trio.sleep(FLUSH_DELAY_S)
        await settle(lambda: recorder.failed)
        recorder.record(entry("r1", "b", 2))  # dropped quietly
        await trio.sleep(1)
        recorder.set_status("succeeded", {})
    assert [(op, str(exc)) for op, exc in reports] == [
        ("append", "[Errno 28] No space left on device")
    ]
    assert store.appends == 1
    assert store.get_run("r1").status == "running"  # nothing more was written


async def test_unwritable_directory_is_reported_at_begin(tmp_path: Path) -> None:
    """A FileStore that cannot create its directory reports begin_run, not raise."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    reports: list[str] = []
    async with open_recorder(
        FileStore(blocker / "store"),
        run_id="r1",
        pipeline="pipe",
        report=lambda op, exc: reports.append(op),
    ) as recorder:
        recorder.record(entry("r1", "a", 1))
    assert reports == ["begin_run"]
    assert recorder.written == 0


async def test_bad_flush_delay_is_refused() -> None:
    """A negative or infinite flush delay is a ValueError."""
    for delay in (-1.0, float("inf")):
        with pytest.raises(ValueError, match=r"^flush_delay_s must be finite"):
            async with open_recorder(
                MemoryStore(),
                run_id="r1",
                pipeline="p",
                report=lambda *a: None,
                flush_delay_s=delay,
            ):
                pass  # pragma: no cover


def test_run_info_defaults() -> None:
    """A new run is running, unfinished, without stats."""
    assert RunInfo("r", "p", 1.0) == RunInfo("r", "p", 1.0, "running", None, {})

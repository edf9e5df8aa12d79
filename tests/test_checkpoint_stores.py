"""Checkpoint stores: CRUD, atomicity, tampering, two processes, SIGKILL."""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from checkpoint_fixtures import BATCHES, PER_BATCH, entry, open_store, write_run

from actors._checkpoint import (
    Entry,
    FileStore,
    MemoryStore,
    RunInfo,
    SQLiteStore,
    Store,
)
from actors._checkpoint._records import entry_line, parse_entry, parse_run, run_line
from actors.checkpoint import UnknownRunError

ROOT = Path(__file__).resolve().parent.parent
WRITER = Path(__file__).resolve().parent / "checkpoint_fixtures.py"

Factory = Callable[[Path], Store]
STORES: dict[str, Factory] = {
    "memory": lambda path: MemoryStore(),
    "file": lambda path: FileStore(path / "store"),
    "sqlite": lambda path: SQLiteStore(path / "store.db"),
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Each kind of store, empty."""
    return STORES[request.param](tmp_path)


def test_every_store_is_a_store(store: Store) -> None:
    """Each store satisfies the Store protocol."""
    assert isinstance(store, Store)


def test_run_lifecycle(store: Store) -> None:
    """A run is recorded running, gains entries in order, and ends with a status."""
    store.begin_run(RunInfo("r1", "pipe", 100.0))
    assert store.get_run("r1") == RunInfo("r1", "pipe", 100.0, "running", None, {})
    first = [entry("r1", "a", 1), entry("r1", "b", 2)]
    store.append("r1", first)
    store.append("r1", [entry("r1", "c", 3)])
    contents = store.read_journal("r1")
    assert contents.entries == (*first, entry_matching(contents.entries[2], "c"))
    assert [e.parts.stage for e in contents.entries] == ["a", "b", "c"]
    assert contents.corrupt == 0
    store.finish_run("r1", "failed", {"ran": 3, "restored": 0})
    done = store.get_run("r1")
    assert (done.status, dict(done.stats)) == ("failed", {"ran": 3, "restored": 0})
    assert done.finished_at is not None


def entry_matching(found: Entry, stage: str) -> Entry:
    """Return *found* after checking it is the entry of *stage* (times differ)."""
    assert found.parts.stage == stage
    return found


def test_latest_and_list_runs(store: Store) -> None:
    """latest_run picks the latest start of that pipeline; list_runs is oldest first."""
    store.begin_run(RunInfo("old", "pipe", 10.0))
    store.begin_run(RunInfo("new", "pipe", 30.0))
    store.begin_run(RunInfo("other", "else", 40.0))
    assert store.latest_run("pipe").run_id == "new"
    assert [r.run_id for r in store.list_runs()] == ["old", "new", "other"]
    assert [r.run_id for r in store.list_runs("pipe")] == ["old", "new"]
    with pytest.raises(UnknownRunError, match="'nothing'"):
        store.latest_run("nothing")


@pytest.mark.parametrize("run_id", ["missing", "../etc/passwd", "", "a/b", "x" * 65])
def test_unknown_or_invalid_run_ids_raise_unknown_run_error(
    store: Store, run_id: str
) -> None:
    """Unknown ids and ids that could escape a directory are unknown runs."""
    with pytest.raises(UnknownRunError):
        store.get_run(run_id)
    with pytest.raises(UnknownRunError):
        store.read_journal(run_id)
    assert issubclass(UnknownRunError, LookupError)


def test_find_returns_the_latest_entry_with_a_key(store: Store) -> None:
    """find() looks across runs for a key and returns the newest entry."""
    store.begin_run(RunInfo("r1", "pipe", 1.0))
    store.append("r1", [entry("r1", "a", 1, output='"first"')])
    store.begin_run(RunInfo("r2", "pipe", 2.0))
    store.append("r2", [entry("r2", "a", 1, output='"second"')])
    found = store.find(entry("x", "a", 1).key)
    assert found is not None
    assert (found.run_id, found.output) == ("r2", '"second"')
    assert store.find(entry("x", "a", 2).key) is None


def test_prune_deletes_runs_older_than_the_duration(store: Store) -> None:
    """Runs started before now - duration go, with their journals; others stay."""
    store.begin_run(RunInfo("old", "pipe", 1000.0))
    store.append("old", [entry("old", "a", 1)])
    store.begin_run(RunInfo("new", "pipe", 5000.0))
    assert store.prune(3600, now=5000.0) == ["old"]
    assert [r.run_id for r in store.list_runs()] == ["new"]
    with pytest.raises(UnknownRunError):
        store.read_journal("old")
    assert store.find(entry("x", "a", 1).key) is None


def test_append_to_an_unknown_run_raises(store: Store) -> None:
    """Writing to a run that was never begun is an error (the recorder reports it)."""
    with pytest.raises(UnknownRunError):
        store.append("ghost", [entry("ghost", "a", 1)])


def test_records_round_trip_and_detect_every_edit() -> None:
    """A record's digest catches any change to its text."""
    original = entry("r1", "a", {"k": [1, 2]}, output='{"v":1}')
    line = entry_line(original)
    assert parse_entry(line) == original
    run = RunInfo("r1", "pipe", 5.0, "succeeded", 6.0, {"ran": 1})
    assert parse_run(run_line(run)) == run
    for edited in (
        line.replace('{\\"v\\":1}', '{\\"v\\":2}'),
        line.replace('"a"', '"b"'),
        line[: len(line) // 2],
        line.replace("set_state", "add_metric"),
        "",
        "null",
        "[]",
        '{"digest": "x", "doc": 1}',
    ):
        assert edited != line
        assert parse_entry(edited) is None


def _fill(store: Store) -> None:
    for run_id, started in (("r1", 1.0), ("r2", 2.0)):
        store.begin_run(RunInfo(run_id, "pipe", started))
        store.append(run_id, [entry(run_id, "a", 1), entry(run_id, "b", 2)])
        store.finish_run(run_id, "succeeded", {"ran": 2})


PICKLE_BOMB = pickle.dumps(os.system)  # would call os.system if ever unpickled


@pytest.mark.parametrize(
    "payload",
    [PICKLE_BOMB, b"\x00\xff garbage \x80", b"", b'{"digest": "0", "doc": {}}'],
    ids=["pickle", "garbage", "empty", "bad-digest"],
)
def test_file_store_with_every_file_overwritten_never_crashes(
    tmp_path: Path, payload: bytes
) -> None:
    """Overwritten files make every lookup a miss or UnknownRunError, nothing else."""
    store = FileStore(tmp_path / "store")
    _fill(store)
    files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert len(files) == 4  # two run records, one journal segment each
    for path in files:
        path.write_bytes(payload)
    assert store.list_runs() == []
    for run_id in ("r1", "r2"):
        with pytest.raises(UnknownRunError, match=f"no readable run '{run_id}'"):
            store.read_journal(run_id)
    with pytest.raises(UnknownRunError):
        store.latest_run("pipe")
    assert store.find(entry("x", "a", 1).key) is None


def test_file_store_damaged_segment_is_counted_as_corrupt(tmp_path: Path) -> None:
    """A damaged journal segment loses only its own entries, counted as corrupt."""
    store = FileStore(tmp_path / "store")
    store.begin_run(RunInfo("r1", "pipe", 1.0))
    store.append("r1", [entry("r1", "a", 1)])
    store.append("r1", [entry("r1", "b", 2), entry("r1", "c", 3)])
    segments = sorted((tmp_path / "store" / "journal" / "r1").iterdir())
    segments[1].write_bytes(b"\x80\x04 not text\n" + segments[1].read_bytes()[:40])
    contents = store.read_journal("r1")
    assert [e.parts.stage for e in contents.entries] == ["a"]
    assert contents.corrupt == 2


def test_file_store_entry_moved_to_another_run_is_refused(tmp_path: Path) -> None:
    """An entry copied into another run's journal does not count for that run."""
    store = FileStore(tmp_path / "store")
    _fill(store)
    source = next((tmp_path / "store" / "journal" / "r1").iterdir())
    (tmp_path / "store" / "journal" / "r2" / "0-copied.jsonl").write_bytes(
        source.read_bytes()
    )
    contents = store.read_journal("r2")
    assert {e.run_id for e in contents.entries} == {"r2"}
    assert contents.corrupt == 2


@pytest.mark.parametrize(
    "payload", [PICKLE_BOMB, b"\x00\xff garbage"], ids=["pickle", "garbage"]
)
def test_sqlite_store_with_tampered_rows_never_crashes(
    tmp_path: Path, payload: bytes
) -> None:
    """Rows whose records are replaced by bytes are misses, never loaded."""
    store = SQLiteStore(tmp_path / "store.db")
    _fill(store)
    with sqlite3.connect(tmp_path / "store.db") as db:
        db.execute("UPDATE entries SET record = ? WHERE run_id = 'r1'", (payload,))
        db.execute("UPDATE runs SET record = ? WHERE run_id = 'r2'", (payload,))
    contents = store.read_journal("r1")
    assert (contents.entries, contents.corrupt) == ((), 2)
    with pytest.raises(UnknownRunError, match="no readable run 'r2'"):
        store.read_journal("r2")
    assert [r.run_id for r in store.list_runs()] == ["r1"]
    found = store.find(entry("x", "a", 1).key)
    assert found is not None
    assert found.run_id == "r2"  # r2's entries are intact; r1's are not


@pytest.mark.parametrize(
    "payload", [PICKLE_BOMB, b"\x00\xff garbage" * 1000], ids=["pickle", "garbage"]
)
def test_sqlite_store_with_the_database_overwritten_never_crashes(
    tmp_path: Path, payload: bytes
) -> None:
    """A database file overwritten with bytes: lookups miss, writes raise."""
    store = SQLiteStore(tmp_path / "store.db")
    _fill(store)
    for path in tmp_path.iterdir():
        path.write_bytes(payload)
    assert store.list_runs() == []
    with pytest.raises(UnknownRunError, match="cannot be read"):
        store.read_journal("r1")
    with pytest.raises(UnknownRunError):
        store.latest_run("pipe")
    assert store.find(entry("x", "a", 1).key) is None
    with pytest.raises(sqlite3.DatabaseError):
        store.begin_run(RunInfo("r3", "pipe", 3.0))


def _writer(kind: str, path: Path, prefix: str, runs: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), kind, str(path), prefix, str(runs)],
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{WRITER.parent}"},
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_two_processes_write_one_store(tmp_path: Path, kind: str) -> None:
    """Two processes writing runs at once leave every run of both complete."""
    runs = 8
    writers = [_writer(kind, tmp_path, prefix, runs) for prefix in ("a", "b")]
    for writer in writers:
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err.decode()
    store = open_store(kind, tmp_path)
    names = sorted(r.run_id for r in store.list_runs("shared"))
    assert names == sorted(f"{p}{n}" for p in "ab" for n in range(runs))
    for name in names:
        contents = store.read_journal(name)
        assert contents.corrupt == 0
        assert len(contents.entries) == BATCHES * PER_BATCH
        assert {e.run_id for e in contents.entries} == {name}
        assert contents.run.status == "succeeded"


def test_a_new_sqlite_store_waits_for_another_writers_lock(tmp_path: Path) -> None:
    """Opening a store on a file another connection has locked waits, then works.

    The file is still in rollback-journal mode (another process created it a
    moment ago) and another connection holds a lock: SQLite refuses to switch
    to WAL at once ("database is locked", without its busy handler), which
    made two processes opening one new store fail. Real SQLite locks between
    two connections, so the other writer releases its lock in real time.
    """
    path = tmp_path / "runs.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE other (x)")
    other.execute("BEGIN")
    other.execute("INSERT INTO other VALUES (1)")  # a lock held on the file
    release = threading.Timer(0.2, other.execute, ["COMMIT"])
    release.start()
    try:
        store = SQLiteStore(path)
        store.begin_run(RunInfo("r1", "shared", 0.0))
        assert [r.run_id for r in store.list_runs("shared")] == ["r1"]
        with contextlib.closing(sqlite3.connect(path)) as fresh:
            assert fresh.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        release.join()
        other.close()


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_sigkill_mid_write_leaves_a_readable_store(tmp_path: Path, kind: str) -> None:
    """A writer killed at several instants leaves only whole runs, batches and files."""
    store = open_store(kind, tmp_path)
    for attempt, delay in enumerate((0.0, 0.013, 0.037)):
        prefix = f"k{attempt}x"
        writer = _writer(kind, tmp_path, prefix, 0)
        # A real process: wall-clock time is unavoidable. Wait until it is
        # writing, then kill it at a different instant each time.
        deadline = time.monotonic() + 30
        while not any(r.run_id.startswith(prefix) for r in store.list_runs()):
            assert time.monotonic() < deadline, "the writer never wrote"
            time.sleep(0.01)
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=30)
        assert writer.returncode == -signal.SIGKILL
    runs = store.list_runs("shared")
    assert {r.run_id[:3] for r in runs} == {"k0x", "k1x", "k2x"}
    for run in runs:
        contents = store.read_journal(run.run_id)
        assert contents.corrupt == 0
        # Batches are atomic: a run has a whole number of them.
        assert len(contents.entries) % PER_BATCH == 0
        if run.status == "succeeded":
            assert len(contents.entries) == BATCHES * PER_BATCH
        else:
            assert run.status == "running"
    # The store still takes writes after the crashes.
    write_run(store, "after")
    assert len(store.read_journal("after").entries) == BATCHES * PER_BATCH
    if kind == "file":
        # Only temporary files can be left half-written, and prune removes them.
        leftovers = list((tmp_path / "tmp").iterdir())
        store.prune(0, now=time.time() + 1)
        assert all(not p.exists() for p in leftovers)


def test_file_store_find_index_sees_own_writes_and_others_after_refresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """find() sees its own writes at once, another writer's after a refresh."""
    import actors._checkpoint._file as file_module

    mine, theirs = FileStore(tmp_path), FileStore(tmp_path)
    key = entry("x", "a", 1).key
    assert mine.find(key) is None
    mine.begin_run(RunInfo("r1", "pipe", 1.0))
    mine.append("r1", [entry("r1", "a", 1, output='"one"')])
    assert _output(mine.find(key)) == '"one"'
    assert _output(theirs.find(key)) == '"one"'
    mine.begin_run(RunInfo("r2", "pipe", 2.0))
    mine.append("r2", [entry("r2", "a", 1, output='"two"')])
    assert _output(mine.find(key)) == '"two"'
    assert _output(theirs.find(key)) == '"one"'  # within the refresh window
    monkeypatch.setattr(file_module, "INDEX_REFRESH_S", 0.0)
    assert _output(theirs.find(key)) == '"two"'
    mine.prune(0, now=2.5)  # r1 and r2 both started before 2.5
    assert theirs.find(key) is None


def _output(found: Entry | None) -> str | None:
    return None if found is None else found.output

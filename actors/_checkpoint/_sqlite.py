"""SQLiteStore: one database file (stdlib sqlite3), safe across processes.

The database runs in WAL mode with ``synchronous=FULL``: every write is one
transaction, durable once it commits, and readers never block writers. Each
row keeps the checked JSON line of its record (see ``_records``), so a row
edited behind the store's back is a miss like a damaged file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .._exceptions import UnknownRunError
from ._records import (
    Entry,
    RunInfo,
    entry_line,
    parse_entry,
    parse_run,
    run_line,
    valid_run_id,
)
from ._store import JournalContents

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    started_at REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_pipeline ON runs (pipeline, started_at);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_run ON entries (run_id, seq);
CREATE INDEX IF NOT EXISTS entries_by_key ON entries (key, seq);
"""

_BUSY_TIMEOUT_S = 30.0
_WAL_RETRY_S = 0.01


def _use_wal(connection: sqlite3.Connection) -> None:
    """Put the database in WAL mode (the file keeps it), waiting for other writers.

    Switching modes needs the file to itself, and SQLite refuses at once,
    without its busy handler, while another connection holds a lock on a
    file still in rollback mode: two processes opening a new store at the
    same moment. So the switch is retried for up to the busy timeout; once
    the file is in WAL mode, reading the mode takes no lock and is enough.
    """
    if connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(_WAL_RETRY_S)  # a store's calls run in a worker thread
        else:
            return


"""How long a write waits for another process's transaction to end."""


class SQLiteStore:
    """A store in one SQLite database file, safe across threads and processes.

    Each method opens its own connection (so any thread may call it) and
    writes in one transaction. A damaged database file makes reads miss
    (and run lookups raise :class:`UnknownRunError`); writes then raise, and
    the executor reports ``checkpoint_failed``.

    Args:
        path: The database file; created, with its directory, on first use.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None
        )
        try:
            _use_wal(connection)
            connection.execute("PRAGMA synchronous=FULL")
            connection.executescript(_SCHEMA)
            yield connection
        finally:
            connection.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    # -- writing -------------------------------------------------------------

    def begin_run(self, run: RunInfo) -> None:
        """Record that *run* started."""
        if not valid_run_id(run.run_id):
            raise ValueError(f"invalid run id {run.run_id!r}")
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)",
                (run.run_id, run.pipeline, run.started_at, run_line(run)),
            )

    def append(self, run_id: str, entries: Sequence[Entry]) -> None:
        """Add *entries* to the journal of *run_id* in one transaction."""
        with self._transaction() as db:
            if (
                db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
                is None
            ):
                raise UnknownRunError(f"no run {run_id!r} in {self!r}")
            db.executemany(
                "INSERT INTO entries (run_id, key, record) VALUES (?, ?, ?)",
                [(run_id, entry.key, entry_line(entry)) for entry in entries],
            )

    def finish_run(self, run_id: str, status: str, stats: Mapping[str, int]) -> None:
        """Record that *run_id* ended with *status*."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT record FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            run = _run(row, run_id)
            if run is None:
                raise UnknownRunError(f"no readable run {run_id!r} in {self!r}")
            finished = dataclasses.replace(
                run, status=status, finished_at=time.time(), stats=dict(stats)
            )
            db.execute(
                "UPDATE runs SET record = ? WHERE run_id = ?",
                (run_line(finished), run_id),
            )

    # -- reading -------------------------------------------------------------

    def get_run(self, run_id: str) -> RunInfo:
        """Return the run *run_id*; raise UnknownRunError if it is unreadable."""
        if not valid_run_id(run_id):
            raise UnknownRunError(f"{run_id!r} is not a run id")
        try:
            with self._connect() as db:
                row = db.execute(
                    "SELECT record FROM runs WHERE run_id = ?", (run_id,)
                ).fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise UnknownRunError(f"{self!r} cannot be read: {exc}") from exc
        run = _run(row, run_id)
        if run is None:
            raise UnknownRunError(f"no readable run {run_id!r} in {self!r}")
        return run

    def latest_run(self, pipeline: str) -> RunInfo:
        """Return the run of *pipeline* that started last."""
        runs = self.list_runs(pipeline)
        if not runs:
            raise UnknownRunError(f"no readable run of {pipeline!r} in {self!r}")
        return runs[-1]

    def list_runs(self, pipeline: str | None = None) -> list[RunInfo]:
        """Return every readable run (of *pipeline*, if given), oldest first."""
        try:
            with self._connect() as db:
                rows = db.execute("SELECT run_id, record FROM runs").fetchall()
        except (sqlite3.Error, OSError):
            return []
        runs = []
        for run_id, record in rows:
            run = _run((record,), run_id)
            if run is not None and (pipeline is None or run.pipeline == pipeline):
                runs.append(run)
        runs.sort(key=lambda r: (r.started_at, r.run_id))
        return runs

    def read_journal(self, run_id: str) -> JournalContents:
        """Return the run's readable entries in order, and how many were damaged."""
        run = self.get_run(run_id)
        try:
            with self._connect() as db:
                rows = db.execute(
                    "SELECT key, record FROM entries WHERE run_id = ? ORDER BY seq",
                    (run_id,),
                ).fetchall()
        except (sqlite3.Error, OSError) as exc:
            raise UnknownRunError(
                f"the journal of run {run_id!r} cannot be read: {exc}"
            ) from exc
        entries = []
        corrupt = 0
        for key, record in rows:
            entry = _entry(record)
            if entry is None or entry.run_id != run_id or entry.key != key:
                corrupt += 1
            else:
                entries.append(entry)
        return JournalContents(run, tuple(entries), corrupt)

    def find(self, key: str) -> Entry | None:
        """Return the latest readable entry with *key*, from any run, or None."""
        try:
            with self._connect() as db:
                rows = db.execute(
                    "SELECT record FROM entries WHERE key = ? ORDER BY seq DESC",
                    (key,),
                ).fetchall()
        except (sqlite3.Error, OSError):
            return None
        for (record,) in rows:
            entry = _entry(record)
            if entry is not None and entry.key == key:
                return entry
        return None

    def prune(self, older_than_s: float, *, now: float | None = None) -> list[str]:
        """Delete runs started more than *older_than_s* seconds before *now*."""
        limit = (time.time() if now is None else now) - older_than_s
        with self._transaction() as db:
            gone = [
                run_id
                for (run_id,) in db.execute(
                    "SELECT run_id FROM runs WHERE started_at < ?", (limit,)
                )
            ]
            db.executemany("DELETE FROM entries WHERE run_id = ?", [(i,) for i in gone])
            db.executemany("DELETE FROM runs WHERE run_id = ?", [(i,) for i in gone])
        return gone


def _run(row: object, run_id: str) -> RunInfo | None:
    if not isinstance(row, tuple) or len(row) != 1 or not isinstance(row[0], str):
        return None
    run = parse_run(row[0])
    return run if run is not None and run.run_id == run_id else None


def _entry(record: object) -> Entry | None:
    return parse_entry(record) if isinstance(record, str | bytes) else None

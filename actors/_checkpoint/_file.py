"""FileStore: a directory of JSON files, written atomically, shared safely by processes.

Layout under the store's directory::

    runs/<run_id>.json              the run record (replaced whole on finish)
    journal/<run_id>/<segment>.jsonl  one file per append, never rewritten
    tmp/                             files being written, renamed when complete

Every file is written as a temporary file in ``tmp/``, flushed and fsynced,
then renamed over its final name (atomic on POSIX), and the directory is
fsynced. So a reader, or a process killed at any instant, sees each file
either whole or absent. Each append is a new segment file named by time,
process id and a counter: two processes never write the same file, and a
run's journal is its segments in name order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import shutil
import threading
import time
import uuid
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

INDEX_REFRESH_S = 1.0
"""How often :meth:`FileStore.find` looks for journal files it has not read."""

_MAX_FILE = 256 * 1024 * 1024
"""Files larger than this are not read (a damaged or hostile store)."""


class FileStore:
    """A store in a directory: JSON files written atomically.

    Safe with several threads and processes writing one directory at once
    (each run's journal is a set of files that only its own run writes). The
    directory is created on first write. A file that is damaged, truncated or
    edited is a miss, never an error; see the module docs for the layout.

    Args:
        path: The store's directory (``context.checkpoint_dir`` by default).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._counter = itertools.count()
        self._lock = threading.Lock()
        # key -> (rank: run start and segment name, entry, its segment)
        self._index: dict[str, tuple[tuple[float, str], Entry, Path]] = {}
        self._read_segments: set[Path] = set()
        self._started: dict[str, float] = {}
        self._indexed_at: float | None = None

    def __repr__(self) -> str:
        return f"FileStore({str(self.path)!r})"

    # -- writing -------------------------------------------------------------

    def begin_run(self, run: RunInfo) -> None:
        """Record that *run* started: its journal directory, then its record."""
        _check_id(run.run_id)
        (self.path / "journal" / run.run_id).mkdir(parents=True, exist_ok=True)
        self._write(self.path / "runs" / f"{run.run_id}.json", run_line(run) + "\n")
        with self._lock:
            self._started[run.run_id] = run.started_at

    def append(self, run_id: str, entries: Sequence[Entry]) -> None:
        """Write *entries* as one new segment of the run's journal, atomically."""
        _check_id(run_id)
        if not entries:
            return
        journal = self.path / "journal" / run_id
        if not journal.is_dir():
            raise UnknownRunError(f"no run {run_id!r} in {self!r}")
        with self._lock:
            count = next(self._counter)
        name = f"{time.time_ns():020d}-{os.getpid()}-{count:08d}.jsonl"
        text = "".join(entry_line(entry) + "\n" for entry in entries)
        self._write(journal / name, text)
        with self._lock:  # what this object writes, find() sees at once
            started = self._started.get(run_id)
            if started is not None:
                self._read_segments.add(journal / name)
                for entry in entries:
                    self._index_entry(entry, (started, name), journal / name)

    def _index_entry(
        self, entry: Entry, rank: tuple[float, str], segment: Path
    ) -> None:
        held = self._index.get(entry.key)
        if held is None or held[0] <= rank:
            self._index[entry.key] = (rank, entry, segment)

    def finish_run(self, run_id: str, status: str, stats: Mapping[str, int]) -> None:
        """Replace the run's record with its final status, atomically."""
        run = self.get_run(run_id)
        finished = dataclasses.replace(
            run, status=status, finished_at=time.time(), stats=dict(stats)
        )
        self._write(self.path / "runs" / f"{run_id}.json", run_line(finished) + "\n")

    def _write(self, target: Path, text: str) -> None:
        """Write *text* to *target*: temp file, fsync, rename, fsync the directory."""
        tmp_dir = self.path / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = tmp_dir / f"{uuid.uuid4().hex}.tmp"
        try:
            with open(temp, "x", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        _fsync_dir(target.parent)

    # -- reading -------------------------------------------------------------

    def get_run(self, run_id: str) -> RunInfo:
        """Return the run *run_id*; raise UnknownRunError if it is unreadable."""
        if not valid_run_id(run_id):
            raise UnknownRunError(f"{run_id!r} is not a run id")
        text = _read(self.path / "runs" / f"{run_id}.json")
        run = None if text is None else parse_run(text.strip())
        if run is None or run.run_id != run_id:
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
        runs = []
        for path in _listing(self.path / "runs"):
            if not path.name.endswith(".json"):
                continue
            text = _read(path)
            run = None if text is None else parse_run(text.strip())
            if (
                run is not None
                and path.name == f"{run.run_id}.json"
                and (pipeline is None or run.pipeline == pipeline)
            ):
                runs.append(run)
        runs.sort(key=lambda r: (r.started_at, r.run_id))
        return runs

    def read_journal(self, run_id: str) -> JournalContents:
        """Return the run's readable entries in order, and how many were damaged."""
        run = self.get_run(run_id)
        journal = self.path / "journal" / run_id
        try:
            names = sorted(os.listdir(journal))
        except OSError as exc:
            raise UnknownRunError(
                f"the journal of run {run_id!r} cannot be read: {exc}"
            ) from exc
        entries: list[Entry] = []
        corrupt = 0
        for name in names:
            if not name.endswith(".jsonl"):
                continue
            data = _read_bytes(journal / name)
            if data is None:
                corrupt += 1
                continue
            for line in data.split(b"\n"):
                if not line.strip():
                    continue
                entry = parse_entry(line)
                if entry is None or entry.run_id != run_id:
                    corrupt += 1
                else:
                    entries.append(entry)
        return JournalContents(run, tuple(entries), corrupt)

    def find(self, key: str) -> Entry | None:
        """Return an entry with *key* from the latest run that has one, or None.

        Served from an index of the journals kept by this object. Journal
        files never change once written, so the index only reads new ones;
        it looks for them at most every :data:`INDEX_REFRESH_S` seconds, so
        an entry another process wrote in that window can be missed (its
        unit then simply runs).
        """
        with self._lock:
            now = time.monotonic()
            if self._indexed_at is None or now - self._indexed_at >= INDEX_REFRESH_S:
                self._refresh_index()
                self._indexed_at = now
            found = self._index.get(key)
            if found is not None and not _holds(found[2], found[1]):
                # Changed or deleted behind our back: read every file again
                # (an older run may hold the key intact).
                self._index, self._read_segments = {}, set()
                self._refresh_index()
                found = self._index.get(key)
        return None if found is None else found[1]

    def _refresh_index(self) -> None:
        """Read the journal files not read yet into the key index."""
        runs = set()
        for journal in _listing(self.path / "journal"):
            run_id = journal.name
            started = self._started.get(run_id)
            if started is None:
                try:
                    started = self.get_run(run_id).started_at
                except UnknownRunError:
                    continue  # not begun yet, or damaged: nothing to trust
                self._started[run_id] = started
            runs.add(run_id)
            for segment in _listing(journal):
                if segment in self._read_segments or not segment.name.endswith(
                    ".jsonl"
                ):
                    continue
                self._read_segments.add(segment)
                data = _read_bytes(segment)
                lines = [] if data is None else data.split(b"\n")
                for line in lines:
                    entry = parse_entry(line) if line.strip() else None
                    if entry is None or entry.run_id != run_id:
                        continue
                    self._index_entry(entry, (started, segment.name), segment)
        # Pruned runs leave the index.
        gone = set(self._started) - runs
        if gone:
            self._index = {
                k: v for k, v in self._index.items() if v[1].run_id not in gone
            }
            self._read_segments = {
                s for s in self._read_segments if s.parent.name not in gone
            }
            for run_id in gone:
                del self._started[run_id]

    def prune(self, older_than_s: float, *, now: float | None = None) -> list[str]:
        """Delete runs started more than *older_than_s* seconds before *now*.

        Unreadable run records and leftover temporary files are deleted by
        their modification time instead.
        """
        limit = (time.time() if now is None else now) - older_than_s
        gone = []
        for path in _listing(self.path / "runs"):
            run_id = path.name.removesuffix(".json")
            text = _read(path)
            run = None if text is None else parse_run(text.strip())
            started = run.started_at if run is not None else _mtime(path)
            if started is None or started >= limit:
                continue
            if valid_run_id(run_id):
                shutil.rmtree(self.path / "journal" / run_id, ignore_errors=True)
            with contextlib.suppress(OSError):
                path.unlink()
            gone.append(run_id)
        for path in _listing(self.path / "tmp"):
            modified = _mtime(path)
            if modified is not None and modified < limit:
                with contextlib.suppress(OSError):
                    path.unlink()
        return gone


def _holds(segment: Path, entry: Entry) -> bool:
    """Return whether *segment* still holds *entry*, intact."""
    data = _read_bytes(segment)
    if data is None:
        return False
    return any(parse_entry(line) == entry for line in data.split(b"\n") if line.strip())


def _check_id(run_id: str) -> None:
    if not valid_run_id(run_id):
        raise ValueError(f"invalid run id {run_id!r}")


def _read_bytes(path: Path) -> bytes | None:
    """Return the bytes of *path*, or None if it is missing or huge."""
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_FILE + 1)
    except OSError:
        return None
    return None if len(data) > _MAX_FILE else data


def _read(path: Path) -> str | None:
    """Return the text of *path*, or None if it is missing, huge or not text."""
    data = _read_bytes(path)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _listing(directory: Path) -> Iterator[Path]:
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return
    for name in names:
        yield directory / name


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _fsync_dir(directory: Path) -> None:
    """Make a rename in *directory* durable (where the platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)

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

    def __repr__(self) -> str:
        return f"FileStore({str(self.path)!r})"

    # -- writing -------------------------------------------------------------

    def begin_run(self, run: RunInfo) -> None:
        """Record that *run* started: its journal directory, then its record."""
        _check_id(run.run_id)
        (self.path / "journal" / run.run_id).mkdir(parents=True, exist_ok=True)
        self._write(self.path / "runs" / f"{run.run_id}.json", run_line(run) + "\n")

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

        Reads the journals newest run first: the cost grows with the store;
        prune it (or use :class:`SQLiteStore`, which indexes keys).
        """
        for run in reversed(self.list_runs()):
            try:
                contents = self.read_journal(run.run_id)
            except UnknownRunError:
                continue
            for entry in reversed(contents.entries):
                if entry.key == key:
                    return entry
        return None

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

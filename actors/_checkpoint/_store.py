"""The Store protocol, and MemoryStore, the store that lives in one process."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from .._exceptions import UnknownRunError
from ._records import Entry, RunInfo, valid_run_id


@dataclasses.dataclass(frozen=True, slots=True)
class JournalContents:
    """What a run's journal holds: its readable entries, in order, and the rest.

    ``corrupt`` counts records that were damaged (they are misses).
    """

    run: RunInfo
    entries: tuple[Entry, ...]
    corrupt: int = 0


@runtime_checkable
class Store(Protocol):
    """Where durable runs keep their run records and journals.

    Methods are synchronous and may block on I/O: the executor calls them in
    a worker thread (``trio.to_thread.run_sync``), never on the event loop,
    and never two at once for the same run. A store may be shared by several
    runs, threads and (for stores on disk) processes at once. A store whose
    methods never block may say so with a class attribute ``blocking =
    False``: it is then called inline, on the event loop.

    Promises every implementation keeps:

    - **Atomic writes**: ``begin_run``, ``append`` and ``finish_run`` either
      happen entirely or not at all, even if the process is killed midway.
      What ``append`` wrote is durable once it returns.
    - **Reads never trust the data**: a damaged or tampered record is skipped
      (counted in ``JournalContents.corrupt`` where it belongs to a journal),
      never raised, never executed. Run lookups raise only
      :class:`UnknownRunError`.
    - **Writers do not disturb each other**: runs are independent; two
      writers never damage each other's records.

    Write methods may raise any exception (disk full, permission); the
    executor reports it as ``checkpoint_failed`` and runs on unrecorded.
    """

    def begin_run(self, run: RunInfo) -> None:
        """Record that *run* started (its status is ``"running"``)."""
        ...

    def append(self, run_id: str, entries: Sequence[Entry]) -> None:
        """Add *entries* to the journal of *run_id*, all or none."""
        ...

    def finish_run(self, run_id: str, status: str, stats: Mapping[str, int]) -> None:
        """Record that *run_id* ended with *status*."""
        ...

    def get_run(self, run_id: str) -> RunInfo:
        """Return the run *run_id*; raise :class:`UnknownRunError` if unreadable."""
        ...

    def latest_run(self, pipeline: str) -> RunInfo:
        """Return the run of *pipeline* that started last.

        Raises :class:`UnknownRunError` if the store holds no readable run of it.
        """
        ...

    def list_runs(self, pipeline: str | None = None) -> list[RunInfo]:
        """Return every readable run (of *pipeline*, if given), oldest first."""
        ...

    def read_journal(self, run_id: str) -> JournalContents:
        """Return the journal of *run_id*.

        Raises :class:`UnknownRunError` if the run or its journal cannot be read.
        """
        ...

    def find(self, key: str) -> Entry | None:
        """Return a readable entry with *key* from any run (latest first), or None."""
        ...

    def prune(self, older_than_s: float, *, now: float | None = None) -> list[str]:
        """Delete runs that started more than *older_than_s* seconds before *now*.

        Returns the ids of the runs deleted. *now* defaults to the current time.
        """
        ...


class MemoryStore:
    """A store in this process's memory: for tests, and caching within one process.

    Thread-safe; nothing survives the process. Entries are kept as objects,
    so nothing is serialised or checked on the way. Its methods never block,
    so the executor calls them inline (``blocking = False``): under a
    virtual clock, time never moves while it records.
    """

    blocking = False
    """Never blocks: called on the event loop, not in a worker thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, RunInfo] = {}
        self._journals: dict[str, list[Entry]] = {}
        self._keys: dict[str, Entry] = {}

    def begin_run(self, run: RunInfo) -> None:
        """Record that *run* started."""
        if not valid_run_id(run.run_id):
            raise ValueError(f"invalid run id {run.run_id!r}")
        with self._lock:
            self._runs[run.run_id] = run
            self._journals.setdefault(run.run_id, [])

    def append(self, run_id: str, entries: Sequence[Entry]) -> None:
        """Add *entries* to the journal of *run_id*."""
        with self._lock:
            if run_id not in self._journals:
                raise UnknownRunError(f"no run {run_id!r} in this store")
            self._journals[run_id].extend(entries)
            for entry in entries:
                self._keys[entry.key] = entry

    def finish_run(self, run_id: str, status: str, stats: Mapping[str, int]) -> None:
        """Record that *run_id* ended with *status*."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise UnknownRunError(f"no run {run_id!r} in this store")
            self._runs[run_id] = dataclasses.replace(
                run, status=status, finished_at=time.time(), stats=dict(stats)
            )

    def get_run(self, run_id: str) -> RunInfo:
        """Return the run *run_id*."""
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise UnknownRunError(f"no run {run_id!r} in this store")
        return run

    def latest_run(self, pipeline: str) -> RunInfo:
        """Return the run of *pipeline* that started last."""
        runs = self.list_runs(pipeline)
        if not runs:
            raise UnknownRunError(f"no run of pipeline {pipeline!r} in this store")
        return runs[-1]

    def list_runs(self, pipeline: str | None = None) -> list[RunInfo]:
        """Return every run (of *pipeline*, if given), oldest first."""
        with self._lock:
            runs = list(self._runs.values())
        return sorted(
            (r for r in runs if pipeline is None or r.pipeline == pipeline),
            key=lambda r: (r.started_at, r.run_id),
        )

    def read_journal(self, run_id: str) -> JournalContents:
        """Return the journal of *run_id*."""
        run = self.get_run(run_id)
        with self._lock:
            entries = tuple(self._journals.get(run_id, ()))
        return JournalContents(run, entries)

    def find(self, key: str) -> Entry | None:
        """Return the latest entry with *key*, from any run, or None."""
        with self._lock:
            return self._keys.get(key)

    def prune(self, older_than_s: float, *, now: float | None = None) -> list[str]:
        """Delete runs that started more than *older_than_s* seconds before *now*."""
        limit = (time.time() if now is None else now) - older_than_s
        with self._lock:
            gone = [i for i, r in self._runs.items() if r.started_at < limit]
            for run_id in gone:
                del self._runs[run_id]
                self._journals.pop(run_id, None)
            self._keys = {k: e for k, e in self._keys.items() if e.run_id in self._runs}
        return gone

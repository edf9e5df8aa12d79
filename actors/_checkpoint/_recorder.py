"""The recorder: journals a run's unit successes into a store, off the event loop."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from ._records import Entry, RunInfo

if TYPE_CHECKING:
    from ._store import Store

FLUSH_DELAY_S = 0.05
"""A unit's success reaches the store at most about this long after it is recorded.

The delay batches the units that finish close together into one write; a
write already under way adds its own duration. A crash loses at most the
units recorded in this window (and those being written): they run again on
resume.
"""

CLOSE_TIMEOUT_S = 10.0
"""How long closing the recorder may wait for its last write and the run's status."""

FailureReport = Callable[[str, Exception], None]
"""Called with the store operation that failed and its exception."""


class Recorder:
    """Collects one run's unit successes and writes them to a store in batches.

    :meth:`record` never blocks and never raises. The first store error
    (disk full, permission, a broken database) is reported once through the
    failure callback; the run then goes on unrecorded.
    """

    __slots__ = (
        "_failed",
        "_flush_delay_s",
        "_pending",
        "_report",
        "_status",
        "_store",
        "_wake",
        "run",
        "written",
    )

    def __init__(
        self,
        store: Store,
        run: RunInfo,
        report: FailureReport,
        flush_delay_s: float = FLUSH_DELAY_S,
    ) -> None:
        self._store = store
        self.run = run
        self._report = report
        self._flush_delay_s = flush_delay_s
        self._pending: list[Entry] = []
        self._wake = trio.Event()
        self._failed = False
        self._status: tuple[str, dict[str, int]] | None = None
        self.written = 0
        """Entries the store has confirmed."""

    @property
    def failed(self) -> bool:
        """True once the store failed: nothing more is recorded."""
        return self._failed

    def record(self, entry: Entry) -> None:
        """Queue *entry* for the next write; never blocks, never raises."""
        if self._failed:
            return
        self._pending.append(entry)
        self._wake.set()

    def set_status(self, status: str, stats: Mapping[str, int]) -> None:
        """Set the status the run is given when the recorder closes."""
        self._status = (status, dict(stats))

    def _fail(self, operation: str, exc: Exception) -> None:
        if not self._failed:
            self._failed = True
            self._pending.clear()
            self._report(operation, exc)

    async def _call(
        self, operation: str, function: Callable[[], None], *, abandon: bool = False
    ) -> None:
        if self._failed:
            return
        try:
            await trio.to_thread.run_sync(function, abandon_on_cancel=abandon)
        except Exception as exc:
            self._fail(operation, exc)

    async def _begin(self) -> None:
        await self._call("begin_run", lambda: self._store.begin_run(self.run))

    async def _flush(self, *, abandon: bool = False) -> None:
        """Write what is pending as one batch."""
        batch, self._pending = self._pending, []
        if not batch or self._failed:
            return
        run_id = self.run.run_id
        await self._call(
            "append", lambda: self._store.append(run_id, batch), abandon=abandon
        )
        if not self._failed:
            self.written += len(batch)

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await trio.sleep(self._flush_delay_s)
            await self._flush()

    async def _close(self) -> None:
        """Write what is left and the run's status; called shielded."""
        await self._flush(abandon=True)
        status, stats = self._status or ("cancelled", {})
        run_id = self.run.run_id
        await self._call(
            "finish_run",
            lambda: self._store.finish_run(run_id, status, stats),
            abandon=True,
        )


@asynccontextmanager
async def open_recorder(
    store: Store,
    *,
    run_id: str,
    pipeline: str,
    report: FailureReport,
    flush_delay_s: float = FLUSH_DELAY_S,
) -> AsyncIterator[Recorder]:
    """Record a run in *store* for as long as the block runs.

    Entering records the run's start (in a worker thread; this is a
    checkpoint). Inside, a background task writes recorded units within
    :data:`FLUSH_DELAY_S`. Leaving, whatever the reason (cancellation
    included), writes every pending unit and the run's status, shielded for
    at most :data:`CLOSE_TIMEOUT_S`. Store errors never raise: *report* hears
    of the first one.
    """
    if not (math.isfinite(flush_delay_s) and flush_delay_s >= 0):
        raise ValueError(f"flush_delay_s must be finite and >= 0, got {flush_delay_s}")
    run = RunInfo(run_id, pipeline, time.time())
    recorder = Recorder(store, run, report, flush_delay_s)
    await recorder._begin()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(recorder._flush_loop, name="checkpoint-recorder")
            try:
                yield recorder
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.move_on_after(CLOSE_TIMEOUT_S) as scope:
            scope.shield = True
            await recorder._close()
        if scope.cancelled_caught:
            recorder._fail(
                "finish_run",
                TimeoutError(f"the store did not answer within {CLOSE_TIMEOUT_S:g} s"),
            )

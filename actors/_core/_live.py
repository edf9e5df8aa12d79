"""Live consumption of a run by its caller: item taps and progress taps.

:meth:`PipelineExecutor.open_run` gives the caller a :class:`LiveRun`. The
kernel publishes into its :class:`Live` hub: each item a stream produces or
a fan-out finishes (:meth:`Live.publish`, then :meth:`Live.taken` while a
tap has yet to take it: item taps backpressure the run), each
``ctx.emit(value)`` (:meth:`Live.emit`, never blocks), and each stage's
end (:meth:`Live.stage_ended`). A run started by ``execute`` has no hub and
pays nothing.

An item tap is a cursor into its stage's feed: the items the stage keeps for
its result anyway, so a tap opened late replays them without a copy. The
feed holds plain tuples; a :class:`TapItem` is built only for a tap reading
it, so an untapped stage pays an append per item.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

import trio

from .._definition import ExecutionPattern
from .._results import PipelineResult, PipelineStatus, StageResult, StageStatus

if TYPE_CHECKING:
    from .._graph import Node
    from ._attempts import Outcome
    from ._state import RunState


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class TapItem:
    """One item of a stage, as an item tap delivers it."""

    stage: str
    """The stage's id."""
    index: int
    """The item's position: its producer's index (0 for a plain stage)."""
    output: Any
    """What the stage produced for it (``None`` for a failed item)."""
    error: str | None = None
    """Why the item failed (under ``item_failures="collect"``), else ``None``."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """One value a stage published with ``ctx.emit(value)``."""

    stage: str
    """The stage's id."""
    item: int | None
    """The fan-out item that emitted it (``None``: the stage itself)."""
    value: Any
    """What was emitted."""
    at_ms: float
    """When, in milliseconds since the run started."""


@dataclass(eq=False, slots=True)
class _Feed:
    """The published items of one stage and the item taps reading them."""

    stage: str
    keep: bool
    """Items are kept for replay (the stage collects its outputs)."""
    items: list[tuple[int, Any, str | None]]
    """``(index, output, error)`` of each published item."""
    base: int = 0
    """The position of ``items[0]``: items every tap read may be dropped."""
    published: int = 0
    ended: bool = False
    taps: list[ItemTap] | None = None
    readers: trio.lowlevel.ParkingLot | None = None
    writers: trio.lowlevel.ParkingLot | None = None

    @property
    def end(self) -> int:
        return self.base + len(self.items)

    def wake_readers(self) -> None:
        if self.readers is not None:
            self.readers.unpark_all()

    def wake_writers(self) -> None:
        if self.writers is not None:
            self.writers.unpark_all()

    def trim(self) -> None:
        """Without replay, drop what every tap has read."""
        if self.keep:
            return
        low = min((tap._position for tap in self.taps or ()), default=self.end)
        del self.items[: low - self.base]
        self.base = low


class Live:
    """The hub of a run opened with ``open_run``: what the kernel publishes into."""

    __slots__ = ("_done", "_feeds", "_progress", "_state", "result")

    def __init__(self, state: RunState) -> None:
        self._state = state
        self._feeds = [
            _Feed(node.id, node.definition.collect, []) for node in state.graph.nodes
        ]
        self._progress: list[ProgressTap] = []
        self._done = trio.Event()
        self.result: PipelineResult | None = None

    def publish(
        self, node: Node, index: int, output: Any, error: str | None = None
    ) -> bool:
        """Publish an item of *node*; return whether a tap has yet to take it.

        The caller then awaits :meth:`taken`, so that taps backpressure it.
        """
        feed = self._feeds[node.index]
        feed.published += 1
        if feed.taps:
            feed.items.append((index, output, error))
            feed.wake_readers()
            return True
        if feed.keep:
            feed.items.append((index, output, error))
        return False

    def finished(self, node: Node, index: int, outcome: Outcome) -> bool:
        """Publish a fan-out item that ended: its output, or its error.

        Returns what :meth:`publish` returns.
        """
        if outcome.ok:
            return self.publish(node, index, outcome.output)
        return self.publish(node, index, None, outcome.error)

    async def taken(self, node: Node) -> None:
        """Wait until every open tap of *node* has taken what it published.

        A checkpoint only while a tap lags (then cancellable: the items stay
        published).
        """
        feed = self._feeds[node.index]
        mine = feed.end
        while feed.taps and any(tap._position < mine for tap in feed.taps):
            if feed.writers is None:
                feed.writers = trio.lowlevel.ParkingLot()
            await feed.writers.park()
        feed.trim()

    def emit(self, node: Node, item: int | None, value: Any) -> None:
        """Hand *value* to every progress tap of *node*; never blocks the run.

        From a worker thread of the stage (``trio.to_thread``) it hands the
        value over through the run's event loop.
        """
        if not self._progress:
            return
        try:
            trio.lowlevel.current_task()
        except RuntimeError:  # not in the run's thread (trio>=0.25 has no in_trio_run)
            trio.from_thread.run_sync(self.emit, node, item, value)
            return
        progress = Progress(
            stage=node.id, item=item, value=value, at_ms=self._state.now_ms()
        )
        for tap in self._progress:
            if tap.stage is None or tap.stage == node.id:
                tap._push(progress)

    def stage_ended(self, node: Node, result: StageResult[Any]) -> None:
        """*node* has its final result: its taps end after what was published.

        A stage that published nothing (a plain stage, or one restored whole
        from a checkpoint) publishes its output now: a plain stage's as item
        0, a fan-out's or stream's list item by item.
        """
        feed = self._feeds[node.index]
        if not feed.published and result.status is StageStatus.SUCCEEDED:
            output = result.output
            if node.generator or node.definition.pattern is ExecutionPattern.FAN_OUT:
                pairs = enumerate(output) if isinstance(output, list) else ()
            else:
                pairs = enumerate((output,))
            if feed.keep or feed.taps:
                feed.items.extend((i, o, None) for i, o in pairs)
        feed.ended = True
        feed.wake_readers()
        for tap in self._progress:
            if tap.stage == node.id:
                tap._end()

    async def drive(self, go: Callable[[], Awaitable[PipelineResult]]) -> None:
        """Run the run (*go*); then end every tap. Propagates what *go* raises."""
        try:
            self.result = await go()
        finally:
            for feed in self._feeds:
                feed.ended = True
                feed.wake_readers()
            for tap in self._progress:
                tap._end()
            self._done.set()

    async def ended(self) -> None:
        """Wait until the run has ended, with a result or not. A checkpoint."""
        await self._done.wait()

    # -- for LiveRun -------------------------------------------------------

    def _feed_of(self, stage: str) -> tuple[Node, _Feed]:
        for node in self._state.graph.nodes:
            if node.id == stage:
                return node, self._feeds[node.index]
        known = ", ".join(repr(node.id) for node in self._state.graph.nodes)
        raise ValueError(
            f"pipeline {self._state.graph.name!r} has no stage {stage!r} to tap "
            f"(its stages: {known})"
        )


@final
class ItemTap:
    """An async iterator over a stage's items (:class:`TapItem`), in publishing order.

    Lossless: the stage waits until the tap has taken each item. Replays
    the items published before it opened (unless the stage has
    ``collect=False``), and ends once the stage has ended (or the run).
    Each ``__anext__`` is a checkpoint.
    """

    __slots__ = ("_closed", "_feed", "_position")

    def __init__(self, feed: _Feed) -> None:
        self._feed = feed
        self._position = feed.base if feed.keep else feed.end
        self._closed = False

    def __aiter__(self) -> ItemTap:
        return self

    async def __anext__(self) -> TapItem:
        feed = self._feed
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._position < feed.end:
                await trio.lowlevel.checkpoint()
                if self._closed:
                    raise StopAsyncIteration
                index, output, error = feed.items[self._position - feed.base]
                self._position += 1
                feed.wake_writers()
                return TapItem(
                    stage=feed.stage, index=index, output=output, error=error
                )
            if feed.ended:
                await trio.lowlevel.checkpoint()
                raise StopAsyncIteration
            if feed.readers is None:
                feed.readers = trio.lowlevel.ParkingLot()
            await feed.readers.park()

    def _close(self) -> None:
        self._closed = True
        feed = self._feed
        if feed.taps is not None and self in feed.taps:
            feed.taps.remove(self)
        feed.wake_writers()
        feed.wake_readers()
        feed.trim()


@final
class ProgressTap:
    """An async iterator over :class:`Progress` values; lossy, never stalls a stage.

    Holds up to *buffer* values; when full, the oldest is dropped and
    counted in :attr:`dropped`. Ends (after what it holds) when its stage
    ends, or the run for a tap of every stage. Each ``__anext__`` is a
    checkpoint.
    """

    __slots__ = ("_ended", "_lot", "_queue", "dropped", "stage")

    def __init__(self, stage: str | None, buffer: int) -> None:
        self.stage = stage
        """The stage whose values it takes (``None``: every stage)."""
        self.dropped = 0
        """How many values were dropped because the reader was behind."""
        self._queue: deque[Progress] = deque(maxlen=buffer)
        self._ended = False
        self._lot = trio.lowlevel.ParkingLot()

    def __aiter__(self) -> ProgressTap:
        return self

    async def __anext__(self) -> Progress:
        while True:
            if self._queue:
                await trio.lowlevel.checkpoint()
                if self._queue:
                    return self._queue.popleft()
                continue
            if self._ended:
                await trio.lowlevel.checkpoint()
                raise StopAsyncIteration
            await self._lot.park()

    def _push(self, progress: Progress) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # the deque drops the oldest
        self._queue.append(progress)
        self._lot.unpark_all()

    def _end(self) -> None:
        self._ended = True
        self._lot.unpark_all()


@final
class LiveRun:
    """A run in progress, from :meth:`PipelineExecutor.open_run`.

    Tap its items and progress while it goes; leaving the ``open_run`` block
    waits for it to end, and :attr:`result` then holds its result.
    """

    __slots__ = ("_live", "_state")

    def __init__(self, state: RunState, live: Live) -> None:
        self._state = state
        self._live = live

    @property
    def run_id(self) -> str:
        """The run's id (as in its events and its result)."""
        return self._state.run_id

    @property
    def done(self) -> bool:
        """Whether the run has ended."""
        return self._live._done.is_set()

    @property
    def result(self) -> PipelineResult:
        """The run's result.

        Raises:
            RuntimeError: The run has not ended yet (leave the ``open_run``
                block, or ``await run.wait()``, first), or it was cancelled
                by the caller or interrupted and has no result.
        """
        result = self._live.result
        if result is None:
            why = "has not ended yet" if not self.done else "ended without a result"
            raise RuntimeError(
                f"run {self.run_id} of pipeline {self._state.graph.name!r} {why}"
            )
        return result

    async def wait(self) -> PipelineResult:
        """Wait until the run has ended and return its result. A checkpoint."""
        await self._live.ended()
        return self.result

    def cancel(self, reason: str = "cancelled by the caller") -> None:
        """Cancel the run; its stages say ``cancelled: <reason>``.

        Not a checkpoint, and it does not wait: the run ends with status
        ``cancelled`` (and a result) once every stage has stopped. Does
        nothing once every stage has its final result.
        """
        self._state.cancel(PipelineStatus.CANCELLED, reason)

    @asynccontextmanager
    async def tap(self, stage: str) -> AsyncIterator[ItemTap]:
        """Take every item of *stage* as it comes: a lossless tap.

        Yields an :class:`ItemTap` of :class:`TapItem`\\ s: each item a stream
        produces, each item a fan-out finishes (failed ones too under
        ``item_failures="collect"``, with their error), or a plain stage's
        output as item 0. Items published before the tap opened come first.
        The stage waits for the tap to take each item (backpressure);
        leaving the block detaches the tap and never cancels the run.

        Raises:
            ValueError: The pipeline has no stage *stage* (raised on entering).
        """
        _, feed = self._live._feed_of(stage)
        tap = ItemTap(feed)
        if feed.taps is None:
            feed.taps = []
        feed.taps.append(tap)
        try:
            yield tap
        finally:
            tap._close()

    @asynccontextmanager
    async def progress(
        self, stage: str | None = None, *, buffer: int = 128
    ) -> AsyncIterator[ProgressTap]:
        """Take what stages publish with ``ctx.emit(value)``: a lossy tap.

        Yields a :class:`ProgressTap` of :class:`Progress` values from
        *stage* (default: every stage), from now on. It holds up to *buffer*
        values; a reader that falls behind loses the oldest (counted in
        ``tap.dropped``), so a slow reader never slows the run.

        Raises:
            ValueError: No stage *stage*, or *buffer* < 1 (raised on entering).
        """
        ended = False
        if stage is not None:
            ended = self._live._feed_of(stage)[1].ended
        if buffer < 1:
            raise ValueError(f"a progress tap needs buffer >= 1, got {buffer!r}")
        tap = ProgressTap(stage, buffer)
        if ended or self.done:
            tap._end()
        else:
            self._live._progress.append(tap)
        try:
            yield tap
        finally:
            tap._end()
            if tap in self._live._progress:
                self._live._progress.remove(tap)

"""Streaming stages: drive an async generator, hand its items to the fan-outs it feeds.

A producer is a stage whose function is an async generator. The library
iterates it (never the user), in one task, and ``aclose()``\\ s it in a
``finally`` of that same task: the generator's ``yield`` never suspends
inside a cancel scope or nursery of ours (the shape of
``trio.as_safe_channel``). Each FAN_OUT it feeds takes items over an
unbuffered channel, one per free slot, so for a producer P feeding a FAN_OUT
C, items produced but not finished by C never exceed
``C.max_concurrency + P.stream_buffer + 1``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from .._context import current_emitter, stream_cursor
from .._events import StageStarted
from .._exceptions import StageTimeoutError, StreamReplayMismatch
from .._sketch import DurationSketch
from .._util import describe
from ._attempts import Outcome, attempts, back_off, failed
from ._fan_out import collected_outcome, item_ended
from ._state import new_result

if TYPE_CHECKING:
    from .._graph import Node
    from ._resume import StreamJournal
    from ._state import RunState, StageState
    from ._wiring import Item, ItemReceive, ItemSend


async def produce(
    run: RunState,
    node: Node,
    state: StageState,
    value: Any,
    outlets: Sequence[ItemSend],
    *,
    journal: StreamJournal | None = None,
) -> Outcome:
    """Run a streaming stage to the end of its stream; return its outcome.

    Each item is handed to every consumer in turn, so the producer moves at
    the pace of the slowest; a consumer that stopped taking items is
    dropped. The outcome's output is every item in production order (with
    ``collect=False``: ``None``, the count is in the profile). A generator
    that raises, or a timeout, fails it with the items so far in
    ``metadata["items"]``. Cancellation closes the generator (its
    ``finally`` runs) and propagates. Closes *outlets* whatever happens.

    In a durable run *journal* records each item as it is produced; the
    items it restored are delivered first and count as delivered (the
    generator starts at ``stream_cursor`` = their number), and a stream
    whose end it restored is not run at all.
    """
    definition = node.definition
    clock = run.clock
    keep = definition.collect
    kept: list[Any] = []
    state.items = 0
    state.blocked_ms = 0.0
    state.attempt_ms = []
    state.started_at_ms = run.now_ms()
    begin = clock.current_time()
    consumers = Consumers(outlets)
    digests: list[bytes] | None = [] if definition.verify_replay else None

    def produced(item: Any) -> int:
        if state.first_item_ms is None:
            state.first_item_ms = run.now_ms()
        index = state.items or 0
        state.items = index + 1
        if keep:
            kept.append(item)
        if digests is not None:
            digests.append(digest(item))
        if journal is not None:
            journal.record(index, item)
        return index

    live = run.live
    if live is not None:
        current_emitter.set(partial(live.emit, node, None))

    async def deliver(pair: Item) -> None:
        await consumers.send(pair)
        if live is not None and live.publish(node, *pair):  # after the consumers
            await live.taken(node)

    retry = node.retry
    buffer = definition.stream_buffer or 0
    whole = definition.stream_timeout_ms
    error: Exception | None = None
    try:
        with trio.CancelScope(
            deadline=begin + whole / 1000 if whole is not None else float("inf")
        ) as scope:
            if journal is not None:
                # Journaled by the resumed run: delivered first, as if by an
                # earlier attempt.
                for item in journal.restored:
                    await deliver((produced(item), item))
            attempt = 0
            while journal is None or not journal.complete:
                attempt += 1
                delivered = state.items or 0
                _started(run, node, state, attempt)
                # Delivered items are committed: a retry starts after them.
                stream_cursor.set(delivered)
                replay = Replay(
                    0 if definition.resumable else delivered, digests, produced
                )
                attempt_begin = clock.current_time()
                try:
                    # Attempt hooks (tracing, the testing kit) wrap the whole
                    # attempt in this task; a read-ahead task inherits them.
                    with _hooks(run, node, attempt):
                        agen = node.call(value, run.context)
                        if buffer == 0:
                            error = await _pull(
                                run, node, state, agen, replay, put=deliver
                            )
                        else:
                            error = await _read_ahead(
                                run, node, state, agen, replay, deliver=deliver
                            )
                finally:
                    state.attempt_ms.append(
                        round((clock.current_time() - attempt_begin) * 1000, 6)
                    )
                if (
                    error is None
                    or isinstance(error, StreamReplayMismatch)
                    or attempt >= retry.max_attempts
                    or not retry.should_retry(describe(error), error)
                ):
                    break
                await back_off(
                    run,
                    node,
                    state,
                    attempt=attempt,
                    # The executor's rng: a seeded run repeats its delays.
                    delay_ms=node.retry.delay_ms(attempt + 1, run.rng),
                    error=describe(error),
                    error_type=type(error).__name__,
                )
        if scope.cancelled_caught:
            error = StageTimeoutError(
                f"stage {node.id!r}: stream timed out after {whole:g} ms "
                f"({state.items} items)"
            )
    finally:
        for outlet in outlets:
            outlet.close()
    if error is not None:
        outcome = failed(error)
        outcome.returned = new_result(
            success=False,
            stage_name=node.id,
            metadata={"items": kept if keep else state.items},
        )
        return outcome
    return Outcome(True, output=kept if keep else None)


def _hooks(run: RunState, node: Node, attempt: int) -> AbstractContextManager[None]:
    """The attempt hooks' context around one attempt of a generator."""
    if not run.dispatch.attempt_hooks:
        return contextlib.nullcontext()
    return run.dispatch.around_attempt(
        run.run_id, run.graph.name, node.id, None, attempt
    )


class Consumers:
    """The fan-outs a stream feeds: each item goes to each, in turn.

    A consumer that stopped taking items is dropped. Several tasks may send
    at once (a stream-fed fan-out's workers) and find the same one stopped:
    dropping is rebuilding the tuple without it, so doing it twice is
    harmless, and a send in progress iterates the tuple it started with.
    """

    __slots__ = ("open",)

    def __init__(self, outlets: Sequence[ItemSend]) -> None:
        self.open = tuple(outlets)

    async def send(self, pair: Item) -> None:
        """Send *pair* to each consumer still taking items, waiting for each."""
        for outlet in self.open:
            try:
                await outlet.send(pair)
            except trio.BrokenResourceError:
                self.open = tuple(o for o in self.open if o is not outlet)


def digest(item: Any) -> bytes:
    """Digest *item*'s ``repr()``, to compare a replayed item with a delivered one."""
    return hashlib.blake2b(repr(item).encode(), digest_size=16).digest()


@dataclass(eq=False, slots=True)
class Replay:
    """What one attempt of a generator must replay before it produces new items."""

    skip: int
    """How many leading items to discard (delivered by earlier attempts)."""
    digests: list[bytes] | None
    """Digests of the delivered items, with ``verify_replay``."""
    produced: Callable[[Any], int]
    """Records a new item; returns its index."""


def _started(run: RunState, node: Node, state: StageState, attempt: int) -> None:
    state.attempts += 1
    if run.dispatch.stage_started:
        started = StageStarted(
            run_id=run.run_id,
            pipeline=run.graph.name,
            stage_id=node.id,
            attempt=attempt,
            at_ms=run.now_ms(),
        )
        run.dispatch.emit("stage_started", started)


async def _pull(
    run: RunState,
    node: Node,
    state: StageState,
    agen: AsyncGenerator[Any, None],
    replay: Replay,
    *,
    put: Callable[[Item], Awaitable[None]],
) -> Exception | None:
    """Iterate *agen* in this task, passing each item to *put*; always close it.

    Returns the exception the generator raised (or its per-item timeout),
    ``None`` when it ended. The time *put* blocks is backpressure.
    """
    clock = run.clock
    timeout = node.timeout_s
    index = 0
    error: Exception | None = None
    try:
        while True:
            try:
                if timeout is None:
                    item = await agen.__anext__()
                else:
                    with trio.move_on_after(timeout) as wait:
                        item = await agen.__anext__()
                    if wait.cancelled_caught:
                        error = StageTimeoutError(
                            f"stage {node.id!r} timed out after "
                            f"{timeout * 1000:g} ms waiting for item {state.items}"
                        )
                        break
            except StopAsyncIteration:
                break
            except Exception as exc:
                error = exc
                break
            if index < replay.skip:
                # Delivered by an earlier attempt: discarded, maybe checked.
                known = replay.digests
                if known is not None and digest(item) != known[index]:
                    error = StreamReplayMismatch(
                        f"stage {node.id!r}: item {index} differs from the one "
                        "delivered before this attempt (verify_replay)"
                    )
                    break
                index += 1
                continue
            pause = clock.current_time()
            await put((replay.produced(item), item))
            assert state.blocked_ms is not None
            state.blocked_ms += (clock.current_time() - pause) * 1000
            index += 1
    finally:
        # Bounded, and shielded so that a cancelled producer's own finally
        # still runs: what the caller of a generator owes it.
        with trio.CancelScope(shield=True, deadline=clock.current_time() + run.grace_s):
            try:
                await agen.aclose()
            except Exception as exc:  # its cleanup failed
                if error is None:
                    error = exc
    return error


async def _read_ahead(
    run: RunState,
    node: Node,
    state: StageState,
    agen: AsyncGenerator[Any, None],
    replay: Replay,
    *,
    deliver: Callable[[Item], Awaitable[None]],
) -> Exception | None:
    """Like :func:`_pull`, with up to ``stream_buffer`` items read ahead.

    A reader task iterates the generator into a channel of ``buffer - 1``
    slots (the reader itself holds one more); this task delivers.
    """
    buffer = node.definition.stream_buffer or 0
    send: trio.MemorySendChannel[Item]
    receive: trio.MemoryReceiveChannel[Item]
    send, receive = trio.open_memory_channel(buffer - 1)
    errors: list[Exception] = []

    async def reader() -> None:
        async with send:
            error = await _pull(run, node, state, agen, replay, put=send.send)
            if error is not None:
                errors.append(error)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        async with receive:
            async for pair in receive:
                await deliver(pair)
    return errors[0] if errors else None


async def consume(
    run: RunState,
    node: Node,
    state: StageState,
    inlet: ItemReceive,
    outlets: Sequence[ItemSend],
) -> tuple[Outcome, bool]:
    """Run a FAN_OUT on items as they arrive; return (outcome, stream ended).

    Each of ``max_concurrency`` workers takes an item only when it is free
    (``None``: a task per item, no backpressure). Outputs are kept by the
    producer's index, and handed on in finishing order to the fan-outs this
    one feeds. Item failures follow ``item_failures`` as for a list; under
    ``"fail"`` the first one stops the stage before the stream ends (the
    outcome says so, and the stream is not drained). Cancellation
    propagates. Closes *inlet* and *outlets* whatever happens.
    """
    definition = node.definition
    clock = run.clock
    keep = definition.collect
    collect = definition.item_failures == "collect"
    outputs: dict[int, Any] = {}
    failures: list[tuple[int, Outcome]] = []
    collected: list[tuple[int, Outcome]] = []
    state.item_ms = DurationSketch()
    state.items = 0
    state.starved_ms = 0.0
    if collect:
        state.item_errors = {}
    consumers = Consumers(outlets)

    def arrived(index: int) -> None:
        state.items = max(state.items or 0, index + 1)
        if state.first_item_ms is None:
            now = run.now_ms()
            state.first_item_ms = state.ready_at_ms = state.started_at_ms = now
            if run.dispatch.stage_started:
                started = StageStarted(
                    run_id=run.run_id,
                    pipeline=run.graph.name,
                    stage_id=node.id,
                    attempt=1,
                    at_ms=now,
                )
                run.dispatch.emit("stage_started", started)

    async def one(index: int, item: Any, cancel_scope: trio.CancelScope) -> None:
        available = clock.current_time()
        if run.durable is None:
            outcome = await attempts(run, node, state, item, index)
        else:
            outcome = await run.durable.item(node, state, item, index)
        item_ended(run, node, state, index, outcome, available=available)
        if outcome.ok or collect:
            output = outcome.output if outcome.ok else None
            if not outcome.ok:
                collected.append((index, outcome))
            if keep:
                outputs[index] = output
            if consumers.open:  # a frame less per item for a fan-out feeding no one
                await consumers.send((index, output))
            live = run.live
            if live is not None and live.finished(node, index, outcome):
                await live.taken(node)
        else:
            failures.append((index, outcome))
            cancel_scope.cancel()

    async def starving_receive() -> Item | None:
        wait = clock.current_time()
        try:
            return await inlet.receive()
        except trio.EndOfChannel:
            return None
        finally:
            assert state.starved_ms is not None
            state.starved_ms += (clock.current_time() - wait) * 1000

    async def worker(cancel_scope: trio.CancelScope) -> None:
        while not failures:
            # starving_receive, inlined: a coroutine frame less per item.
            wait = clock.current_time()
            try:
                index, item = await inlet.receive()
            except trio.EndOfChannel:
                return
            finally:
                assert state.starved_ms is not None
                state.starved_ms += (clock.current_time() - wait) * 1000
            arrived(index)
            await one(index, item, cancel_scope)

    limit = definition.max_concurrency
    try:
        with inlet:
            async with trio.open_nursery() as nursery:
                if limit is None:
                    while not failures:
                        pair = await starving_receive()
                        if pair is None:
                            break
                        arrived(pair[0])
                        nursery.start_soon(one, *pair, nursery.cancel_scope)
                else:
                    for _ in range(limit):
                        nursery.start_soon(worker, nursery.cancel_scope)
    finally:
        for outlet in outlets:
            outlet.close()
    if state.started_at_ms is None:  # an empty stream
        state.ready_at_ms = state.started_at_ms = run.now_ms()
    if failures:
        index, outcome = failures[0]
        outcome.error = f"item {index}: {outcome.error}"
        return outcome, False
    count = state.items or 0
    listed: list[Any] = [outputs.get(i) for i in range(count)] if keep else []
    if collect:
        minimum = definition.min_successes
        if minimum is not None and minimum > count:
            state.item_errors = {
                i: o.error for i, o in sorted(collected, key=lambda p: p[0])
            }
            error = f"min_successes={minimum} but only {count} items arrived"
            return Outcome(False, error=error), True
        outcome = collected_outcome(
            state, minimum, listed if keep else [None] * count, collected
        )
        if outcome.ok and not keep:
            outcome.output = None
        return outcome, True
    return Outcome(True, output=listed if keep else None), True

"""Fan-out: the stage once per item, at most ``max_concurrency`` items at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from .._events import ItemFinished, StageStarted
from .._sketch import DurationSketch
from ._attempts import Outcome, attempts

if TYPE_CHECKING:
    from .._graph import Node
    from ._state import RunState, StageState


async def fan_out(
    run: RunState, node: Node, state: StageState, items: Sequence[Any]
) -> Outcome:
    """Run every item through the attempt loop; return the stage's outcome.

    Workers are spawned lazily, never more than the limit: live tasks stay
    bounded however long the list. The first item that fails (after its own
    retries) cancels its siblings and no new item starts. Cancellation of
    the stage cancels every item and propagates.
    """
    dispatch = run.dispatch
    count = len(items)
    state.items = count
    item_ms = state.item_ms = DurationSketch()
    state.started_at_ms = run.now_ms()
    if dispatch.stage_started:
        # The stage as a whole starts once; its items follow.
        started = StageStarted(
            run_id=run.run_id,
            pipeline=run.graph.name,
            stage_id=node.id,
            attempt=1,
            at_ms=state.started_at_ms,
            items=count,
        )
        dispatch.emit("stage_started", started)
    fan_begin = run.clock.current_time()
    outputs: list[Any] = [None] * count
    failures: list[tuple[int, Outcome]] = []
    work = iter(enumerate(items))

    async def worker(cancel_scope: trio.CancelScope) -> None:
        for index, item in work:
            if failures:
                return  # an item failed; its siblings take no new items
            if run.durable is None:
                outcome = await attempts(run, node, state, item, index)
            else:
                outcome = await run.durable.item(node, state, item, index)
            # How long this item waited for a concurrency slot.
            state.item_queued_ms += (outcome.begin - fan_begin) * 1000
            duration = (outcome.end - outcome.begin) * 1000
            item_ms.add(duration)
            if dispatch.item_finished:
                exc = outcome.exception
                event = ItemFinished(
                    run_id=run.run_id,
                    pipeline=run.graph.name,
                    stage_id=node.id,
                    item_index=index,
                    success=outcome.ok,
                    attempts=outcome.attempts,
                    duration_ms=round(duration, 6),
                    error=None if outcome.ok else outcome.error,
                    error_type=None if exc is None else type(exc).__name__,
                    at_ms=run.now_ms(),
                    exception=exc,
                )
                dispatch.emit("item_finished", event)
            if not outcome.ok:
                failures.append((index, outcome))
                cancel_scope.cancel()
                return
            outputs[index] = outcome.output

    limit = min(node.definition.max_concurrency or count, count)
    if limit:
        async with trio.open_nursery() as nursery:
            for _ in range(limit):
                nursery.start_soon(worker, nursery.cancel_scope)
    if failures:
        index, outcome = failures[0]
        outcome.error = f"item {index}: {outcome.error}"
        return outcome
    return Outcome(True, output=outputs)

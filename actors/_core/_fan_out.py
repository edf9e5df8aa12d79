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
    bounded however long the list. With ``item_failures="fail"``, the first
    item that fails (after its own retries) cancels its siblings and no new
    item starts; with ``"collect"``, a failed item cancels nothing (see
    :func:`collected_outcome`). Cancellation of the stage cancels every item and
    propagates.
    """
    dispatch = run.dispatch
    count = len(items)
    state.items = count
    state.item_ms = DurationSketch()
    definition = node.definition
    collect = definition.item_failures == "collect"
    if collect:
        state.item_errors = {}
        minimum = definition.min_successes
        if minimum is not None and minimum > count:
            # It could never succeed: say so rather than run every item.
            return Outcome(
                False,
                error=f"min_successes={minimum} but only {count} items arrived",
            )
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
    collected: list[tuple[int, Outcome]] = []
    work = iter(enumerate(items))

    async def worker(cancel_scope: trio.CancelScope) -> None:
        for index, item in work:
            if failures:
                return  # an item failed; its siblings take no new items
            if run.durable is None:
                outcome = await attempts(run, node, state, item, index)
            else:
                outcome = await run.durable.item(node, state, item, index)
            item_ended(run, node, state, index, outcome, available=fan_begin)
            if not (outcome.ok or collect):
                failures.append((index, outcome))
                cancel_scope.cancel()
                return
            if outcome.ok:
                outputs[index] = outcome.output
            else:
                collected.append((index, outcome))
            live = run.live
            if live is not None and live.finished(node, index, outcome):
                await live.taken(node)  # the caller's taps

    limit = min(definition.max_concurrency or count, count)
    if limit:
        async with trio.open_nursery() as nursery:
            for _ in range(limit):
                nursery.start_soon(worker, nursery.cancel_scope)
    if collect:
        return collected_outcome(state, definition.min_successes, outputs, collected)
    if failures:
        index, outcome = failures[0]
        outcome.error = f"item {index}: {outcome.error}"
        return outcome
    return Outcome(True, output=outputs)


def item_ended(
    run: RunState,
    node: Node,
    state: StageState,
    index: int,
    outcome: Outcome,
    *,
    available: float,
) -> None:
    """Account for one finished item (it could have started at *available*)."""
    # How long this item waited for a concurrency slot.
    state.item_queued_ms += (outcome.begin - available) * 1000
    duration = (outcome.end - outcome.begin) * 1000
    assert state.item_ms is not None
    state.item_ms.add(duration)
    dispatch = run.dispatch
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


SHOWN_ERRORS = 3
"""How many item errors a failed ``"collect"`` fan-out names in its error."""


def collected_outcome(
    state: StageState,
    minimum: int | None,
    outputs: list[Any],
    collected: list[tuple[int, Outcome]],
) -> Outcome:
    """Judge a ``"collect"`` fan-out whose items have all ended.

    It succeeds when at least *minimum* items succeeded (``None``: one, or
    none for an empty input), with ``None`` at each failed position. Else
    it fails, naming how many items failed and the first few errors (by
    index); the outputs of the items that succeeded travel on the outcome
    and end up in the result's ``metadata["partial"]``.
    """
    collected.sort(key=lambda pair: pair[0])
    errors = state.item_errors = {index: o.error for index, o in collected}
    count = len(outputs)
    succeeded = count - len(errors)
    if minimum is None:
        minimum = min(count, 1)
    if succeeded >= minimum:
        return Outcome(True, output=outputs)
    shown = "; ".join(
        f"item {index}: {error}" for index, error in list(errors.items())[:SHOWN_ERRORS]
    )
    more = len(errors) - SHOWN_ERRORS
    if more > 0:
        shown += f"; and {more} more"
    return Outcome(
        False,
        output=outputs,
        error=(
            f"{len(errors)} of {count} items failed, {succeeded} succeeded "
            f"(min_successes={minimum}): {shown}"
        ),
        exception=collected[0][1].exception,
    )

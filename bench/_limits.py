"""Named limits: what a limit that never binds costs a 100,000-item fan-out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from actors import PipelineContext, PipelineDefinition, PipelineExecutor
from actors.limits import RateLimit

from ._common import Row, interleaved, median, verdict
from ._fanout import fan_out, item

TARGET = 1.2
COUNT = 100_000
# Never binds: a rate and a burst no run of this size can reach.
NEVER = RateLimit(requests_per_second=1e12, burst=1e6)


async def limited_item(value: Any, context: PipelineContext[Any]) -> Any:
    """The bench's item (one checkpoint) inside ``ctx.limit``."""
    async with context.limit("api"):
        return await item(value, context)


async def two_checkpoints(value: Any, context: PipelineContext[Any]) -> Any:
    """The bench's item with one more checkpoint: the floor of any acquire.

    Acquiring a limit is always a checkpoint (a trip through trio's run
    loop), granted at once or not; this item pays for exactly that.
    """
    await trio.lowlevel.checkpoint()
    return await item(value, context)


async def _measure(quick: bool) -> list[Row]:
    plain = PipelineExecutor(log_events=False)
    limited = PipelineExecutor(log_events=False, limits={"api": NEVER})
    items = list(range(COUNT))

    def run_of(
        executor: PipelineExecutor, pipeline: PipelineDefinition
    ) -> Callable[[], Awaitable[object]]:
        async def go() -> None:
            result = await executor.execute(pipeline, items)
            assert result.success, result.stage_results

        return go

    samples = await interleaved(
        {
            "none": run_of(plain, fan_out()),
            "checkpoint": run_of(plain, fan_out_with(two_checkpoints)),
            "rate_limit=": run_of(limited, fan_out(rate_limit="api")),
            "ctx.limit": run_of(limited, fan_out_with(limited_item)),
        },
        3 if quick else 7,
    )
    base = median(samples["none"])
    rows = [
        Row(
            "limits",
            "100,000 items, limit 64, no named limit",
            f"{base / COUNT * 1e6:.2f} us/item",
            "report",
        )
    ]
    floor = median(samples["checkpoint"])
    rows.append(
        Row(
            "limits",
            "100,000 items, limit 64, no limit but one more checkpoint per item",
            f"{floor / COUNT * 1e6:.2f} us/item (+{(floor - base) / COUNT * 1e6:.2f}"
            f" us) -> {floor / base:.2f}x (the floor: an acquire is a checkpoint)",
            "report",
        )
    )
    for name in ("rate_limit=", "ctx.limit"):
        ours = median(samples[name])
        ratio = ours / base
        rows.append(
            Row(
                "limits",
                f"100,000 items, limit 64, a never-binding limit via {name}",
                f"{ours / COUNT * 1e6:.2f} us/item (+{(ours - base) / COUNT * 1e6:.2f}"
                f" us) -> {ratio:.2f}x",
                f"<= {TARGET}x",
                verdict(ratio <= TARGET),
            )
        )
    return rows


def fan_out_with(stage: Callable[..., Awaitable[Any]]) -> PipelineDefinition:
    """The bench fan-out pipeline with another item function."""
    definition = fan_out()
    return definition.model_copy(
        update={"stages": (definition.stages[0].model_copy(update={"stage": stage}),)}
    )


def run(quick: bool = False) -> list[Row]:
    """Measure the per-item cost of a limit that never binds."""
    return trio.run(_measure, quick)

"""Issue 2: fan-out of 100,000 items against a hand-written pool of 64 trio tasks."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import trio

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    RetryConfig,
    StageDefinition,
)

from ._common import Row, interleaved, median, verdict

TARGET = 1.5
LIMIT = 64


async def item(value: Any, context: PipelineContext[Any] | None) -> Any:
    """The work of one item: one checkpoint, then its value back."""
    await trio.lowlevel.checkpoint()
    return value


def fan_out(**options: Any) -> PipelineDefinition:
    """Return a one-stage pipeline fanning *item* out over its initial input."""
    return PipelineDefinition(
        name="fan-out",
        stages=[
            StageDefinition(
                "items",
                item,
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=LIMIT,
                **options,
            )
        ],
    )


async def pool(items: list[Any], timeout_s: float | None = None) -> list[Any]:
    """Run *item* over *items* by hand: 64 tasks pulling from one shared iterator.

    With *timeout_s*, each item runs under its own ``trio.move_on_after``.
    """
    outputs: list[Any] = [None] * len(items)
    work: Iterator[tuple[int, Any]] = iter(enumerate(items))

    async def worker() -> None:
        for index, value in work:
            if timeout_s is None:
                outputs[index] = await item(value, None)
            else:
                with trio.move_on_after(timeout_s):
                    outputs[index] = await item(value, None)

    async with trio.open_nursery() as nursery:
        for _ in range(LIMIT):
            nursery.start_soon(worker)
    return outputs


class TaskCounter(trio.abc.Instrument):
    """Counts live tasks and remembers the peak."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        """Count a new task."""
        self.live += 1
        self.peak = max(self.peak, self.live)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        """Count a task gone."""
        self.live -= 1


async def _peak_tasks(fn: Callable[[], Awaitable[object]]) -> int:
    """Return the peak number of tasks alive at once during *fn*, beyond the caller."""
    counter = TaskCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        await fn()
    finally:
        trio.lowlevel.remove_instrument(counter)
    return counter.peak


async def _peak_bytes(fn: Callable[[], Awaitable[object]]) -> int:
    """Return the tracemalloc peak of *fn* above what was allocated before it."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        await fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - before


async def _measure(quick: bool) -> list[Row]:
    rows: list[Row] = []
    executor = PipelineExecutor(log_events=False)
    count = 100_000
    items = list(range(count))
    plain = fan_out()
    retry = fan_out(
        retry_config=RetryConfig(max_attempts=3, initial_delay_ms=1, max_delay_ms=4)
    )
    timeout = fan_out(timeout_ms=60_000)
    both = fan_out(
        retry_config=RetryConfig(max_attempts=3, initial_delay_ms=1, max_delay_ms=4),
        timeout_ms=60_000,
    )

    def run_of(p: PipelineDefinition) -> Callable[[], Awaitable[object]]:
        async def go() -> None:
            result = await executor.execute(p, items)
            assert result.success, result.stage_results

        return go

    samples = await interleaved(
        {
            "pool": lambda: pool(items),
            "pool+timeout": lambda: pool(items, 60.0),
            "plain": run_of(plain),
            "retry": run_of(retry),
            "timeout": run_of(timeout),
            "retry+timeout": run_of(both),
        },
        3 if quick else 7,
    )
    base = median(samples["pool"])
    timed_pool = median(samples["pool+timeout"])
    rows.append(
        Row(
            "fan-out",
            "100,000 items, hand-written pool with a per-item timeout",
            f"{timed_pool / count * 1e6:.2f} us/item -> {timed_pool / base:.2f}x "
            "the plain pool (what a trio CancelScope per item costs)",
            "report",
        )
    )
    for name in ("plain", "retry", "timeout", "retry+timeout"):
        ours = median(samples[name])
        ratio = ours / base
        rows.append(
            Row(
                "fan-out",
                f"100,000 items, limit 64, {name}",
                f"{ours / count * 1e6:.2f} us/item vs pool "
                f"{base / count * 1e6:.2f} -> {ratio:.2f}x",
                f"<= {TARGET}x",
                verdict(ratio <= TARGET),
            )
        )

    for n in (1_000, 100_000):
        data = list(range(n))
        peak = await _peak_tasks(lambda d=data: executor.execute(plain, d))  # type: ignore[misc]  # default binds the loop value
        base_peak = await _peak_tasks(lambda d=data: pool(d))  # type: ignore[misc]  # same
        rows.append(
            Row(
                "fan-out",
                f"peak live tasks, {n:,} items",
                f"{peak} (pool: {base_peak})",
                f"<= {LIMIT} + constant",
                verdict(peak <= LIMIT + 8),
            )
        )
    peaks: dict[int, int] = {}
    for n in (10_000, 100_000):
        data = list(range(n))
        peaks[n] = await _peak_bytes(lambda d=data: executor.execute(plain, d))  # type: ignore[misc]  # default binds the loop value
        base_bytes = await _peak_bytes(lambda d=data: pool(d))  # type: ignore[misc]  # same
        rows.append(
            Row(
                "fan-out",
                f"peak traced memory, {n:,} items",
                f"{peaks[n] / 1024:,.0f} KiB ({peaks[n] / n:.1f} B/item; "
                f"pool {base_bytes / n:.1f} B/item)",
                "report",
            )
        )
    # The outputs list alone is 8 bytes per item (the items are shared).
    extra = (peaks[100_000] - peaks[10_000]) / 90_000 - 8
    rows.append(
        Row(
            "fan-out",
            "peak memory growth beyond the outputs list",
            f"{extra:.1f} B/item",
            "~0 B/item",
            verdict(extra <= 1),
        )
    )
    return rows


def run(quick: bool = False) -> list[Row]:
    """Measure fan-out speed, live tasks and peak memory."""
    return trio.run(_measure, quick)

"""Fan-out of 100,000 items against a hand-written pool of 64 trio tasks.

The default ``PipelineExecutor()`` runs in two host set-ups, (a) nothing
configured and (b) structlog filtering at WARNING, plain, with
``RetryConfig(max_attempts=3)`` and with a per-item ``timeout_ms`` (against
the pool that wraps each item in ``trio.move_on_after``). (c) structlog at
INFO with a JSON renderer to a null sink is compared with
``log_events=False``: items log at DEBUG, so at INFO they must cost nothing.
Then the live tasks and the peak memory of the default executor (a).
"""

from __future__ import annotations

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

from ._common import Row, hosts, interleaved, median, peak_bytes, verdict

TARGET = 1.3
"""The default executor against the hand-written pool, in (a) and (b)."""
INFO_TARGET = 1.05
"""(c) structlog at INFO with JSON to a null sink, against ``log_events=False``."""
LIMIT = 64
COUNT = 100_000
TIMEOUT_S = 60.0
SECTION = "fan-out"
CASE = f"{COUNT:,} items, limit {LIMIT}"


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


def _run(
    executor: PipelineExecutor, pipeline: PipelineDefinition, items: list[Any]
) -> Callable[[], Awaitable[object]]:
    async def go() -> None:
        result = await executor.execute(pipeline, items)
        assert result.success, result.stage_results

    return go


def _ratio_row(
    case: str, ours: float, base: float, base_name: str, target: float
) -> Row:
    ratio = ours / base
    return Row(
        SECTION,
        case,
        f"{ours / COUNT * 1e6:.2f} us/item vs {base_name} "
        f"{base / COUNT * 1e6:.2f} -> {ratio:.2f}x",
        f"<= {target}x {base_name}",
        verdict(ratio <= target),
    )


async def _measure(quick: bool) -> list[Row]:
    rows: list[Row] = []
    default = PipelineExecutor()
    quiet = PipelineExecutor(log_events=False)
    items = list(range(COUNT))
    plain = fan_out()
    retry = fan_out(retry_config=RetryConfig(max_attempts=3))
    timeout = fan_out(timeout_ms=TIMEOUT_S * 1000)
    with hosts() as host:
        samples = await interleaved(
            {
                "pool": lambda: pool(items),
                "pool+timeout": lambda: pool(items, TIMEOUT_S),
                "quiet": _run(quiet, plain, items),
                "a": _run(default, plain, items),
                "b": _run(default, plain, items),
                "c": _run(default, plain, items),
                "retry a": _run(default, retry, items),
                "retry b": _run(default, retry, items),
                "timeout a": _run(default, timeout, items),
                "timeout b": _run(default, timeout, items),
            },
            5 if quick else 15,
            {
                "a": host.nothing,
                "b": host.warning,
                "c": host.info_json,
                "retry a": host.nothing,
                "retry b": host.warning,
                "timeout a": host.nothing,
                "timeout b": host.warning,
            },
        )
    med = {name: median(values) for name, values in samples.items()}
    base, timed_pool = med["pool"], med["pool+timeout"]
    rows.append(
        Row(
            SECTION,
            "hand-written pool with trio.move_on_after per item",
            f"{timed_pool / COUNT * 1e6:.2f} us/item -> {timed_pool / base:.2f}x "
            "the plain pool (what a CancelScope per item costs)",
            "baseline",
        )
    )
    for name, label in (
        ("a", "default, (a) nothing configured"),
        ("b", "default, (b) structlog at WARNING"),
        ("retry a", "RetryConfig(max_attempts=3), (a)"),
        ("retry b", "RetryConfig(max_attempts=3), (b)"),
    ):
        rows.append(_ratio_row(f"{CASE}, {label}", med[name], base, "pool", TARGET))
    for name, label in (
        ("timeout a", "per-item timeout_ms, (a)"),
        ("timeout b", "per-item timeout_ms, (b)"),
    ):
        rows.append(
            _ratio_row(
                f"{CASE}, {label}", med[name], timed_pool, "pool+move_on_after", TARGET
            )
        )
    rows.append(
        Row(
            SECTION,
            f"{CASE}, log_events=False",
            f"{med['quiet'] / COUNT * 1e6:.2f} us/item -> "
            f"{med['quiet'] / base:.2f}x pool",
            "report",
        )
    )
    rows.append(
        _ratio_row(
            f"{CASE}, (c) structlog INFO, JSON to a null sink",
            med["c"],
            med["quiet"],
            "log_events=False",
            INFO_TARGET,
        )
    )

    for n in (1_000, 100_000):
        data = list(range(n))
        peak = await _peak_tasks(lambda d=data: default.execute(plain, d))  # type: ignore[misc]  # default binds the loop value
        base_peak = await _peak_tasks(lambda d=data: pool(d))  # type: ignore[misc]  # same
        rows.append(
            Row(
                SECTION,
                f"peak live tasks, {n:,} items",
                f"{peak} (pool: {base_peak})",
                f"<= {LIMIT} + constant",
                verdict(peak <= LIMIT + 8),
            )
        )
    peaks: dict[int, int] = {}
    for n in (10_000, 100_000):
        data = list(range(n))
        peaks[n] = await peak_bytes(lambda d=data: default.execute(plain, d))  # type: ignore[misc]  # default binds the loop value
        base_bytes = await peak_bytes(lambda d=data: pool(d))  # type: ignore[misc]  # same
        rows.append(
            Row(
                SECTION,
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
            SECTION,
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

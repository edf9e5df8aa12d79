"""Issue 5: cancellation latency, from the trigger to ``execute`` returning."""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing

from actors import (
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
)

from ._common import Row, percentile, verdict

TARGET = 2.0


class _Clock:
    """The wall time at which the trigger fired."""

    def __init__(self) -> None:
        self.fired = 0.0


async def _blocked(value: Any, context: PipelineContext[Any]) -> None:
    await trio.sleep_forever()


def _pipeline(n: int, clock: _Clock, *, trigger: bool) -> PipelineDefinition:
    stages = [StageDefinition(f"b{i}", _blocked) for i in range(n)]
    if trigger:

        async def fail(value: Any, context: PipelineContext[Any]) -> None:
            await trio.testing.wait_all_tasks_blocked()
            clock.fired = time.perf_counter()
            raise RuntimeError("trigger")

        stages.append(StageDefinition("trigger", fail))
    return PipelineDefinition(name=f"blocked-{n}", stages=stages)


async def _fail_fast(executor: PipelineExecutor, n: int) -> float:
    clock = _Clock()
    pipeline = _pipeline(n, clock, trigger=True)
    result = await executor.execute(pipeline)
    assert not result.success
    return time.perf_counter() - clock.fired


async def _token(executor: PipelineExecutor, n: int) -> float:
    clock = _Clock()
    pipeline = _pipeline(n, clock, trigger=False)
    token = trio.Event()

    async def fire() -> None:
        await trio.testing.wait_all_tasks_blocked()
        clock.fired = time.perf_counter()
        token.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fire)
        result = await executor.execute(
            pipeline, context=PipelineContext(cancel_token=token)
        )
    assert not result.success
    return time.perf_counter() - clock.fired


async def _bare(n: int) -> float:
    clock = _Clock()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(trio.sleep_forever)
        await trio.testing.wait_all_tasks_blocked()
        clock.fired = time.perf_counter()
        nursery.cancel_scope.cancel()
    return time.perf_counter() - clock.fired


async def _measure(quick: bool) -> list[Row]:
    rows: list[Row] = []
    executor = PipelineExecutor(log_events=False)
    for n, samples in ((100, 60 if quick else 300), (1_000, 20 if quick else 100)):
        kinds: dict[str, Callable[[], Awaitable[float]]] = {
            "bare trio": lambda n=n: _bare(n),  # type: ignore[misc]  # default binds the loop value
            "fail-fast": lambda n=n: _fail_fast(executor, n),  # type: ignore[misc]  # same
            "cancel token": lambda n=n: _token(executor, n),  # type: ignore[misc]  # same
        }
        latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
        names = list(kinds)
        for round_ in range(samples):
            shift = round_ % len(names)
            for kind in names[shift:] + names[:shift]:
                gc.collect()  # a collection inside the window is noise
                latencies[kind].append(await kinds[kind]())
        bare99 = percentile(latencies["bare trio"], 0.99)
        bare50 = percentile(latencies["bare trio"], 0.50)
        rows.append(
            Row(
                "cancel latency",
                f"{n:,} sleeping tasks, bare trio",
                f"p50 {bare50 * 1e3:.2f} ms, p99 {bare99 * 1e3:.2f} ms",
                "baseline",
            )
        )
        for kind in ("fail-fast", "cancel token"):
            p50 = percentile(latencies[kind], 0.50)
            p99 = percentile(latencies[kind], 0.99)
            rows.append(
                Row(
                    "cancel latency",
                    f"{n:,} blocked stages, {kind}",
                    f"p50 {p50 * 1e3:.2f} ms ({p50 / bare50:.2f}x), "
                    f"p99 {p99 * 1e3:.2f} ms ({p99 / bare99:.2f}x)",
                    f"p99 <= {TARGET}x bare",
                    verdict(p99 <= TARGET * bare99),
                )
            )
    return rows


def run(quick: bool = False) -> list[Row]:
    """Measure cancellation latency with 100 and 1,000 blocked stages."""
    return trio.run(_measure, quick)

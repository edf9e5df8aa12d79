"""Cancellation latency, from the trigger to ``execute`` returning.

All stages but one are blocked in ``trio.sleep_forever()``; the trigger is a
stage raising under fail-fast, or the cancel token being set. Against a bare
nursery cancelling as many sleeping tasks. The default ``PipelineExecutor()``
runs in (a) nothing configured (its warnings and errors go to standard error,
redirected to ``os.devnull`` here) and (b) structlog filtering at WARNING
(written to ``os.devnull``): a cancelled stage is a WARNING event and a failed
one an ERROR, so both host set-ups write one line per stage. ``log_events=False``
is measured beside them: what the kernel alone costs.
"""

from __future__ import annotations

import contextlib
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

from ._common import Row, Setup, hosts, percentile, verdict

TARGET = 2.0


class Clock:
    """The wall time at which the trigger fired (set by the trigger)."""

    def __init__(self) -> None:
        self.fired = 0.0


async def _blocked(value: Any, context: PipelineContext[Any]) -> None:
    await trio.sleep_forever()


def blocked_pipeline(n: int, clock: Clock, *, trigger: bool) -> PipelineDefinition:
    """Return *n* stages blocked forever, and with *trigger* one that fails."""
    stages = [StageDefinition(f"b{i}", _blocked) for i in range(n)]
    if trigger:

        async def fail(value: Any, context: PipelineContext[Any]) -> None:
            await trio.testing.wait_all_tasks_blocked()
            clock.fired = time.perf_counter()
            raise RuntimeError("trigger")

        stages.append(StageDefinition("trigger", fail))
    return PipelineDefinition(name=f"blocked-{n}", stages=stages)


async def _fail_fast(executor: PipelineExecutor, n: int) -> float:
    clock = Clock()
    pipeline = blocked_pipeline(n, clock, trigger=True)
    result = await executor.execute(pipeline)
    assert not result.success
    return time.perf_counter() - clock.fired


async def _token(executor: PipelineExecutor, n: int) -> float:
    clock = Clock()
    pipeline = blocked_pipeline(n, clock, trigger=False)
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
    clock = Clock()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(trio.sleep_forever)
        await trio.testing.wait_all_tasks_blocked()
        clock.fired = time.perf_counter()
        nursery.cancel_scope.cancel()
    return time.perf_counter() - clock.fired


async def _measure(quick: bool) -> list[Row]:
    rows: list[Row] = []
    quiet = PipelineExecutor(log_events=False)
    default = PipelineExecutor()
    with hosts() as host, contextlib.redirect_stderr(host.null):
        executors: list[tuple[str, PipelineExecutor, Setup]] = [
            ("(a) nothing configured", default, host.nothing),
            ("(b) structlog at WARNING", default, host.warning),
            ("log_events=False", quiet, host.nothing),
        ]
        for n, samples in ((100, 60 if quick else 300), (1_000, 20 if quick else 100)):
            kinds: dict[str, tuple[Setup, Callable[[], Awaitable[float]]]] = {
                "bare trio": (host.nothing, lambda n=n: _bare(n)),  # type: ignore[misc]  # default binds the loop value
            }
            for label, executor, setup in executors:
                kinds[f"fail-fast, {label}"] = (
                    setup,
                    lambda n=n, e=executor: _fail_fast(e, n),  # type: ignore[misc]  # same
                )
                kinds[f"cancel token, {label}"] = (
                    setup,
                    lambda n=n, e=executor: _token(e, n),  # type: ignore[misc]  # same
                )
            latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
            names = list(kinds)
            for round_ in range(samples):
                shift = round_ % len(names)
                for kind in names[shift:] + names[:shift]:
                    setup, measure = kinds[kind]
                    setup()
                    gc.collect()  # a collection inside the window is noise
                    latencies[kind].append(await measure())
            rows.extend(_rows(n, latencies))
    return rows


def _rows(n: int, latencies: dict[str, list[float]]) -> list[Row]:
    bare99 = percentile(latencies["bare trio"], 0.99)
    bare50 = percentile(latencies["bare trio"], 0.50)
    rows = [
        Row(
            "cancel latency",
            f"{n:,} sleeping tasks, bare trio",
            f"p50 {bare50 * 1e3:.2f} ms, p99 {bare99 * 1e3:.2f} ms",
            "baseline",
        )
    ]
    for kind, values in latencies.items():
        if kind == "bare trio":
            continue
        p50 = percentile(values, 0.50)
        p99 = percentile(values, 0.99)
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

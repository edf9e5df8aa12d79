"""CPU-bound fan-out off the event loop: inline vs thread vs process vs Dask.

One FAN_OUT stage of 64 items of about 50 ms of pure-Python work each, run
by the executor on each backend. Threads cannot beat inline here (the GIL);
worker processes and a 2-worker LocalCluster can, up to the number of cores.
Also the per-item overhead of each backend: the median round trip of a
trivial function called through the backend one at a time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import trio

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    offload,
)

from ._common import Row, interleaved, median, verdict

if TYPE_CHECKING:
    from distributed import Client

ITEMS = 64
ITEM_MS = 50.0
PROCESS_TARGET = 1.7
DASK_TARGET = 1.5


def burn(rounds: int) -> int:
    """Pure-Python CPU work: *rounds* multiply-adds, holding the GIL throughout."""
    total = 0
    for i in range(rounds):
        total += i * i % 7
    return total


def calibrate(ms: float = ITEM_MS) -> int:
    """Return the rounds of :func:`burn` that take about *ms* here."""
    rounds = 100_000
    while True:
        begin = time.perf_counter()
        burn(rounds)
        took = (time.perf_counter() - begin) * 1000
        if took > 20:
            return int(rounds * ms / took)
        rounds *= 2


def trivial(value: int) -> int:
    """The function whose round trip is the backend's per-item overhead."""
    return value


def ignore_orphans(backend: str, key: str | None) -> None:
    """Nothing is cancelled in this benchmark."""


Call = Callable[[Callable[[int], int], int], Awaitable[int]]


def caller(offloader: offload.Offloader | None) -> Call:
    """Return ``call(fn, x)`` running *fn* inline (``None``) or on *offloader*."""
    if offloader is None:

        async def inline(fn: Callable[[int], int], value: int) -> int:
            await trio.lowlevel.checkpoint()
            return fn(value)

        return inline

    async def offloaded(fn: Callable[[int], int], value: int) -> int:
        return await offloader.call(fn, value, on_orphaned=ignore_orphans)

    return offloaded


async def burn_inline(rounds: int, context: PipelineContext[Any]) -> int:
    """:func:`burn` as an ordinary async stage: it holds the event loop."""
    return burn(rounds)


def fan_out(offloader: offload.Offloader | None) -> PipelineDefinition:
    """One FAN_OUT stage of :func:`burn` on *offloader* (``None``: inline)."""
    return PipelineDefinition(
        name="cpu",
        stages=[
            StageDefinition(
                "burn",
                burn_inline if offloader is None else burn,
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=ITEMS,
                offload=offloader,
            )
        ],
    )


async def per_item_us(call: Call, calls: int) -> float:
    """Return the median round trip of ``call(trivial, i)`` in microseconds."""
    samples = []
    for i in range(calls):
        begin = time.perf_counter()
        assert await call(trivial, i) == i
        samples.append(time.perf_counter() - begin)
    return median(samples) * 1e6


@contextmanager
def local_cluster() -> Iterator[Client]:
    """A 2-worker, 1-thread-each LocalCluster on loopback, closed after."""
    from distributed import Client, LocalCluster  # noqa: PLC0415 - optional extra

    # distributed's constructors are untyped.
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


async def measure(client: Client, quick: bool) -> dict[str, tuple[float, float]]:
    """Return, per backend, the fan-out's seconds and the trivial call's µs."""
    rounds = calibrate()
    values = [rounds] * ITEMS
    expected = [burn(rounds)] * ITEMS
    backends: dict[str, offload.Offloader | None] = {
        "inline": None,
        "thread": offload.thread(),
        "process": offload.process(),
        "dask": offload.dask(client),
    }
    repeats = 3 if quick else 7
    calls = 100 if quick else 400
    executor = PipelineExecutor(log_events=False)

    def timed_run(name: str) -> Callable[[], Awaitable[object]]:
        pipeline = fan_out(backends[name])

        async def once() -> None:
            result = await executor.execute(pipeline, values)
            assert result.outputs == {"burn": expected}

        return once

    for offloader in backends.values():
        # Start every worker before timing.
        await executor.execute(fan_out(offloader), [1000] * 8)
    # Rotated each round, so the load of a shared machine falls on all alike.
    samples = await interleaved({name: timed_run(name) for name in backends}, repeats)
    return {
        name: (median(samples[name]), await per_item_us(caller(offloader), calls))
        for name, offloader in backends.items()
    }


def run(quick: bool) -> list[Row]:
    """Measure the fan-out on every backend and the per-item overhead."""
    with local_cluster() as client:
        found = trio.run(measure, client, quick)
    inline_s = found["inline"][0]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    rows = [Row("offload", "load average after the run (1, 5, 15 min)", load)]
    cores = os.cpu_count() or 1
    for name, (seconds, overhead_us) in found.items():
        speedup = inline_s / seconds
        target, ok = "", ""
        if name == "process":
            target, ok = f">= {PROCESS_TARGET}x", verdict(speedup >= PROCESS_TARGET)
        elif name == "dask":
            target, ok = f">= {DASK_TARGET}x", verdict(speedup >= DASK_TARGET)
        rows.append(
            Row(
                "offload",
                f"{ITEMS} x {ITEM_MS:g} ms CPU, {name} ({cores} cores)",
                f"{seconds:.2f} s, {speedup:.2f}x inline",
                target,
                ok,
            )
        )
        rows.append(
            Row("offload", f"per-item overhead, {name}", f"{overhead_us:.0f} us")
        )
    return rows

"""CPU-bound fan-out off the event loop: inline, threads, processes, Dask.

One FAN_OUT stage runs 64 items of about 50 ms of pure-Python work each. The
same pipeline runs four times: inline (the work holds the event loop), with
``offload.thread()`` (no faster: the GIL), with ``offload.process()`` (one
worker process per core) and with ``offload.dask(client)`` on a two-worker
``LocalCluster`` on loopback; the speed-ups are printed. Needs the ``process``
and ``dask`` extras: ``pip install "trio-actors[process,dask]"``.

Run it with ``python examples/cpu_fan_out.py [items] [ms]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import trio

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    offload,
)


def burn(rounds: int) -> int:
    """Pure-Python CPU work: *rounds* multiply-adds, holding the GIL throughout."""
    total = 0
    for i in range(rounds):
        total += i * i % 7
    return total


async def burn_inline(rounds: int, context: PipelineContext[Any]) -> int:
    """The same work as an ordinary async stage: it blocks the event loop."""
    return burn(rounds)


def rounds_for(ms: float) -> int:
    """Return the rounds of :func:`burn` that take about *ms* on this machine."""
    rounds = 100_000
    while True:
        begin = time.perf_counter()
        burn(rounds)
        took = (time.perf_counter() - begin) * 1000
        if took > 20:
            return int(rounds * ms / took)
        rounds *= 2


def pipeline(offloader: offload.Offloader | None) -> PipelineDefinition:
    """One FAN_OUT stage over the list of work sizes, on *offloader* (or inline)."""
    stage: Callable[..., Any] = burn_inline if offloader is None else burn
    return PipelineDefinition(
        name="cpu_fan_out",
        stages=[
            StageDefinition(
                "burn",
                stage,
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=64,
                offload=offloader,
            )
        ],
    )


async def timed_run(offloader: offload.Offloader | None, items: list[int]) -> float:
    """Run the pipeline once; return its wall-clock seconds."""
    executor = PipelineExecutor(log_events=False)
    begin = time.perf_counter()
    result = await executor.execute(pipeline(offloader), initial_input=items)
    seconds = time.perf_counter() - begin
    assert result.success, result.failed_stages
    assert result.outputs["burn"] == [burn(items[0])] * len(items)
    return seconds


async def main(count: int = 64, ms: float = 50.0) -> dict[str, float]:
    """Run the fan-out on every backend; print and return the seconds of each."""
    from distributed import Client, LocalCluster  # noqa: PLC0415 - optional extra

    items = [rounds_for(ms)] * count
    # The cluster is ours to start and close: actors never starts one.
    with (
        LocalCluster(  # type: ignore[no-untyped-call]  # distributed is untyped
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]  # same
    ):
        backends: dict[str, offload.Offloader | None] = {
            "inline": None,
            "thread": offload.thread(),
            "process": offload.process(),
            "dask": offload.dask(client),
        }
        seconds: dict[str, float] = {}
        for name, offloader in backends.items():
            await timed_run(offloader, items[:4])  # warm up: start the workers
            seconds[name] = await timed_run(offloader, items)
    print(f"{count} items of ~{ms:g} ms of pure-Python CPU work:")
    for name, took in seconds.items():
        print(f"  {name:8} {took:6.2f} s  {seconds['inline'] / took:5.2f}x inline")
    return seconds


if __name__ == "__main__":
    trio.run(main, *[f(a) for f, a in zip((int, float), sys.argv[1:], strict=False)])

"""Where the time goes: cProfile of the executor's hot paths, per stage or item.

Not part of the default run (``python -m bench profile``): cProfile slows
everything down, so only the split between functions means something, not
the totals. The garbage collector is off while profiling, so its pauses are
not charged to whichever function happened to allocate.
"""

from __future__ import annotations

import cProfile
import gc
import pstats
from collections.abc import Awaitable, Callable

import trio

from actors import PipelineExecutor

from ._common import Row, layered, pipeline_of
from ._fanout import fan_out

TOP = 14


def _profile(
    fn: Callable[[], Awaitable[object]], per: int, repeats: int
) -> list[tuple[str, float, float]]:
    """Return (function, own us, cumulative us) per unit, the slowest first."""
    profiler = cProfile.Profile()

    async def main() -> None:
        await fn()  # warm-up
        gc.collect()
        gc.disable()
        try:
            profiler.enable()
            for _ in range(repeats):
                await fn()
            profiler.disable()
        finally:
            gc.enable()

    trio.run(main)
    stats = pstats.Stats(profiler)
    table = []
    for (path, line, name), row in stats.stats.items():  # type: ignore[attr-defined]  # pstats has no public accessor
        own, total = row[2], row[3]
        parts = path.rsplit("/", 2)
        where = f"{'/'.join(parts[-2:])}:{line}({name})" if len(parts) > 1 else name
        table.append((where, own / per / repeats * 1e6, total / per / repeats * 1e6))
    table.sort(key=lambda entry: entry[1], reverse=True)
    return table[:TOP]


def run(quick: bool = False) -> list[Row]:
    """Profile a 10,000-stage layered DAG and a 100,000-item fan-out."""
    executor = PipelineExecutor(log_events=False)
    rows: list[Row] = []
    dag = pipeline_of(layered(10_000))
    dag.validate_pipeline()
    for where, own, total in _profile(lambda: executor.execute(dag), 10_000, 2):
        rows.append(
            Row("profile dag", where, f"{own:.2f} us/stage own, {total:.2f} cumulative")
        )
    items = list(range(100_000))
    fan = fan_out()
    for where, own, total in _profile(lambda: executor.execute(fan, items), 100_000, 1):
        rows.append(
            Row(
                "profile fan-out",
                where,
                f"{own:.2f} us/item own, {total:.2f} cumulative",
            )
        )
    return rows

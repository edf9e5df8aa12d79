"""Where the time goes: cProfile of the executor's hot paths, per stage or item.

Not part of the default run (``python -m bench profile``): cProfile slows
everything down, so only the split between functions means something, not
the totals. The garbage collector is off while profiling, so its pauses are
not charged to whichever function happened to allocate. Every profile runs
the default ``PipelineExecutor()`` with nothing configured (host set-up (a)),
sorted by own time (tottime).
"""

from __future__ import annotations

import contextlib
import cProfile
import gc
import os
import pstats
from collections.abc import Awaitable, Callable

import structlog
import trio

from actors import PipelineContext, PipelineExecutor

from ._cancel import Clock, blocked_pipeline
from ._common import Row, chain, pipeline_of
from ._fanout import fan_out
from ._streaming import streamed

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


def _rows(section: str, unit: str, table: list[tuple[str, float, float]]) -> list[Row]:
    return [
        Row(section, where, f"{own:.2f} us/{unit} own, {total:.2f} cumulative")
        for where, own, total in table
    ]


def run(quick: bool = False) -> list[Row]:
    """Profile a 10,000-stage chain, 100,000 items, a stream and a cancelled run."""
    structlog.reset_defaults()  # (a): nothing configured
    executor = PipelineExecutor()
    rows: list[Row] = []
    dag = pipeline_of(chain(10_000))
    dag.validate_pipeline()
    rows += _rows(
        "profile chain 10k", "stage", _profile(lambda: executor.execute(dag), 10_000, 2)
    )
    items = list(range(100_000))
    for section, fan in (
        ("profile fan-out", fan_out()),
        ("profile fan-out timeout", fan_out(timeout_ms=60_000)),
    ):
        rows += _rows(
            section,
            "item",
            _profile(lambda f=fan: executor.execute(f, items), 100_000, 1),  # type: ignore[misc]  # default binds the loop value
        )
    stream = streamed(20_000, 8)
    rows += _rows(
        "profile streaming",
        "item",
        _profile(lambda: executor.execute(stream), 20_000, 3),
    )
    cancelled = blocked_pipeline(1_000, Clock(), trigger=False)

    async def cancel() -> None:
        token = trio.Event()
        token.set()  # every stage is cancelled as soon as it starts
        await executor.execute(cancelled, context=PipelineContext(cancel_token=token))

    with (
        open(os.devnull, "w", encoding="utf-8") as null,
        contextlib.redirect_stderr(null),
    ):
        rows += _rows("profile cancel 1k", "stage", _profile(cancel, 1_000, 5))
    return rows

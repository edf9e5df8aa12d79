"""Durable runs: what a store costs per stage, per item and per streamed item.

The disk stores' figures include each run's fixed cost (recording its start,
its last batch and its status, each a synced write), spread over its units.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
)
from actors.checkpoint import FileStore, MemoryStore, SQLiteStore

from ._common import Row, chain, interleaved, median, pipeline_of, verdict

MEMORY_TARGET = 1.3
RESTORE_TARGET = 2.0


async def _square(value: Any, context: PipelineContext[Any]) -> Any:
    return value


def _stream(items: int) -> PipelineDefinition:
    async def produce(value: Any, context: PipelineContext[Any]) -> AsyncIterator[int]:
        for i in range(items):
            yield i

    return PipelineDefinition(name="stream", stages=[StageDefinition("p", produce)])


def _fan(items: int) -> PipelineDefinition:
    return PipelineDefinition(
        name="fan",
        stages=[
            StageDefinition(
                "items", _square, pattern=ExecutionPattern.FAN_OUT, max_concurrency=64
            )
        ],
    )


async def _measure(quick: bool) -> list[Row]:
    rows: list[Row] = []
    n = 10_000
    pipeline = pipeline_of(chain(n))
    pipeline.validate_pipeline()
    plain = PipelineExecutor(log_events=False)
    memory = PipelineExecutor(log_events=False, store=MemoryStore())
    repeats = 3 if quick else 7
    samples = await interleaved(
        {
            "plain": lambda: plain.execute(pipeline, 1),
            "memory": lambda: memory.execute(pipeline, 1),
        },
        repeats,
    )
    base, ours = median(samples["plain"]), median(samples["memory"])
    rows.append(
        Row(
            "durable",
            f"MemoryStore, chain n={n:,}",
            f"{ours / n * 1e6:.1f} us/stage vs no store {base / n * 1e6:.1f} "
            f"-> {ours / base:.2f}x",
            f"<= {MEMORY_TARGET}x",
            verdict(ours / base <= MEMORY_TARGET),
        )
    )
    store = MemoryStore()
    executor = PipelineExecutor(log_events=False, store=store)
    first = await executor.execute(pipeline, 1)
    samples = await interleaved(
        {
            "plain": lambda: plain.execute(pipeline, 1),
            "restore": lambda: executor.execute(pipeline, 1, resume=first.run_id),
        },
        repeats,
    )
    base, ours = median(samples["plain"]), median(samples["restore"])
    rows.append(
        Row(
            "durable",
            f"resume, all restored, chain n={n:,} (MemoryStore)",
            f"{ours / n * 1e6:.1f} us/stage vs a no-op run {base / n * 1e6:.1f} "
            f"-> {ours / base:.2f}x",
            f"<= {RESTORE_TARGET}x",
            verdict(ours / base <= RESTORE_TARGET),
        )
    )
    # A stream journals each item it produces (key, codec, entry): per item.
    stream = _stream(n)
    samples = await interleaved(
        {
            "plain": lambda: plain.execute(stream),
            "memory": lambda: memory.execute(stream),
        },
        repeats,
    )
    base, ours = median(samples["plain"]), median(samples["memory"])
    rows.append(
        Row(
            "durable",
            f"MemoryStore, a stream of {n:,} items (producer only)",
            f"+{(ours - base) / n * 1e6:.1f} us per produced item",
            "reported",
            "-",
        )
    )
    root = Path(tempfile.mkdtemp(prefix="actors-bench-"))
    try:
        disk: dict[str, Callable[[], Awaitable[object]]] = {}
        small = pipeline_of(chain(1_000))
        fan = _fan(10_000)
        items = list(range(10_000))
        for name, made in (
            ("FileStore", FileStore(root / "files")),
            ("SQLiteStore", SQLiteStore(root / "db.sqlite")),
        ):
            on_disk = PipelineExecutor(log_events=False, store=made)
            disk[f"{name} stages"] = lambda e=on_disk: e.execute(small, 1)  # type: ignore[misc]  # default binds the loop value
            disk[f"{name} items"] = lambda e=on_disk: e.execute(fan, items)  # type: ignore[misc]  # same
        disk["plain stages"] = lambda: plain.execute(small, 1)
        disk["plain items"] = lambda: plain.execute(fan, items)
        samples = await interleaved(disk, 3 if quick else 5)
        for name in ("FileStore", "SQLiteStore"):
            for unit, count in (("stages", 1_000), ("items", 10_000)):
                cost = median(samples[f"{name} {unit}"]) - median(
                    samples[f"plain {unit}"]
                )
                rows.append(
                    Row(
                        "durable",
                        f"{name}, {unit}",
                        f"+{cost / count * 1e6:.1f} us per {unit[:-1]}",
                        "reported",
                        "-",
                    )
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def run(quick: bool) -> list[Row]:
    """Measure the durable-run costs; return the table rows."""
    return trio.run(_measure, quick)

"""Streaming: a producer (an async generator) feeding a FAN_OUT, item by item.

Three measurements, each with the default ``PipelineExecutor()`` in host
set-up (a), nothing configured (as a new user gets it), and with
``log_events=False``:

1. Time to the first downstream item: from the call of ``execute`` to the
   consumer's first item returning, for streams of 1,000 and 100,000 items.
   The run is cancelled from outside once that item is in (what follows it
   is not measured, and a 100,000-item run would only cost time).
2. Peak traced memory of a whole run of 1,000 and 100,000 items with
   ``collect=False`` on producer and consumer (only counts kept), and with
   ``collect=True`` (the default) for contrast.
3. Per-item cost of producer -> FAN_OUT(max_concurrency=N), one checkpoint
   per item, against a hand-written trio producer task feeding N worker
   tasks over an unbuffered memory channel (the library's own hand-over).
4. What watching costs: the same run through ``open_run`` with no tap, and
   with a lossless tap on the consumer read as items come, against
   ``execute`` (report only).
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TextIO

import structlog
import trio

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
)

from ._common import Row, hosts, interleaved, median, peak_bytes, verdict

SECTION = "streaming"
FIRST_TARGET = 1.1
"""Time to the first downstream item, 100,000-item stream against 1,000."""
MEMORY_TARGET = 2.0
"""Peak memory with ``collect=False``, 100,000 items against 1,000: same order."""
ITEM_TARGET = 1.3
"""Per item, the default executor against the hand-written pipeline."""
SHORT, LONG = 1_000, 100_000
COUNT = 20_000
"""Items per run for the per-item cost."""
LIMITS = (8, 64)
"""The consumer's ``max_concurrency`` (N hand-written workers)."""


def numbers(count: int) -> Callable[..., AsyncGenerator[int, None]]:
    """Return a streaming stage function yielding 0 .. count - 1, no checkpoint."""

    async def produce(
        value: Any, context: PipelineContext[Any] | None
    ) -> AsyncGenerator[int, None]:
        for i in range(count):
            yield i

    return produce


async def item(value: Any, context: PipelineContext[Any] | None) -> Any:
    """The work of one item: one checkpoint, then its value back."""
    await trio.lowlevel.checkpoint()
    return value


def streamed(
    count: int,
    limit: int,
    work: Callable[..., Awaitable[Any]] = item,
    *,
    collect: bool = True,
) -> PipelineDefinition:
    """Return ``numbers(count)`` feeding a FAN_OUT of *work* at *limit* at a time."""
    return PipelineDefinition(
        name="streaming",
        stages=[
            StageDefinition("numbers", numbers(count), collect=collect),
            StageDefinition(
                "items",
                work,
                inputs=["numbers"],
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=limit,
                collect=collect,
            ),
        ],
    )


async def by_hand(count: int, limit: int) -> list[Any]:
    """Run the same pipeline by hand: a producer task, *limit* workers, one channel.

    The producer iterates the generator (closed when done), keeps the items
    it produced and hands each over an unbuffered channel; each worker takes
    an item when it is free and keeps its output by the item's index. Returns
    the outputs in production order, as the executor's result has them.
    """
    produced: list[Any] = []
    outputs: dict[int, Any] = {}
    send, receive = trio.open_memory_channel[tuple[int, Any]](0)

    async def producer() -> None:
        async with send, contextlib.aclosing(numbers(count)(None, None)) as agen:
            async for value in agen:
                index = len(produced)
                produced.append(value)
                await send.send((index, value))

    async def worker(inlet: trio.MemoryReceiveChannel[tuple[int, Any]]) -> None:
        async with inlet:
            async for index, value in inlet:
                outputs[index] = await item(value, None)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        async with receive:
            for _ in range(limit):
                nursery.start_soon(worker, receive.clone())
    return [outputs[i] for i in range(len(produced))]


async def _first_item(
    executor: PipelineExecutor | None, count: int, limit: int
) -> float:
    """Return the seconds from ``execute`` to the first item finished downstream."""
    finished: list[float] = []

    with trio.CancelScope() as scope:

        async def first(value: Any, context: PipelineContext[Any] | None) -> Any:
            output = await item(value, context)
            if not finished:
                finished.append(time.perf_counter())
                scope.cancel()
            return output

        pipeline = streamed(count, limit, first)
        gc.collect()
        begin = time.perf_counter()
        if executor is None:
            await _first_by_hand(count, limit, first)
        else:
            await executor.execute(pipeline)
    return finished[0] - begin


async def _first_by_hand(
    count: int, limit: int, work: Callable[..., Awaitable[Any]]
) -> None:
    """The hand-written pipeline with *work* as the item function, nothing kept."""
    send, receive = trio.open_memory_channel[Any](0)

    async def producer() -> None:
        async with send, contextlib.aclosing(numbers(count)(None, None)) as agen:
            async for value in agen:
                await send.send(value)

    async def worker(inlet: trio.MemoryReceiveChannel[Any]) -> None:
        async with inlet:
            async for value in inlet:
                await work(value, None)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        async with receive:
            for _ in range(limit):
                nursery.start_soon(worker, receive.clone())


async def _first_rows(quick: bool, null: TextIO) -> list[Row]:
    rows: list[Row] = []
    repeats = 11 if quick else 31
    limit = LIMITS[0]
    variants: dict[str, PipelineExecutor | None] = {
        "default": PipelineExecutor(),
        "log_events=False": PipelineExecutor(log_events=False),
        "by hand": None,
    }
    samples: dict[tuple[str, int], list[float]] = {
        (name, n): [] for name in variants for n in (SHORT, LONG)
    }
    # Cancelling a run logs a stage_cancelled warning per stage: on standard
    # error in (a). Not what is measured (it comes after the first item).
    with contextlib.redirect_stderr(null):
        keys = list(samples)
        for key in keys:  # warm-up
            await _first_item(variants[key[0]], key[1], limit)
        for round_ in range(repeats):
            shift = round_ % len(keys)
            for name, n in keys[shift:] + keys[:shift]:
                structlog.reset_defaults()
                samples[name, n].append(await _first_item(variants[name], n, limit))
    for name, executor in variants.items():
        short = median(samples[name, SHORT])
        long = median(samples[name, LONG])
        ratio = long / short
        rows.append(
            Row(
                SECTION,
                f"time to first downstream item, {name}, limit {limit}",
                f"{SHORT:,}: {short * 1e3:.3f} ms, {LONG:,}: {long * 1e3:.3f} ms "
                f"-> {ratio:.2f}x",
                "baseline" if executor is None else f"<= {FIRST_TARGET}x",
                "" if executor is None else verdict(ratio <= FIRST_TARGET),
            )
        )
    return rows


def _run(
    executor: PipelineExecutor, pipeline: PipelineDefinition
) -> Callable[[], Awaitable[object]]:
    async def go() -> None:
        result = await executor.execute(pipeline)
        assert result.success, result.stage_results

    return go


async def _memory_rows() -> list[Row]:
    rows: list[Row] = []
    limit = LIMITS[0]
    structlog.reset_defaults()  # (a): nothing configured
    default = PipelineExecutor()
    # tracemalloc slows a run about sevenfold (~15 s for 100,000 items): the
    # contrast with collect=True runs with the default executor only.
    for name, executor, collect in (
        ("default", default, False),
        ("log_events=False", PipelineExecutor(log_events=False), False),
        ("default", default, True),
    ):
        peaks: dict[int, int] = {}
        for n in (SHORT, LONG):
            pipeline = streamed(n, limit, collect=collect)
            if n == SHORT:
                await _run(executor, pipeline)()  # warm caches, untraced
            peaks[n] = await peak_bytes(_run(executor, pipeline))
        ratio = peaks[LONG] / peaks[SHORT]
        growth = (peaks[LONG] - peaks[SHORT]) / (LONG - SHORT)
        rows.append(
            Row(
                SECTION,
                f"peak traced memory, collect={collect}, {name}, limit {limit}",
                f"{SHORT:,}: {peaks[SHORT] / 1024:,.0f} KiB, "
                f"{LONG:,}: {peaks[LONG] / 1024:,.0f} KiB -> {ratio:.2f}x "
                f"({growth:+.1f} B/item)",
                "report" if collect else f"<= {MEMORY_TARGET}x",
                "" if collect else verdict(ratio <= MEMORY_TARGET),
            )
        )
    return rows


async def _per_item_rows(quick: bool) -> list[Row]:
    rows: list[Row] = []
    default = PipelineExecutor()
    quiet = PipelineExecutor(log_events=False)
    variants: dict[str, Callable[[], Awaitable[object]]] = {}
    for limit in LIMITS:
        pipeline = streamed(COUNT, limit)
        variants[f"by hand {limit}"] = lambda n=limit: by_hand(COUNT, n)  # type: ignore[misc]  # default binds the loop value
        variants[f"default {limit}"] = _run(default, pipeline)
        variants[f"quiet {limit}"] = _run(quiet, pipeline)
    with hosts() as host:
        samples = await interleaved(
            variants,
            5 if quick else 11,
            dict.fromkeys(variants, host.nothing),
        )
    med = {name: median(values) for name, values in samples.items()}
    for limit in LIMITS:
        base = med[f"by hand {limit}"]
        case = f"{COUNT:,} items, producer -> FAN_OUT(max_concurrency={limit})"
        rows.append(
            Row(
                SECTION,
                f"{case}, by hand",
                f"{base / COUNT * 1e6:.2f} us/item",
                "baseline",
            )
        )
        for name, label in (("default", "default"), ("quiet", "log_events=False")):
            ours = med[f"{name} {limit}"]
            ratio = ours / base
            rows.append(
                Row(
                    SECTION,
                    f"{case}, {label}",
                    f"{ours / COUNT * 1e6:.2f} us/item -> {ratio:.2f}x by hand",
                    f"<= {ITEM_TARGET}x" if name == "default" else "report",
                    verdict(ratio <= ITEM_TARGET) if name == "default" else "",
                )
            )
    return rows


def _opened(
    executor: PipelineExecutor, pipeline: PipelineDefinition, tap: str | None
) -> Callable[[], Awaitable[object]]:
    async def go() -> None:
        async with executor.open_run(pipeline) as run:
            if tap is not None:
                async with run.tap(tap) as items:
                    async for _ in items:
                        pass
        assert run.result.success, run.result.stage_results

    return go


async def _live_rows(quick: bool) -> list[Row]:
    executor = PipelineExecutor()
    pipeline = streamed(COUNT, LIMITS[0])
    consumer = pipeline.stages[-1].id
    variants: dict[str, Callable[[], Awaitable[object]]] = {
        "execute": _run(executor, pipeline),
        "open_run": _opened(executor, pipeline, None),
        "open_run + tap": _opened(executor, pipeline, consumer),
    }
    with hosts() as host:
        samples = await interleaved(
            variants, 5 if quick else 11, dict.fromkeys(variants, host.nothing)
        )
    med = {name: median(values) for name, values in samples.items()}
    case = f"{COUNT:,} items, producer -> FAN_OUT(max_concurrency={LIMITS[0]})"
    rows = [
        Row(SECTION, f"{case}, execute", f"{med['execute'] / COUNT * 1e6:.2f} us/item")
    ]
    for name in ("open_run", "open_run + tap"):
        ratio = med[name] / med["execute"]
        rows.append(
            Row(
                SECTION,
                f"{case}, {name}" + (" on the consumer" if "tap" in name else ""),
                f"{med[name] / COUNT * 1e6:.2f} us/item -> {ratio:.2f}x execute",
                "report",
            )
        )
    return rows


async def _measure(quick: bool, null: TextIO) -> list[Row]:
    rows = await _first_rows(quick, null)
    rows += await _memory_rows()
    rows += await _per_item_rows(quick)
    rows += await _live_rows(quick)
    return rows


def run(quick: bool = False) -> list[Row]:
    """Measure time to the first item, peak memory and per-item cost of a stream."""
    try:
        with open(os.devnull, "w", encoding="utf-8") as null:
            return trio.run(_measure, quick, null)
    finally:
        structlog.reset_defaults()

"""Shared helpers: DAG shapes, the pipeline built from them, timing, the table."""

from __future__ import annotations

import gc
import logging
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import structlog
import trio

import actors.logging
from actors import PipelineContext, PipelineDefinition, StageDefinition

Deps = list[list[int]]
"""A DAG as the input indices of each node; node ``i`` only depends on ``j < i``."""


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the printed table."""

    section: str
    case: str
    measured: str
    target: str = ""
    verdict: str = ""


def verdict(ok: bool) -> str:
    """Return the word the table uses for a met or missed target."""
    return "ok" if ok else "MISSED"


def chain(n: int) -> Deps:
    """Return a chain of *n* nodes: each depends on the one before."""
    return [[] if i == 0 else [i - 1] for i in range(n)]


def layered(n: int, width: int = 50, seed: int = 0) -> Deps:
    """Return *n* nodes in layers of *width*, each with 1-3 inputs from above."""
    rng = random.Random(seed)
    deps: Deps = []
    for i in range(n):
        layer = i // width
        if layer == 0:
            deps.append([])
            continue
        above = range((layer - 1) * width, layer * width)
        deps.append(sorted(rng.sample(above, rng.randint(1, 3))))
    return deps


async def noop(value: Any, context: PipelineContext[Any]) -> Any:
    """A stage that does nothing and returns None."""
    return None


def pipeline_of(
    deps: Deps,
    stage: Callable[..., Awaitable[Any]] = noop,
    name: str = "bench",
    **options: Any,
) -> PipelineDefinition:
    """Return a pipeline with one *stage* per node of *deps*."""
    return PipelineDefinition(
        name=name,
        stages=[
            StageDefinition(f"s{i}", stage, inputs=[f"s{d}" for d in inputs], **options)
            for i, inputs in enumerate(deps)
        ],
    )


async def baseline_dag(deps: Deps, initial_input: Any = None) -> list[Any]:
    """Run *deps* by hand: one trio.Event per node, one nursery, no framework."""
    events = [trio.Event() for _ in deps]
    outputs: list[Any] = [None] * len(deps)

    async def node(index: int, inputs: list[int]) -> None:
        for source in inputs:
            await events[source].wait()
        if not inputs:
            value = initial_input
        elif len(inputs) == 1:
            value = outputs[inputs[0]]
        else:
            value = {source: outputs[source] for source in inputs}
        outputs[index] = await noop(value, None)  # type: ignore[arg-type]  # no context
        events[index].set()

    async with trio.open_nursery() as nursery:
        for index, inputs in enumerate(deps):
            nursery.start_soon(node, index, inputs)
    return outputs


async def baseline_channels(deps: Deps, initial_input: Any = None) -> list[Any]:
    """Run *deps* by hand with the executor's primitive: one memory channel per node.

    Each node gets an inbox with one slot per input; each producer owns a send
    endpoint (a clone per extra input) and closes it once it has sent. What
    the actor design costs before any orchestration is added.
    """
    outputs: list[Any] = [None] * len(deps)
    outboxes: list[list[trio.MemorySendChannel[Any]]] = [[] for _ in deps]
    inboxes: list[trio.MemoryReceiveChannel[Any] | None] = []
    for inputs in deps:
        if not inputs:
            inboxes.append(None)
            continue
        send, receive = trio.open_memory_channel[Any](len(inputs))
        inboxes.append(receive)
        outboxes[inputs[0]].append(send)
        for source in inputs[1:]:
            outboxes[source].append(send.clone())

    async def node(index: int, inputs: list[int]) -> None:
        inbox = inboxes[index]
        if inbox is None:
            value = initial_input
        else:
            with inbox:
                received = [await inbox.receive() for _ in inputs]
            value = received[0][1] if len(received) == 1 else dict(received)
        outputs[index] = await noop(value, None)  # type: ignore[arg-type]  # no context
        for outbox in outboxes[index]:
            with outbox:
                outbox.send_nowait((index, outputs[index]))

    async with trio.open_nursery() as nursery:
        for index, inputs in enumerate(deps):
            nursery.start_soon(node, index, inputs)
    return outputs


Setup = Callable[[], None]
"""Puts the host application's logging into one shape before a timed call."""


@dataclass(frozen=True, slots=True)
class Hosts:
    """The host set-ups the default executor is measured in.

    ``nothing``: the application configured nothing (structlog at its
    defaults, stdlib logging untouched), so the library logs to the stdlib
    logger ``"actors"``, where only warnings and errors would be written.
    ``warning``: structlog configured with a filtering logger at WARNING
    (its default console renderer, writing to ``null``).
    ``info_json``: :func:`actors.logging.configure_json` at INFO, writing to
    ``null`` (every INFO event rendered as JSON and written).
    ``null``: ``os.devnull``, open for writing.
    """

    nothing: Setup
    warning: Setup
    info_json: Setup
    null: TextIO


@contextmanager
def hosts() -> Iterator[Hosts]:
    """Yield the host set-ups; structlog is back at its defaults afterwards."""
    with open(os.devnull, "w", encoding="utf-8") as null:

        def warning() -> None:
            structlog.configure(
                wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                logger_factory=structlog.WriteLoggerFactory(file=null),
            )

        def info_json() -> None:
            actors.logging.configure_json(null, level="info")

        try:
            yield Hosts(structlog.reset_defaults, warning, info_json, null)
        finally:
            structlog.reset_defaults()


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    """Return the wall time of one call of *fn*, in seconds, after a full collection."""
    gc.collect()
    begin = time.perf_counter()
    await fn()
    return time.perf_counter() - begin


async def interleaved(
    variants: dict[str, Callable[[], Awaitable[object]]],
    repeats: int,
    setups: dict[str, Setup] | None = None,
) -> dict[str, list[float]]:
    """Time every variant *repeats* times, rotating their order each round.

    One untimed warm-up call of each variant comes first. ``setups[name]``,
    if given, runs before every call of that variant, outside the timing (it
    puts the host's logging into the variant's shape).
    """
    names = list(variants)
    prepare = setups or {}
    none: Setup = structlog.reset_defaults
    for name in names:
        prepare.get(name, none)()
        await variants[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            prepare.get(name, none)()
            samples[name].append(await timed(variants[name]))
    structlog.reset_defaults()
    return samples


def median(values: Sequence[float]) -> float:
    """Return the median of *values*."""
    return statistics.median(values)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of *values* (``fraction`` in 0..1)."""
    ranked = sorted(values)
    return ranked[max(0, math.ceil(fraction * len(ranked)) - 1)]


def machine() -> dict[str, str]:
    """Describe the machine the numbers come from."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = subprocess.run(
            ["nproc"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        import os  # noqa: PLC0415  # only when nproc is missing

        cores = str(os.cpu_count())
    return {
        "nproc": cores,
        "cpu": cpu,
        "python": sys.version.split()[0],
        "trio": trio.__version__,
        "platform": platform.platform(),
    }


def table(rows: Sequence[Row]) -> str:
    """Format *rows* as one aligned plain-text table."""
    header = Row("section", "case", "measured", "target", "verdict")
    lines = [header, *rows]
    widths = [
        max(len(getattr(row, field)) for row in lines)
        for field in ("section", "case", "measured", "target")
    ]

    def fmt(row: Row) -> str:
        cells = (row.section, row.case, row.measured, row.target)
        text = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        return f"{text}  {row.verdict}".rstrip()

    rule = "-" * (sum(widths) + 2 * len(widths) + len("verdict"))
    return "\n".join([fmt(header), rule, *(fmt(row) for row in rows)])


async def peak_bytes(fn: Callable[[], Awaitable[object]]) -> int:
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

"""Memory growth over 10,000 consecutive runs of a small pipeline."""

from __future__ import annotations

import gc
import logging
import tracemalloc
from typing import Any

import structlog
import trio

from actors import (
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    RetryConfig,
    StageDefinition,
)

from ._common import Row, verdict

LIMIT = 1024 * 1024


async def _work(value: Any, context: PipelineContext[Any]) -> Any:
    await trio.lowlevel.checkpoint()
    context.increment_metric("calls")
    return value


async def _flaky(value: Any, context: PipelineContext[Any]) -> Any:
    # Fails every other call, so the retry path is part of every run.
    count = context.get_state("flaky", 0) + 1
    context.set_state("flaky", count)
    if count % 2:
        raise ValueError("flaky")
    return value


def small() -> PipelineDefinition:
    """A diamond with a retried stage and a non-critical failure."""

    async def broken(value: Any, context: PipelineContext[Any]) -> Any:
        raise RuntimeError("non-critical")

    return PipelineDefinition(
        name="small",
        stages=[
            StageDefinition("a", _work),
            StageDefinition(
                "b",
                _flaky,
                inputs=["a"],
                retry_config=RetryConfig(max_attempts=2, initial_delay_ms=0),
            ),
            StageDefinition("c", _work, inputs=["a"], timeout_ms=60_000),
            StageDefinition("d", _work, inputs=["b", "c"]),
            StageDefinition("e", broken, inputs=["a"], critical=False),
        ],
    )


async def _runs(
    executor: PipelineExecutor, pipeline: PipelineDefinition, n: int
) -> None:
    for _ in range(n):
        result = await executor.execute(pipeline, 1)
        assert result.success


async def _measure(quick: bool) -> list[Row]:
    rows: list[Row] = []
    count = 2_000 if quick else 10_000
    for label, executor in (
        ("log_events=False", PipelineExecutor(log_events=False)),
        ("logging on (WARNING)", PipelineExecutor()),
    ):
        pipeline = small()
        await _runs(executor, pipeline, 500)  # warm caches
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await _runs(executor, pipeline, count // 2)
            gc.collect()
            half = tracemalloc.get_traced_memory()[0]
            await _runs(executor, pipeline, count - count // 2)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        growth = after - before
        rows.append(
            Row(
                "memory",
                f"{count:,} runs of a 5-stage pipeline, {label}",
                f"{growth / 1024:+.1f} KiB traced "
                f"(second half {(after - half) / 1024:+.1f} KiB)",
                "< 1 MB",
                verdict(growth < LIMIT),
            )
        )
    return rows


def run(quick: bool = False) -> list[Row]:
    """Measure memory growth over many consecutive runs."""
    # Warnings (the retry) and errors (the non-critical failure) are still
    # rendered, into strings that are thrown away, so nothing is printed.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    try:
        return trio.run(_measure, quick)
    finally:
        structlog.reset_defaults()

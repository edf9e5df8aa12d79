"""Issue 2: per-stage overhead of no-op chains and layered DAGs vs a baseline."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import structlog
import trio

from actors import PipelineExecutor

from ._common import (
    Deps,
    Row,
    baseline_channels,
    baseline_dag,
    chain,
    interleaved,
    layered,
    median,
    pipeline_of,
    verdict,
)

TARGET = 1.5


async def _measure(quick: bool) -> list[Row]:
    rows: list[Row] = []
    quiet = PipelineExecutor(log_events=False)
    logged = PipelineExecutor()  # structlog filtered at WARNING by the caller
    shapes: list[tuple[str, Callable[[int], Deps]]] = [
        ("chain", chain),
        ("layered w=50", layered),
    ]
    for shape, make in shapes:
        for n in (1_000, 10_000):
            deps = make(n)
            pipeline = pipeline_of(deps)
            pipeline.validate_pipeline()  # validation is measured in "scaling"

            def run_with(
                executor: PipelineExecutor, p: object = pipeline
            ) -> Callable[[], Awaitable[object]]:
                return lambda: executor.execute(p)  # type: ignore[arg-type]  # p is the pipeline

            repeats = (
                (5 if n >= 10_000 else 15) if quick else (9 if n >= 10_000 else 31)
            )
            samples = await interleaved(
                {
                    "baseline": lambda d=deps: baseline_dag(d),  # type: ignore[misc]  # default binds the loop value
                    "channels": lambda d=deps: baseline_channels(d),  # type: ignore[misc]  # same
                    "actors": run_with(quiet),
                    "actors+log": run_with(logged),
                },
                repeats,
            )
            base = median(samples["baseline"])
            ours = median(samples["actors"])
            logs = median(samples["actors+log"])
            floor = median(samples["channels"])
            ratio = ours / base
            rows.append(
                Row(
                    "dag overhead",
                    f"{shape} n={n:,}",
                    f"{ours / n * 1e6:.1f} us/stage vs baseline "
                    f"{base / n * 1e6:.1f} -> {ratio:.2f}x",
                    f"<= {TARGET}x",
                    verdict(ratio <= TARGET),
                )
            )
            rows.append(
                Row(
                    "dag overhead",
                    f"{shape} n={n:,} vs hand-written memory channels",
                    f"channels alone {floor / n * 1e6:.1f} us/stage = "
                    f"{floor / base:.2f}x the Event baseline; actors "
                    f"{ours / floor:.2f}x the channels",
                    "report",
                )
            )
            rows.append(
                Row(
                    "dag overhead",
                    f"{shape} n={n:,} logging on (WARNING)",
                    f"{logs / n * 1e6:.1f} us/stage -> {logs / base:.2f}x baseline",
                    "report",
                )
            )
    return rows


def run(quick: bool = False) -> list[Row]:
    """Measure chain and layered DAGs of 1,000 and 10,000 no-op stages."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    try:
        return trio.run(_measure, quick)
    finally:
        structlog.reset_defaults()

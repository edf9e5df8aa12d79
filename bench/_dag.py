"""Per-stage overhead of no-op chains and layered DAGs, against two hand-written floors.

The default ``PipelineExecutor()`` runs in two host set-ups, (a) nothing
configured and (b) structlog filtering at WARNING, and must stay within
:data:`TARGET` of the hand-written memory-channel baseline (the floor of the
actor design: one inbox channel per stage); the ratio to the one-``trio.Event``
-per-node baseline is reported beside it. (c) structlog at INFO with a JSON
renderer to a null sink is compared with ``log_events=False``, per stage. The
"user path" rows build the ``StageDefinition``s and the pipeline, validate it
and run it (what a user's script does), against the same baselines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from actors import PipelineDefinition, PipelineExecutor

from ._common import (
    Deps,
    Row,
    baseline_channels,
    baseline_dag,
    chain,
    hosts,
    interleaved,
    layered,
    median,
    pipeline_of,
    verdict,
)

TARGET = 1.3
"""The default executor against the memory-channel baseline, in (a) and (b)."""
INFO_TARGET = 1.10
"""(c) structlog at INFO with JSON to a null sink, against ``log_events=False``."""

SECTION = "dag"


def _run(
    executor: PipelineExecutor, pipeline: PipelineDefinition
) -> Callable[[], Awaitable[object]]:
    async def go() -> None:
        result = await executor.execute(pipeline)
        assert result.success, result.stage_results

    return go


def _user_path(
    executor: PipelineExecutor, deps: Deps
) -> Callable[[], Awaitable[object]]:
    """Build the definitions, then execute (which validates them), as a script does."""

    async def go() -> None:
        result = await executor.execute(pipeline_of(deps))
        assert result.success, result.stage_results

    return go


def _repeats(n: int, quick: bool) -> int:
    if quick:
        return 3 if n >= 10_000 else 7
    return 11 if n >= 10_000 else 31


async def _measure(quick: bool) -> list[Row]:
    rows: list[Row] = []
    default = PipelineExecutor()
    quiet = PipelineExecutor(log_events=False)
    shapes: list[tuple[str, Callable[[int], Deps]]] = [
        ("chain", chain),
        ("layered w=50", layered),
    ]
    with hosts() as host:
        for shape, make in shapes:
            for n in (1_000, 10_000):
                deps = make(n)
                pipeline = pipeline_of(deps)
                pipeline.validate_pipeline()  # the user-path rows include it
                samples = await interleaved(
                    {
                        "event": lambda d=deps: baseline_dag(d),  # type: ignore[misc]  # default binds the loop value
                        "channels": lambda d=deps: baseline_channels(d),  # type: ignore[misc]  # same
                        "quiet": _run(quiet, pipeline),
                        "a": _run(default, pipeline),
                        "b": _run(default, pipeline),
                        "c": _run(default, pipeline),
                        "user a": _user_path(default, deps),
                        "user b": _user_path(default, deps),
                    },
                    _repeats(n, quick),
                    {
                        "a": host.nothing,
                        "b": host.warning,
                        "c": host.info_json,
                        "user a": host.nothing,
                        "user b": host.warning,
                    },
                )
                rows.extend(_rows(f"{shape} n={n:,}", n, samples))
    return rows


def _rows(where: str, n: int, samples: dict[str, list[float]]) -> list[Row]:
    med = {name: median(values) for name, values in samples.items()}
    event, channels = med["event"], med["channels"]

    def us(name: str) -> str:
        return f"{med[name] / n * 1e6:.1f} us/stage"

    rows = [
        Row(
            SECTION,
            f"{where}: memory-channel baseline",
            f"{us('channels')} ({channels / event:.2f}x the Event baseline, "
            f"{event / n * 1e6:.1f} us/stage)",
            "floor",
        )
    ]
    for name, label in (
        ("a", "default, (a) nothing configured"),
        ("b", "default, (b) structlog at WARNING"),
        ("user a", "user path (build, validate, run), (a)"),
        ("user b", "user path (build, validate, run), (b)"),
    ):
        ratio = med[name] / channels
        rows.append(
            Row(
                SECTION,
                f"{where}: {label}",
                f"{us(name)}: {ratio:.2f}x channels, {med[name] / event:.2f}x Event",
                f"<= {TARGET}x channels",
                verdict(ratio <= TARGET),
            )
        )
    ratio = med["c"] / med["quiet"]
    rows.append(
        Row(
            SECTION,
            f"{where}: (c) structlog INFO, JSON to a null sink",
            f"{us('c')} vs log_events=False {us('quiet')}: {ratio:.2f}x "
            f"(quiet: {med['quiet'] / channels:.2f}x channels)",
            f"<= {INFO_TARGET}x log_events=False",
            verdict(ratio <= INFO_TARGET),
        )
    )
    return rows


def run(quick: bool = False) -> list[Row]:
    """Measure chain and layered DAGs of 1,000 and 10,000 no-op stages."""
    return trio.run(_measure, quick)

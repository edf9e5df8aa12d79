"""Makespan on an uneven DAG, against its critical path and a wave scheduler.

Stage durations are virtual (trio's MockClock), so the numbers are exact and
say what the scheduling policy costs, not how fast the machine is.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing

from actors import (
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
)

from ._common import Deps, Row, layered, verdict

DURATIONS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def uneven(seed: int) -> tuple[Deps, list[float]]:
    """Return a 10-wide, 8-deep layered DAG and a skewed duration per stage."""
    rng = random.Random(seed)
    deps = layered(80, width=10, seed=seed)
    return deps, [rng.choice(DURATIONS) for _ in deps]


def critical_path_s(deps: Deps, durations: list[float]) -> float:
    """Return the longest path through *deps*, weighted by *durations*."""
    finish: list[float] = []
    for inputs, duration in zip(deps, durations, strict=True):
        finish.append(max((finish[d] for d in inputs), default=0.0) + duration)
    return max(finish)


async def waves(deps: Deps, durations: list[float]) -> None:
    """Run *deps* level by level: a level starts when the whole previous one ended."""
    level: list[int] = []
    for inputs in deps:
        level.append(max((level[d] + 1 for d in inputs), default=0))
    for depth in range(max(level) + 1):
        async with trio.open_nursery() as nursery:
            for index, duration in enumerate(durations):
                if level[index] == depth:
                    nursery.start_soon(trio.sleep, duration)


def _sleeper(seconds: float) -> Callable[[Any, PipelineContext[Any]], Awaitable[None]]:
    async def work(value: Any, context: PipelineContext[Any]) -> None:
        await trio.sleep(seconds)

    return work


async def _makespans(seed: int) -> tuple[float, float, float]:
    deps, durations = uneven(seed)
    pipeline = PipelineDefinition(
        name="uneven",
        stages=[
            StageDefinition(
                f"s{i}", _sleeper(durations[i]), inputs=[f"s{d}" for d in inputs]
            )
            for i, inputs in enumerate(deps)
        ],
    )
    result = await PipelineExecutor(log_events=False).execute(pipeline)
    assert result.success
    begin = trio.current_time()
    await waves(deps, durations)
    wave = trio.current_time() - begin
    return result.total_duration_ms / 1000, wave, critical_path_s(deps, durations)


def run(quick: bool = False) -> list[Row]:
    """Compare makespans on a few uneven DAGs, in virtual time."""
    rows: list[Row] = []
    for seed in range(3 if quick else 5):
        clock = trio.testing.MockClock(autojump_threshold=0)
        actors_s, wave_s, path_s = trio.run(_makespans, seed, clock=clock)
        rows.append(
            Row(
                "makespan",
                f"uneven DAG #{seed} (80 stages, 8 levels)",
                f"actors {actors_s:g} s, critical path {path_s:g} s -> "
                f"{actors_s / path_s:.2f}; waves {wave_s:g} s -> "
                f"{wave_s / path_s:.2f}",
                "actors/path = 1.00",
                verdict(actors_s == path_s),
            )
        )
    return rows

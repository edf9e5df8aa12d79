"""A pipeline that logs every body call to a file, for the crash-and-resume test.

``python tests/checkpoint_crash_pipeline.py STORE CALLS`` runs it with a
FileStore at STORE, appending one line per body call to CALLS (flushed, so a
killed process leaves every call it made on disk).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
)
from actors.checkpoint import FileStore

ITEMS = list(range(12))


def build(calls: Path, delay_s: float) -> PipelineDefinition:
    """Return the pipeline; every body call appends ``stage:item`` to *calls*."""

    def log(line: str) -> None:
        with open(calls, "a", encoding="utf-8") as file:
            file.write(line + "\n")
            file.flush()
            os.fsync(file.fileno())

    async def load(value: object, context: PipelineContext) -> list[int]:
        log("load:-")
        await trio.sleep(delay_s)
        return ITEMS

    async def work(item: int, context: PipelineContext) -> int:
        log(f"work:{item}")
        await trio.sleep(delay_s)
        context.increment_metric("worked")
        return item * item

    async def total(values: list[int], context: PipelineContext) -> int:
        log("total:-")
        await trio.sleep(delay_s)
        return sum(values)

    return PipelineDefinition(
        name="crashy",
        stages=[
            StageDefinition("load", load),
            StageDefinition(
                "work",
                work,
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["load"],
                max_concurrency=2,
            ),
            StageDefinition("total", total, inputs=["work"]),
        ],
    )


async def main(store: Path, calls: Path) -> None:
    """Run the pipeline journaled in a FileStore at *store*."""
    executor = PipelineExecutor(store=FileStore(store), log_events=False)
    result = await executor.execute(build(calls, delay_s=0.05))
    assert result.success


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), Path(sys.argv[2]))

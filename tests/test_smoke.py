"""The smallest end-to-end run."""

from __future__ import annotations

import trio

from actors import (
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
)


async def test_two_stage_chain_passes_the_output_downstream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The second stage receives the first one's output."""

    async def double(value: int, context: PipelineContext) -> int:
        await trio.sleep(1)
        return value * 2

    pipeline = PipelineDefinition(
        name="chain",
        stages=[
            StageDefinition("a", double),
            StageDefinition("b", double, inputs=["a"]),
        ],
    )
    result = await PipelineExecutor().execute(pipeline, 3)
    assert result.success
    assert result.outputs == {"a": 6, "b": 12}
    assert result.total_duration_ms == 2000.0

"""Realistic user code, type-checked by mypy --strict but never run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, assert_type

import trio
import trio.lowlevel

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    RetryConfig,
    StageDefinition,
    StageResult,
    StageStatus,
    failure_result,
    run,
    success_result,
)


@dataclass
class Deps:
    """The application's own dependencies."""

    api_key: str


Context = PipelineContext[Deps]


class Summarize:
    """A stage object in the original style."""

    name = "summarize"

    async def execute(self, input: str, context: Context) -> StageResult[str]:
        """Summarise using the typed dependencies."""
        assert_type(context.deps, Deps)
        if not input:
            return failure_result("empty input", stage_name=self.name)
        return success_result(input[:10], stage_name=self.name)


async def fetch(input: str, context: Context) -> list[str]:
    """A stage function."""
    await trio.lowlevel.checkpoint()
    return [input]


async def main() -> None:
    """Build, run and inspect a pipeline."""
    definition = PipelineDefinition(
        name="typed",
        stages=[
            StageDefinition("fetch", fetch),
            StageDefinition(
                "summaries",
                Summarize(),
                inputs=["fetch"],
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=4,
                retry_config=RetryConfig(max_attempts=3, retry_on=(ConnectionError,)),
            ),
        ],
    )
    context = PipelineContext(deps=Deps(api_key="k"))
    assert_type(context, PipelineContext[Deps])
    assert_type(PipelineContext(), PipelineContext[None])
    result = await PipelineExecutor().execute(definition, "x", context)
    assert_type(result, PipelineResult)
    stage = result.get_result("summaries")
    assert_type(stage, StageResult[Any] | None)
    if stage is not None:
        assert_type(stage.status, StageStatus)
        assert_type(stage.item_errors, dict[int, str])
        assert_type(stage.partial, bool)
    assert_type(context.upstream_result("fetch"), StageResult[Any] | None)
    assert_type(success_result(3), StageResult[int])
    assert_type(run(definition, "x"), PipelineResult)

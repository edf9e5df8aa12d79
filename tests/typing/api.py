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
    StreamFunction,
    failure_result,
    run,
    success_result,
)
from actors.limits import Permit, RateLimit, RateLimited, RedisBackend, retry_after


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


async def summarize_within_quota(doc: str, context: PipelineContext[Deps]) -> str:
    """A stage that takes a share of a provider's quota around its call."""
    async with context.limit("openai", tokens=len(doc) // 4 + 200) as permit:
        assert_type(permit, Permit)
        permit.settle(tokens=180)
        try:
            await trio.lowlevel.checkpoint()
        except ConnectionError as exc:
            raise RateLimited("429", retry_after_s=retry_after(exc)) from exc
    return doc


async def quotas() -> None:
    """Declare limits on the executor, take them in stages or by declaration."""
    executor = PipelineExecutor(
        limits={
            "openai": RateLimit(requests_per_minute=500, tokens_per_minute=200_000),
            "shared": RateLimit(
                requests_per_second=10, backend=RedisBackend("redis://localhost/0")
            ),
        }
    )
    definition = PipelineDefinition(
        name="quota",
        stages=[
            StageDefinition("a", summarize_within_quota),
            StageDefinition(
                "b",
                summarize_within_quota,
                inputs=["a"],
                rate_limit="shared",
                cost=len,
                retry_config=RetryConfig(max_attempts=3, max_retry_after_ms=30_000),
            ),
        ],
    )
    assert_type(await executor.execute(definition, "x"), PipelineResult)


def testing_kit() -> None:
    """The testing kit: scripted stages, streams, crashes and resumes."""
    from actors.checkpoint import MemoryStore
    from actors.testing import (
        ScriptedStage,
        TestRun,
        faults,
        returns,
        script,
        with_stages,
        yields,
    )
    from actors.testing import (
        run as run_test,
    )

    assert_type(script(returns(1)), ScriptedStage)
    pages = script(yields([1, 2], every=0.25), yields([1, 2, 3]))
    assert_type(pages, StreamFunction)
    definition = PipelineDefinition(name="t", stages=[StageDefinition("pages", pages)])
    store = MemoryStore()
    crashed = run_test(
        with_stages(definition, pages=pages),
        store=store,
        faults=[faults.crash_at("stage_finished", stage="pages")],
    )
    assert_type(crashed, TestRun)
    assert_type(crashed.crashed_at, float | None)
    resumed = run_test(definition, store=store, resume=crashed.run_id)
    assert_type(resumed.result, PipelineResult)


async def live(executor: PipelineExecutor, pipeline: PipelineDefinition) -> None:
    """Watching a run: item taps, progress taps, the result."""
    from actors import ItemTap, LiveRun, Progress, ProgressTap, TapItem

    async with executor.open_run(pipeline, "query") as opened:
        assert_type(opened, LiveRun)
        async with opened.tap("summaries") as items:
            assert_type(items, ItemTap)
            async for item in items:
                assert_type(item, TapItem)
                assert_type(item.index, int)
        async with opened.progress(stage="summaries", buffer=16) as values:
            assert_type(values, ProgressTap)
            async for value in values:
                assert_type(value, Progress)
                assert_type(value.item, int | None)
            assert_type(values.dropped, int)
        opened.cancel("enough")
        assert_type(await opened.wait(), PipelineResult)
    assert_type(opened.result, PipelineResult)

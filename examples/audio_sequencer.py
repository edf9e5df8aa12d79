"""The flagship pipeline: audio analysis to per-group plans, with simulated stages.

audio -> (profile, lyrics) in parallel -> macro plan -> group plans (fan-out).
Lyrics runs only when the analysis found vocals, and may fail without failing
the run. Group planning calls a flaky simulated LLM provider from the context,
with retries and a concurrency limit. Run it with ``python
examples/audio_sequencer.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import trio

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    RetryConfig,
    StageDefinition,
    StageResult,
    failure_result,
    success_result,
)


class RateLimitError(Exception):
    """The simulated provider is busy; worth a retry."""


@dataclass
class FakeLLMProvider:
    """Answers prompts after a realistic delay, and sometimes refuses."""

    failure_rate: float = 0.3
    seed: int = 7
    calls: int = 0
    _random: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    async def complete(self, prompt: str, *, tokens: int) -> str:
        """Return a completion for *prompt*, or raise RateLimitError."""
        self.calls += 1
        await trio.sleep(self._random.uniform(0.05, 0.15))
        if self._random.random() < self.failure_rate:
            raise RateLimitError("rate_limit: try again later")
        return f"plan({prompt}, {tokens} tokens)"


Context = PipelineContext[FakeLLMProvider]


async def analyze_audio(path: str, context: Context) -> dict[str, Any]:
    """Decode the song and find its tempo and sections."""
    await trio.sleep(0.2)
    context.set_state("has_lyrics", True)
    context.add_metric("audio_duration_ms", 184_000)
    return {"path": path, "tempo": 128, "sections": ["intro", "verse", "chorus"]}


class AudioProfileStage:
    """A stage object in the wave executor's style: returns a StageResult."""

    name = "audio_profile"

    async def execute(
        self, audio: dict[str, Any], context: Context
    ) -> StageResult[dict[str, Any]]:
        """Describe the song's energy, one section at a time."""
        await trio.sleep(0.3)
        energy = {section: 0.5 + 0.1 * i for i, section in enumerate(audio["sections"])}
        return success_result({"energy": energy}, stage_name=self.name)


async def transcribe_lyrics(audio: dict[str, Any], context: Context) -> list[str]:
    """Find the words; non-critical, so a failure only loses the lyrics."""
    await trio.sleep(0.25)
    return ["la", "la", "la"]


class MacroPlannerStage:
    """Plans the whole show from the profile and (maybe) the lyrics."""

    name = "macro_planner"

    async def execute(self, inputs: dict[str, Any], context: Context) -> StageResult[Any]:
        """Turn the profile and lyrics into one plan per display group."""
        if inputs["profile"] is None:
            return failure_result("no audio profile", stage_name=self.name)
        plan = await context.deps.complete("macro", tokens=1500)
        context.increment_metric("tokens_used", 1500)
        groups = [f"group-{n}" for n in range(8)]
        return success_result({"plan": plan, "groups": groups}, stage_name=self.name)


async def list_groups(macro: dict[str, Any], context: Context) -> list[str]:
    """Hand the display groups to the fan-out stage."""
    return list(macro["groups"])


async def plan_group(group: str, context: Context) -> str:
    """Plan one display group with the LLM (retried when rate limited)."""
    plan = await context.deps.complete(group, tokens=400)
    context.increment_metric("tokens_used", 400)
    return plan


def build_pipeline() -> PipelineDefinition:
    """Return the audio sequencer pipeline."""
    return PipelineDefinition(
        name="audio_sequencer",
        stages=[
            StageDefinition("audio", analyze_audio),
            StageDefinition("profile", AudioProfileStage(), inputs=["audio"]),
            StageDefinition(
                "lyrics",
                transcribe_lyrics,
                pattern=ExecutionPattern.CONDITIONAL,
                inputs=["audio"],
                condition=lambda ctx: bool(ctx.get_state("has_lyrics", False)),
                critical=False,
            ),
            StageDefinition(
                "macro",
                MacroPlannerStage(),
                inputs=["profile", "lyrics"],
                retry_config=RetryConfig(
                    max_attempts=4, initial_delay_ms=100, retryable_errors=["rate_limit"]
                ),
            ),
            StageDefinition("group_contexts", list_groups, inputs=["macro"]),
            StageDefinition(
                "groups",
                plan_group,
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["group_contexts"],
                max_concurrency=3,
                timeout_ms=1000,
                retry_config=RetryConfig(
                    max_attempts=5, initial_delay_ms=100, retry_on=(RateLimitError,)
                ),
            ),
        ],
    )


pipeline = build_pipeline()


def make_context() -> Context:
    """Return a fresh context carrying the simulated provider."""
    return PipelineContext(deps=FakeLLMProvider())


async def main() -> PipelineResult:
    """Run the pipeline once and print what happened."""
    context = make_context()
    result = await PipelineExecutor(log_events=False).execute(
        pipeline, "song.wav", context
    )
    for stage_id, stage in result.stage_results.items():
        print(f"{stage_id:16} {stage.status:10} attempts={stage.attempts}")
    print(f"success={result.success} tokens={result.metadata.get('tokens_used')}")
    print(f"critical path: {' -> '.join(result.critical_path())}")
    return result


if __name__ == "__main__":
    outcome = trio.run(main)
    raise SystemExit(0 if outcome.success else 1)


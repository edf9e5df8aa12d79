"""The flagship pipeline: from a song to a light show plan, with simulated stages.

::

    audio -> profile ----------> macro -> group_contexts -> groups (fan-out)
          \\-> lyrics (optional) -/

* ``audio`` analyses the song and records in the context's state whether it
  has vocals;
* ``profile`` and ``lyrics`` then run at the same time; ``lyrics`` runs only
  when the song has vocals (CONDITIONAL) and may fail without failing the run
  (``critical=False``);
* ``macro`` plans the whole show from both (two inputs arrive as a dict);
* ``groups`` plans each display group with the LLM, three at a time, retrying
  when the simulated provider rate-limits.

Every latency is simulated with ``trio.sleep`` (the run takes about 1.5 s) and
the simulated provider is deterministic, so two runs tell the same story.
Token use is counted in the context's metrics.

Run it through the command line (this is what ``tox run -e example`` does)::

    actors run examples/audio_sequencer.py:pipeline \\
        --context examples/audio_sequencer.py:make_context

or as a script: ``python examples/audio_sequencer.py``. Pass another song
with ``--input '"instrumental.wav"'`` to see ``lyrics`` skipped.
"""

from __future__ import annotations

import collections
import zlib
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

DEFAULT_SONG = "demo_song.wav"


class RateLimitError(Exception):
    """The simulated provider is busy; worth a retry."""


@dataclass(frozen=True)
class Completion:
    """What the simulated provider answers."""

    text: str
    tokens: int


def _stable(text: str) -> int:
    # A fixed number per prompt (unlike hash(), the same in every process).
    return zlib.crc32(text.encode())


@dataclass
class SimulatedLLM:
    """Answers prompts after a realistic latency; some prompts get rate-limited.

    ``rate_limits`` says how many times a prompt is refused before it is
    answered, so the story is the same on every run whatever the scheduling.
    """

    latency_s: float = 0.12
    rate_limits: dict[str, int] = field(
        default_factory=lambda: {"macro": 1, "group:chorus-lights": 1, "group:roof": 2}
    )
    calls: int = 0
    _seen: collections.Counter[str] = field(default_factory=collections.Counter)

    async def complete(self, prompt: str, *, max_tokens: int) -> Completion:
        """Return a completion of *prompt*, or raise :class:`RateLimitError`."""
        self.calls += 1
        self._seen[prompt] += 1
        await trio.sleep(self.latency_s + (_stable(prompt) % 5) / 100)
        if self._seen[prompt] <= self.rate_limits.get(prompt, 0):
            raise RateLimitError(f"rate_limit: {prompt!r} throttled, retry later")
        tokens = min(max_tokens, 200 + _stable(prompt) % 300)
        return Completion(f"plan for {prompt}", tokens)


@dataclass(frozen=True)
class JobConfig:
    """What this job is about: the display groups of the house."""

    display_groups: tuple[str, ...] = (
        "roof",
        "windows",
        "tree",
        "arch",
        "chorus-lights",
        "garage",
        "path",
        "star",
    )
    max_tokens: int = 800


Context = PipelineContext[None]


def _llm(context: Context) -> SimulatedLLM:
    provider: SimulatedLLM = context.provider
    return provider


def _count_tokens(context: Context, completion: Completion) -> None:
    context.increment_metric("llm_calls")
    context.increment_metric("tokens_used", completion.tokens)


class AudioAnalysisStage:
    """Decodes the song and finds its tempo, sections and vocals."""

    name = "audio_analysis"

    async def execute(
        self, path: str | None, context: Context
    ) -> StageResult[dict[str, Any]]:
        """Analyse *path* (the demo song when no input was given)."""
        path = path or DEFAULT_SONG
        await trio.sleep(0.3)
        has_vocals = "instrumental" not in path
        context.set_state("has_lyrics", has_vocals)
        context.add_metric("audio_duration_ms", 184_000)
        analysis = {
            "path": path,
            "tempo": 128,
            "sections": ["intro", "verse", "chorus", "verse", "chorus", "outro"],
        }
        return success_result(analysis, stage_name=self.name)


class AudioProfileStage:
    """Asks the LLM to describe the song's energy and mood."""

    name = "audio_profile"

    async def execute(
        self, audio: dict[str, Any], context: Context
    ) -> StageResult[dict[str, Any]]:
        """Describe the song, section by section."""
        completion = await _llm(context).complete("profile", max_tokens=600)
        _count_tokens(context, completion)
        energy = {n: round(0.4 + 0.1 * n, 1) for n in range(len(audio["sections"]))}
        return success_result(
            {"mood": "festive", "energy": energy, "notes": completion.text},
            stage_name=self.name,
        )


async def transcribe_lyrics(audio: dict[str, Any], context: Context) -> list[str]:
    """Find the words (only for songs with vocals; a failure only loses them)."""
    await trio.sleep(0.25)
    return ["deck", "the", "halls"]


class MacroPlannerStage:
    """Plans the whole show from the profile and, when there are any, the lyrics."""

    name = "macro_planner"

    async def execute(
        self, inputs: dict[str, Any], context: Context
    ) -> StageResult[dict[str, Any]]:
        """Turn ``{"profile": ..., "lyrics": ...}`` into one theme per section."""
        if inputs["profile"] is None:
            return failure_result("no audio profile", stage_name=self.name)
        job: JobConfig = context.job_config
        completion = await _llm(context).complete("macro", max_tokens=job.max_tokens)
        _count_tokens(context, completion)
        plan = {
            "theme": "warm white with red accents",
            "sings_along": inputs["lyrics"] is not None,
            "notes": completion.text,
        }
        return success_result(plan, stage_name=self.name)


async def build_group_contexts(
    macro: dict[str, Any], context: Context
) -> list[dict[str, Any]]:
    """Give each display group the plan it must follow (the fan-out's list)."""
    job: JobConfig = context.job_config
    return [{"group": group, "theme": macro["theme"]} for group in job.display_groups]


async def plan_group(group: dict[str, Any], context: Context) -> dict[str, Any]:
    """Plan one display group with the LLM (retried when rate-limited)."""
    job: JobConfig = context.job_config
    prompt = f"group:{group['group']}"
    completion = await _llm(context).complete(prompt, max_tokens=job.max_tokens)
    _count_tokens(context, completion)
    return {"group": group["group"], "plan": completion.text}


def build_pipeline() -> PipelineDefinition:
    """Return the audio sequencer pipeline."""
    return PipelineDefinition(
        name="audio_sequencer",
        description="From a song to a plan for every display group.",
        stages=[
            StageDefinition("audio", AudioAnalysisStage(), description="analysis"),
            StageDefinition("profile", AudioProfileStage(), inputs=["audio"]),
            StageDefinition(
                "lyrics",
                transcribe_lyrics,
                pattern=ExecutionPattern.CONDITIONAL,
                inputs=["audio"],
                condition=lambda context: bool(context.get_state("has_lyrics")),
                critical=False,
            ),
            StageDefinition(
                "macro",
                MacroPlannerStage(),
                inputs=["profile", "lyrics"],
                retry_config=RetryConfig(
                    max_attempts=3,
                    initial_delay_ms=100,
                    retryable_errors=["rate_limit"],
                ),
            ),
            StageDefinition("group_contexts", build_group_contexts, inputs=["macro"]),
            StageDefinition(
                "groups",
                plan_group,
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["group_contexts"],
                max_concurrency=3,
                timeout_ms=1000,
                retry_config=RetryConfig(
                    max_attempts=4, initial_delay_ms=100, retry_on=(RateLimitError,)
                ),
            ),
        ],
    )


pipeline = build_pipeline()


def make_context() -> Context:
    """Return a fresh context: the simulated provider and the job's settings."""
    return PipelineContext(provider=SimulatedLLM(), job_config=JobConfig())


async def main(song: str | None = None) -> PipelineResult:
    """Run the pipeline once on *song* and print what happened."""
    result = await PipelineExecutor().execute(pipeline, song, make_context())
    for stage_id, stage in result.stage_results.items():
        print(f"{stage_id:16} {stage.status:10} attempts={stage.attempts}")
    print(f"success={result.success} tokens={result.metadata.get('tokens_used')}")
    print(f"critical path: {' -> '.join(result.critical_path())}")
    return result


if __name__ == "__main__":
    import sys

    outcome = trio.run(main, sys.argv[1] if len(sys.argv) > 1 else None)
    raise SystemExit(0 if outcome.success else 1)

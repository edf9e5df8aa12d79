"""Stream an LLM's tokens to the terminal while the pipeline runs.

``questions`` is a stream (an async generator): each question flows on the
moment it arrives. ``answers`` fans out over it, two at a time; each answer
comes from a fake LLM that publishes every token with ``ctx.emit(token)``.
``brief`` waits for every answer. The caller opens the run with
``open_run`` and reads two taps while it goes: the tokens (a lossy progress
tap: a slow terminal drops the oldest tokens, never stalls the run) and the
finished answers (a lossless item tap, each with its question's index).

Run it with ``python examples/streaming_tokens.py``; ``actors run
examples/streaming_tokens.py`` runs the same pipeline without the taps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio

from actors import (
    ExecutionPattern,
    LiveRun,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    StageDefinition,
)

ANSWERS = {
    "What does trio guarantee?": "no task outlives its nursery",
    "Why stream a fan-out?": "each item starts as soon as it exists",
    "What does a lossy tap drop?": "the oldest values a slow reader missed",
}


async def questions(_: Any, context: PipelineContext) -> AsyncIterator[str]:
    """Yield the questions as they come in, one every 0.25 s."""
    for i, question in enumerate(ANSWERS):
        if i:
            await trio.sleep(0.25)
        yield question


async def answer(question: str, context: PipelineContext) -> str:
    """A fake LLM: one token every 0.1 s, each published as progress."""
    tokens = ANSWERS[question].split()
    for token in tokens:
        await trio.sleep(0.1)
        context.emit(token)
    await trio.sleep(0.02)  # the end of the response
    return " ".join(tokens)


async def brief(answers: list[str], context: PipelineContext) -> str:
    """Count the words of every answer."""
    return f"{len(answers)} answers, {sum(len(a.split()) for a in answers)} words"


pipeline = PipelineDefinition(
    name="streaming_tokens",
    stages=[
        StageDefinition("questions", questions),
        StageDefinition(
            "answers",
            answer,
            pattern=ExecutionPattern.FAN_OUT,
            inputs=["questions"],
            max_concurrency=2,
        ),
        StageDefinition("brief", brief, inputs=["answers"]),
    ],
)


async def show_tokens(run: LiveRun) -> None:
    """Print each answer so far as its tokens arrive, with its question's index."""
    so_far: dict[int | None, list[str]] = {}
    async with run.progress(stage="answers") as tokens:
        async for token in tokens:
            words = so_far.setdefault(token.item, [])
            words.append(token.value)
            print(f"  [{token.item}] {' '.join(words)} ...")
        if tokens.dropped:
            print(f"  ({tokens.dropped} tokens not shown: the terminal fell behind)")


async def main() -> PipelineResult:
    """Run the pipeline, printing tokens and finished answers as they come."""
    async with (
        PipelineExecutor().open_run(pipeline) as run,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(show_tokens, run)
        async with run.tap("answers") as answers:
            async for done in answers:
                print(f"[{done.index}] done: {done.output}")
    result = run.result
    print(result.outputs["brief"])
    return result


if __name__ == "__main__":
    trio.run(main)

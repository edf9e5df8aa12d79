"""Pipelines and factories that the command-line tests load as TARGETs."""

from __future__ import annotations

import os
import signal
from typing import Any

import structlog
import trio

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    RetryConfig,
    StageDefinition,
)


async def double(value: int, context: PipelineContext) -> int:
    """Double the input after one second."""
    await trio.sleep(1)
    return value * 2


async def flaky(value: int, context: PipelineContext[int | None]) -> int:
    """Fail the first attempt, then add the context's ``deps`` (or 0)."""
    attempt = context.get_state("flaky", 0) + 1
    context.set_state("flaky", attempt)
    await trio.sleep(0.5)
    if attempt == 1:
        raise ConnectionError("reset")
    return value + (context.deps or 0)


async def boom(value: Any, context: PipelineContext) -> None:
    """Always fail."""
    await trio.sleep(0.25)
    raise RuntimeError("boom")


async def forever(value: Any, context: PipelineContext) -> None:
    """Never finish on its own."""
    await trio.sleep_forever()


async def press_ctrl_c(value: Any, context: PipelineContext) -> None:
    """Send SIGINT to this process once, then wait to be cancelled."""
    await trio.sleep(2)
    os.kill(os.getpid(), signal.SIGINT)
    await trio.sleep_forever()


async def press_ctrl_c_twice(value: Any, context: PipelineContext) -> None:
    """Send SIGINT, ignore the cancellation for a while, then send it again."""
    await trio.sleep(2)
    os.kill(os.getpid(), signal.SIGINT)
    with trio.CancelScope(shield=True):  # a stage slow to clean up
        await trio.sleep(5)
        os.kill(os.getpid(), signal.SIGINT)
        await trio.sleep(5)


async def send_sigterm(value: Any, context: PipelineContext) -> None:
    """Send SIGTERM to this process once, then wait to be cancelled."""
    await trio.sleep(2)
    os.kill(os.getpid(), signal.SIGTERM)
    await trio.sleep_forever()


async def send_sigterm_twice(value: Any, context: PipelineContext) -> None:
    """Send SIGTERM, ignore the cancellation for a while, then send it again."""
    await trio.sleep(2)
    os.kill(os.getpid(), signal.SIGTERM)
    with trio.CancelScope(shield=True):  # a stage slow to clean up
        await trio.sleep(5)
        os.kill(os.getpid(), signal.SIGTERM)
        await trio.sleep(5)


async def shielded_cleanup(value: Any, context: PipelineContext) -> None:
    """Wait to be cancelled, then take 3 s (shielded) to clean up."""
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.sleep(3)


async def chatty(value: Any, context: PipelineContext) -> None:
    """Log one info and one warning event of its own."""
    log = structlog.get_logger("my_app")
    log.info("cache_warmed")
    log.warning("disk_almost_full", free_mb=12)


async def leave(value: Any, context: PipelineContext) -> None:
    """Exit the program from inside a stage."""
    raise SystemExit(3)


async def split(value: Any, context: PipelineContext) -> list[int]:
    """Return three items."""
    return [1, 2, 3]


ok = PipelineDefinition(
    name="ok",
    stages=[
        StageDefinition("first", double),
        StageDefinition(
            "second",
            flaky,
            inputs=["first"],
            retry_config=RetryConfig(max_attempts=2, initial_delay_ms=250),
        ),
    ],
)

fans = PipelineDefinition(
    name="fans",
    stages=[
        StageDefinition("split", split),
        StageDefinition(
            "each",
            double,
            pattern=ExecutionPattern.FAN_OUT,
            inputs=["split"],
            max_concurrency=2,
        ),
    ],
)

failing = PipelineDefinition(
    name="failing",
    stages=[
        StageDefinition("first", double),
        StageDefinition("broken", boom, inputs=["first"]),
        StageDefinition("after", double, inputs=["broken"]),
    ],
)

noisy = PipelineDefinition(name="noisy", stages=[StageDefinition("talk", chatty)])

exits = PipelineDefinition(name="exits", stages=[StageDefinition("leave", leave)])

slow = PipelineDefinition(name="slow", stages=[StageDefinition("wait", forever)])

interrupted = PipelineDefinition(
    name="interrupted", stages=[StageDefinition("press", press_ctrl_c)]
)

stubborn = PipelineDefinition(
    name="stubborn", stages=[StageDefinition("press", press_ctrl_c_twice)]
)

terminated = PipelineDefinition(
    name="terminated", stages=[StageDefinition("term", send_sigterm)]
)

terminated_twice = PipelineDefinition(
    name="terminated_twice", stages=[StageDefinition("term", send_sigterm_twice)]
)

slow_to_stop = PipelineDefinition(
    name="slow_to_stop",
    stages=[
        StageDefinition("press", press_ctrl_c),
        StageDefinition("linger", shielded_cleanup),
    ],
)

invalid = PipelineDefinition(
    name="invalid",
    stages=[
        StageDefinition("a", double, inputs=["c"]),
        StageDefinition("b", double, inputs=["a"]),
        StageDefinition("c", double, inputs=["b"]),
        StageDefinition("d", double, inputs=["nowhere"]),
        StageDefinition("e", double, pattern=ExecutionPattern.CONDITIONAL),
    ],
)


def make_ok() -> PipelineDefinition:
    """Return the ``ok`` pipeline (a zero-argument factory)."""
    return ok


def needs_args(name: str) -> PipelineDefinition:
    """Not a valid factory: it takes an argument."""
    return ok


def returns_number() -> int:
    """Not a valid factory: it returns something else."""
    return 42


def raises() -> PipelineDefinition:
    """Not a valid factory: it raises."""
    raise LookupError("no config found")


not_a_pipeline = "ok"


def make_context() -> PipelineContext[int]:
    """Return a context whose ``deps`` is 100."""
    return PipelineContext(deps=100)


shared_context = PipelineContext(deps=7)


def sigterm_while_starting() -> PipelineContext[int]:
    """A context factory during which SIGTERM arrives (the run is starting)."""
    os.kill(os.getpid(), signal.SIGTERM)
    return PipelineContext(deps=1)


def bad_context() -> str:
    """Not a valid context factory."""
    return "context"

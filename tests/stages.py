"""Small stage functions and helpers shared by the test modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
)

StageFn = Callable[[Any, PipelineContext[Any]], Awaitable[Any]]
Log = list[tuple[float, str]]


def sleeper(
    seconds: float, value: Any = None, *, log: Log | None = None, name: str = ""
) -> StageFn:
    """Return a stage that sleeps, then returns *value* (default: its input).

    With *log*, it records ``(time, "start NAME")`` and ``(time, "end NAME")``;
    the end is recorded even when the sleep is cancelled.
    """

    async def stage(input: Any, context: PipelineContext[Any]) -> Any:
        if log is not None:
            log.append((trio.current_time(), f"start {name}"))
        try:
            await trio.sleep(seconds)
        finally:
            if log is not None:
                log.append((trio.current_time(), f"end {name}"))
        return input if value is None else value

    return stage


def failing(
    seconds: float, message: str = "boom", *, log: Log | None = None
) -> StageFn:
    """Return a stage that sleeps, then raises ValueError(message).

    With *log*, it records ``(time, "attempt")`` as each attempt starts.
    """

    async def stage(input: Any, context: PipelineContext[Any]) -> Any:
        if log is not None:
            log.append((trio.current_time(), "attempt"))
        await trio.sleep(seconds)
        raise ValueError(message)

    return stage


async def execute(
    definition: PipelineDefinition, *args: Any, **kwargs: Any
) -> PipelineResult:
    """Run *definition* with event logging off."""
    return await PipelineExecutor(log_events=False).execute(definition, *args, **kwargs)


def fan_out(
    stage: StageFn, *, retry_delay_ms: float | None = None
) -> PipelineDefinition:
    """A pipeline ``fan`` with one FAN_OUT stage ``each``.

    With *retry_delay_ms*, each item may run twice, that long apart.
    """
    retry = (
        None
        if retry_delay_ms is None
        else RetryConfig(max_attempts=2, initial_delay_ms=retry_delay_ms)
    )
    return PipelineDefinition(
        name="fan",
        stages=[
            StageDefinition(
                "each", stage, pattern=ExecutionPattern.FAN_OUT, retry_config=retry
            )
        ],
    )

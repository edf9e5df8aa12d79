"""Declarations are frozen, and users' type checkers say so (never run).

Each assignment below fails at run time (pydantic raises ValidationError).
With the pydantic mypy plugin configured, mypy reports it as well; the
``type: ignore[misc]`` comments expect exactly that error, and
``warn_unused_ignores`` fails the type check if it ever stops being reported.
"""

from __future__ import annotations

from typing import Any

from actors import PipelineContext, PipelineDefinition, RetryConfig, StageDefinition


async def fetch(input: str, context: PipelineContext[Any]) -> str:
    """A stage function."""
    return input


def tweak() -> None:
    """Try to change declarations after the fact."""
    retry = RetryConfig(max_attempts=3)
    stage = StageDefinition("fetch", fetch, retry_config=retry)
    pipeline = PipelineDefinition(name="typed", stages=[stage])

    stage.timeout_ms = 5  # type: ignore[misc]
    retry.max_attempts = 5  # type: ignore[misc]
    pipeline.fail_fast = False  # type: ignore[misc]

    # The supported way: a changed copy.
    faster = stage.model_copy(update={"timeout_ms": 5})
    assert faster.timeout_ms == 5

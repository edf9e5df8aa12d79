"""Stages declared with offload=: validation when the graph is built, and runs."""

from __future__ import annotations

import re
from typing import Any

import pytest
from offload_work import HoldsLock, async_stage, needs_context, square

from actors import (
    ExecutionPattern,
    PipelineDefinition,
    PipelineExecutor,
    PipelineValidationError,
    StageDefinition,
    offload,
)


def one_stage(stage: Any, offloader: Any, **options: Any) -> PipelineDefinition:
    return PipelineDefinition(
        name="p", stages=[StageDefinition("work", stage, offload=offloader, **options)]
    )


class StageObject:
    """A stage object: its execute needs the context, so it cannot be offloaded."""

    name = "object"

    async def execute(self, value: Any, context: Any) -> Any:
        return value


def test_every_offload_problem_is_reported_at_build() -> None:
    """Each offloaded stage that cannot run is named, with the fix, all at once."""
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("ok", square, offload=offload.process()),
            StageDefinition("coro", async_stage, offload=offload.thread()),
            StageDefinition("ctx", needs_context, offload=offload.thread()),  # type: ignore[arg-type]  # wrong on purpose
            StageDefinition("lock", HoldsLock(), offload=offload.process()),
            StageDefinition("obj", StageObject(), offload=offload.thread()),
            StageDefinition("cls", StageObject, offload=offload.thread()),  # type: ignore[arg-type]  # wrong on purpose
            StageDefinition("str", square, offload="process"),  # type: ignore[arg-type]  # wrong on purpose
        ],
    )
    errors = pipeline.validate_pipeline()
    assert errors[:3] == [
        "stage 'coro': async_stage is async, but offload=thread() runs a plain "
        "sync function taking the input alone; make it a sync def, or drop "
        "offload= and await offload.to_thread(...) inside the async stage",
        "stage 'ctx': with offload=thread() the function is called with the input "
        "alone, but needs_context(x: 'int', context: 'object') -> 'int' cannot be; "
        "drop the context parameter (the context stays in the supervisor)",
        "stage 'lock': HoldsLock cannot be offloaded: process() sends it to worker "
        "processes with stdlib pickle, which refuses it (TypeError: cannot pickle "
        "'_thread.lock' object); define it at module level (no lambda, closure or "
        "nested function) with picklable defaults and bound objects, or use "
        "offload.thread() or offload.dask(client) (cloudpickle)",
    ]
    assert errors[3:] == [
        "stage 'obj': with offload= the stage must be a plain sync function taking "
        "the input alone, got StageObject",
        "stage 'cls': with offload= the stage must be a plain sync function taking "
        "the input alone, got the class StageObject",
        "stage 'str': offload= expects offload.thread(), offload.process() or "
        "offload.dask(client), got str",
    ]


async def test_execute_refuses_a_closure_for_process() -> None:
    """execute raises the build error for a closure offloaded to processes."""

    def closure(x: int) -> int:
        return x

    with pytest.raises(
        PipelineValidationError,
        match=re.escape("stage 'work': test_execute_refuses_a_closure_for_process"),
    ):
        await PipelineExecutor(log_events=False).execute(
            one_stage(closure, offload.process()), initial_input=1
        )


def test_a_sync_function_without_offload_is_still_refused() -> None:
    """Without offload=, a sync function is not a stage."""
    errors = one_stage(square, None).validate_pipeline()
    assert errors == [
        "stage 'work': stage must be an object with an async execute(input, "
        "context) method or an async function, got function"
    ]


def test_fan_out_with_offload_validates() -> None:
    """A FAN_OUT stage with max_concurrency and offload= is valid."""
    pipeline = one_stage(
        square,
        offload.thread(),
        pattern=ExecutionPattern.FAN_OUT,
        max_concurrency=2,
    )
    assert pipeline.validate_pipeline() == []

"""Bad definitions are refused before any stage runs, with every problem listed."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
import trio

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineValidationError,
    RetryConfig,
    StageDefinition,
)

ran: list[str] = []


async def noop(input: Any, context: PipelineContext[Any]) -> None:
    """Record that a stage ran."""
    ran.append("noop")


def stage(id: str, *inputs: str, **options: Any) -> StageDefinition:
    """Build a no-op stage."""
    return StageDefinition(id, noop, inputs=inputs, **options)


def test_valid_pipeline_has_no_problems() -> None:
    """validate_pipeline returns an empty list for a valid definition."""
    definition = PipelineDefinition(name="ok", stages=[stage("a"), stage("b", "a")])
    assert definition.validate_pipeline() == []


def test_every_problem_is_listed_at_once() -> None:
    """All broken rules are reported together, in a stable order."""
    definition = PipelineDefinition(
        name="broken",
        stages=[
            stage("a", "lod"),
            stage("a"),
            stage(""),
            stage("c", pattern=ExecutionPattern.CONDITIONAL),
            stage("t", timeout_ms=0),
            stage("n", timeout_ms=math.nan),
            stage(
                "r",
                retry_config=RetryConfig(
                    max_attempts=0,
                    initial_delay_ms=-1,
                    backoff_multiplier=0.5,
                    max_delay_ms=-2,
                ),
            ),
            stage("m", max_concurrency=0, pattern=ExecutionPattern.FAN_OUT),
        ],
        timeout_ms=-5,
    )
    assert definition.validate_pipeline() == [
        "pipeline 'broken': timeout_ms must be > 0, got -5.0",
        "stage 'a' is defined twice (#1 and #2); stage ids must be unique",
        "stage #3 has an empty id; give it a name",
        "stage 'a' depends on unknown stage 'lod'; known stages: 'a', 'c', 't', 'n', 'r', 'm'",
        "stage 'c': CONDITIONAL needs a condition(context) -> bool",
        "stage 't': timeout_ms must be > 0, got 0.0",
        "stage 'n': timeout_ms must be > 0, got nan",
        "stage 'r': retry_config.max_attempts must be at least 1, got 0",
        "stage 'r': retry_config.initial_delay_ms must be >= 0, got -1.0",
        "stage 'r': retry_config.max_delay_ms must be >= 0, got -2.0",
        "stage 'r': retry_config.backoff_multiplier must be a finite number >= 1, got 0.5",
        "stage 'r': retry_config.max_delay_ms (-2.0) must be >= initial_delay_ms (-1.0)",
        "stage 'm': max_concurrency must be at least 1, got 0",
    ]


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([], r"pipeline 'p' has no stages; add at least one"),
        ([stage("a", "a")], r"dependency cycle: a -> a"),
        (
            [stage("a", "c"), stage("b", "a"), stage("c", "b"), stage("d", "c")],
            r"dependency cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)",
        ),
        (
            [StageDefinition("x", 42)],  # type: ignore[arg-type]  # not a stage, on purpose
            r"stage 'x': stage must be an object with an async ",
        ),
        (
            [StageDefinition("x", lambda i, c: i)],
            r"stage 'x': stage must be .* got function",
        ),
        (
            [stage("x", condition="yes")],
            r"stage 'x': condition must be callable as condition\(context\), got str",
        ),
        (
            [stage("x", max_concurrency=2)],
            r"stage 'x': max_concurrency applies only to FAN_OUT",
        ),
        (
            [
                stage("a"),
                stage("b"),
                stage("x", "a", "b", pattern=ExecutionPattern.FAN_OUT),
            ],
            r"stage 'x': FAN_OUT takes at most one input \(the list to fan out over\), got 2",
        ),
        ([stage("a"), stage("x", "a", "a")], r"stage 'x' lists input 'a' twice"),
        (
            [
                stage(
                    "x",
                    retry_config=RetryConfig(initial_delay_ms=5000, max_delay_ms=10),
                )
            ],
            r"stage 'x': retry_config.max_delay_ms \(10.0\) must be >= initial_delay_ms",
        ),
        (
            [stage("x", retry_config=RetryConfig(jitter=2))],
            r"stage 'x': retry_config.jitter must be between 0 and 1, got 2.0",
        ),
    ],
)
async def test_execute_refuses_before_running(
    stages: list[StageDefinition], message: str
) -> None:
    """execute raises PipelineValidationError (a ValueError) and runs nothing."""
    ran.clear()
    definition = PipelineDefinition(
        name="p", stages=[stage("ok"), *stages] if stages else []
    )
    with pytest.raises(PipelineValidationError) as info:
        await PipelineExecutor(log_events=False).execute(definition)
    assert isinstance(info.value, ValueError)
    assert any(re.match(message, error) for error in info.value.errors), (
        info.value.errors
    )
    assert ran == []
    assert definition.validate_pipeline() == list(info.value.errors)


def test_error_message_lists_every_problem() -> None:
    """The exception's text names the pipeline and each problem on its own line."""
    error = PipelineValidationError("p", ["first", "second"])
    assert str(error) == "pipeline 'p' has 2 problems:\n  - first\n  - second"


def test_two_cycles_are_both_reported() -> None:
    """Separate cycles each get their own message."""
    definition = PipelineDefinition(
        name="p",
        stages=[stage("a", "b"), stage("b", "a"), stage("c", "c"), stage("d", "a")],
    )
    assert definition.validate_pipeline() == [
        "dependency cycle: b -> a -> b",
        "dependency cycle: c -> c",
    ]


def test_long_chain_validates_without_recursion() -> None:
    """A 100,000-stage chain validates iteratively."""
    stages = [stage("s0")] + [stage(f"s{i}", f"s{i - 1}") for i in range(1, 100_000)]
    assert PipelineDefinition(name="chain", stages=stages).validate_pipeline() == []


def test_long_cycle_is_found_without_recursion() -> None:
    """A 100,000-stage cycle is reported as a path, iteratively."""
    count = 100_000
    stages = [stage(f"s{i}", f"s{(i - 1) % count}") for i in range(count)]
    (error,) = PipelineDefinition(name="ring", stages=stages).validate_pipeline()
    assert error.startswith("dependency cycle: s")
    assert error.count(" -> ") == count


def test_declaration_order_does_not_matter() -> None:
    """Stages may be declared after the stages that depend on them."""
    definition = PipelineDefinition(
        name="p", stages=[stage("c", "b"), stage("b", "a"), stage("a")]
    )
    assert definition.validate_pipeline() == []


def test_positional_and_keyword_forms_are_equal() -> None:
    """StageDefinition takes id and stage by position or by keyword, like the original."""
    assert StageDefinition("a", noop, inputs=["x"]) == StageDefinition(
        id="a", stage=noop, inputs=("x",)
    )


async def test_validation_happens_once_per_definition(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A definition is compiled once and reused for later runs."""
    definition = PipelineDefinition(name="p", stages=[stage("a")])
    executor = PipelineExecutor(log_events=False)
    await executor.execute(definition)
    first = definition._graph
    await executor.execute(definition)
    assert first is not None
    assert definition._graph is first


def test_cycle_behind_an_already_walked_stage_is_reported() -> None:
    """A cycle reached only through a stage on another cycle is still reported."""
    definition = PipelineDefinition(
        name="p",
        stages=[
            stage("a", "b"),
            stage("b", "a"),
            stage("x", "a", "y"),
            stage("y", "x"),
        ],
    )
    assert definition.validate_pipeline() == [
        "dependency cycle: b -> a -> b",
        "dependency cycle: y -> x -> y",
    ]


def test_async_condition_is_refused() -> None:
    """An async condition would always look true, so it is refused up front."""

    async def condition(context: PipelineContext[Any]) -> bool:
        return False

    definition = PipelineDefinition(
        name="p",
        stages=[stage("c", condition=condition, pattern=ExecutionPattern.CONDITIONAL)],
    )
    assert definition.validate_pipeline() == [
        "stage 'c': condition must be a plain function returning a bool, "
        "got an async function"
    ]

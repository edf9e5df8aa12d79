"""The bad input catalogue: every invalid definition is refused up front.

Each entry of :data:`CATALOGUE` is one broken definition and the anchored
regexes its problems must match, naming the stage (or pipeline) and the rule.
``execute`` must raise :class:`actors.PipelineValidationError` with exactly
those problems before any stage runs: every pipeline holds a probe stage that
would record a call.

Then the converse: random valid DAGs, declared in any order, are never
refused; and a 100,000-stage chain validates without ``RecursionError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import shapes

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineValidationError,
    RetryConfig,
    StageDefinition,
)

CALLS: list[str] = []
"""Stage calls made by the probe; must stay empty for refused definitions."""


async def probe(value: Any, context: PipelineContext[Any]) -> None:
    """A valid stage that records that it ran."""
    CALLS.append("probe")


async def noop(value: Any, context: PipelineContext[Any]) -> None:
    """A valid stage that does nothing."""


def sync_function(value: Any, context: PipelineContext[Any]) -> None:
    """Not a coroutine function."""


class SyncExecute:
    """An object whose execute is not async."""

    name = "sync"

    def execute(self, input: Any, context: PipelineContext[Any]) -> None:
        """Return at once."""


class AsyncExecute:
    """A valid stage class (only its instances are stages)."""

    name = "async"

    async def execute(self, input: Any, context: PipelineContext[Any]) -> None:
        """Return at once."""


def s(id: str, *inputs: str, **options: Any) -> StageDefinition:
    """A no-op stage with the given inputs and options."""
    return StageDefinition(id, options.pop("stage", noop), inputs=inputs, **options)


def retry(**options: Any) -> RetryConfig:
    """A RetryConfig with *options*."""
    return RetryConfig(**options)


def always(context: PipelineContext[Any]) -> bool:
    """A valid condition."""
    return True


FAN = ExecutionPattern.FAN_OUT
KNOWN = "known stages: "


@dataclass(frozen=True)
class Bad:
    """One broken definition and the problems it must be refused with."""

    stages: tuple[StageDefinition, ...]
    problems: tuple[str, ...]
    timeout_ms: float | None = None


def bad(*stages: StageDefinition, problems: tuple[str, ...] | str, **kw: Any) -> Bad:
    """Build a catalogue entry (the probe stage is added when it runs)."""
    if isinstance(problems, str):
        problems = (problems,)
    return Bad(tuple(stages), problems, **kw)


NAN = float("nan")
CATALOGUE: dict[str, Bad] = {
    # Graph.
    "unknown input": bad(
        s("load"),
        s("sink", "lod"),
        problems=rf"stage 'sink' depends on unknown stage 'lod'; {KNOWN}"
        r"'load', 'sink', 'probe'",
    ),
    "unknown input of a fan-out": bad(
        s("fan", "nowhere", pattern=FAN),
        problems=rf"stage 'fan' depends on unknown stage 'nowhere'; {KNOWN}"
        r"'fan', 'probe'",
    ),
    "input listed twice": bad(
        s("a"), s("b", "a", "a"), problems=r"stage 'b' lists input 'a' twice"
    ),
    "self-loop": bad(s("a", "a"), problems=r"dependency cycle: a -> a"),
    "two-stage cycle": bad(
        s("a", "b"), s("b", "a"), problems=r"dependency cycle: b -> a -> b"
    ),
    "three-stage cycle behind a valid stage": bad(
        s("root"),
        s("a", "root", "c"),
        s("b", "a"),
        s("c", "b"),
        problems=r"dependency cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)",
    ),
    "fan-out in a cycle": bad(
        s("fan", "back", pattern=FAN),
        s("back", "fan"),
        problems=r"dependency cycle: (fan -> back -> fan|back -> fan -> back)",
    ),
    # Ids.
    "empty id": bad(
        s("a"), s(""), problems=r"stage #2 has an empty id; give it a name"
    ),
    "blank id": bad(s("   "), problems=r"stage #1 has an empty id; give it a name"),
    "duplicate id": bad(
        s("a"),
        s("b"),
        s("a"),
        problems=r"stage 'a' is defined twice \(#1 and #3\); stage ids must be unique",
    ),
    # Stage and condition types.
    "stage is an int": bad(
        s("a", stage=42),
        problems=r"stage 'a': stage must be an object with an async "
        r"execute\(input, context\) method or an async function, got int",
    ),
    "stage is a sync function": bad(
        s("a", stage=sync_function),
        problems=r"stage 'a': stage must be .* an async function, got function",
    ),
    "execute is not async": bad(
        s("a", stage=SyncExecute()),
        problems=r"stage 'a': stage must be .*, got SyncExecute whose execute "
        r"is not async",
    ),
    "stage is a class, not an instance": bad(
        s("a", stage=AsyncExecute),
        problems=r"stage 'a': stage must be .*, got the class AsyncExecute; "
        r"pass an instance \(AsyncExecute\(\)\)",
    ),
    "CONDITIONAL without a condition": bad(
        s("a", pattern=ExecutionPattern.CONDITIONAL),
        problems=r"stage 'a': CONDITIONAL needs a condition\(context\) -> bool",
    ),
    "condition is not callable": bad(
        s("a", condition=True),
        problems=r"stage 'a': condition must be callable as condition\(context\), "
        r"got bool",
    ),
    # Timeouts.
    "stage timeout zero": bad(
        s("a", timeout_ms=0), problems=r"stage 'a': timeout_ms must be > 0, got 0.0"
    ),
    "stage timeout negative": bad(
        s("a", timeout_ms=-5),
        problems=r"stage 'a': timeout_ms must be > 0, got -5.0",
    ),
    "stage timeout NaN": bad(
        s("a", timeout_ms=NAN), problems=r"stage 'a': timeout_ms must be > 0, got nan"
    ),
    "pipeline timeout zero": bad(
        s("a"),
        timeout_ms=0,
        problems=r"pipeline 'bad': timeout_ms must be > 0, got 0.0",
    ),
    "pipeline timeout NaN": bad(
        s("a"),
        timeout_ms=NAN,
        problems=r"pipeline 'bad': timeout_ms must be > 0, got nan",
    ),
    # Retry.
    "max_attempts zero": bad(
        s("a", retry_config=retry(max_attempts=0)),
        problems=r"stage 'a': retry_config.max_attempts must be at least 1, got 0",
    ),
    "negative initial delay": bad(
        s("a", retry_config=retry(initial_delay_ms=-1)),
        problems=r"stage 'a': retry_config.initial_delay_ms must be >= 0, got -1.0",
    ),
    "negative max delay": bad(
        s("a", retry_config=retry(initial_delay_ms=0, max_delay_ms=-1)),
        problems=(
            r"stage 'a': retry_config.max_delay_ms must be >= 0, got -1.0",
            r"stage 'a': retry_config.max_delay_ms \(-1.0\) must be >= "
            r"initial_delay_ms \(0.0\)",
        ),
    ),
    "backoff below one": bad(
        s("a", retry_config=retry(backoff_multiplier=0.5)),
        problems=r"stage 'a': retry_config.backoff_multiplier must be a finite number >= 1, got 0.5",
    ),
    "backoff infinite": bad(
        s("a", retry_config=retry(backoff_multiplier=float("inf"))),
        problems=r"stage 'a': retry_config.backoff_multiplier must be a finite number >= 1, got inf",
    ),
    "backoff NaN": bad(
        s("a", retry_config=retry(backoff_multiplier=NAN)),
        problems=r"stage 'a': retry_config.backoff_multiplier must be a finite number >= 1, got nan",
    ),
    "max delay below initial delay": bad(
        s("a", retry_config=retry(initial_delay_ms=1000, max_delay_ms=500)),
        problems=r"stage 'a': retry_config.max_delay_ms \(500.0\) must be >= "
        r"initial_delay_ms \(1000.0\)",
    ),
    "jitter above one": bad(
        s("a", retry_config=retry(jitter=2)),
        problems=r"stage 'a': retry_config.jitter must be between 0 and 1, got 2.0",
    ),
    # Limits and fan-out sources.
    "max_concurrency zero": bad(
        s("a", pattern=FAN, max_concurrency=0),
        problems=r"stage 'a': max_concurrency must be at least 1, got 0",
    ),
    "max_concurrency negative": bad(
        s("a", pattern=FAN, max_concurrency=-3),
        problems=r"stage 'a': max_concurrency must be at least 1, got -3",
    ),
    "max_concurrency on a sequential stage": bad(
        s("a", max_concurrency=4),
        problems=r"stage 'a': max_concurrency applies only to FAN_OUT stages",
    ),
    "fan-out over two sources": bad(
        s("x"),
        s("y"),
        s("fan", "x", "y", pattern=FAN),
        problems=r"stage 'fan': FAN_OUT takes at most one input \(the list to fan "
        r"out over\), got 2",
    ),
}


def _pipeline(entry: Bad) -> PipelineDefinition:
    return PipelineDefinition(
        name="bad",
        stages=(*entry.stages, StageDefinition("probe", probe)),
        timeout_ms=entry.timeout_ms,
    )


def test_catalogue_is_large_enough() -> None:
    """The catalogue holds at least 25 broken definitions."""
    assert len(CATALOGUE) >= 25


@pytest.mark.parametrize("name", list(CATALOGUE))
async def test_execute_refuses_before_any_stage_runs(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    """``execute`` raises PipelineValidationError naming the stage and the rule."""
    entry = CATALOGUE[name]
    CALLS.clear()
    with pytest.raises(PipelineValidationError) as caught:
        await PipelineExecutor(log_events=False).execute(_pipeline(entry))
    assert CALLS == []
    assert trio.current_time() == 0
    errors = caught.value.errors
    assert len(errors) == len(entry.problems), errors
    for problem, error in zip(entry.problems, errors, strict=True):
        assert re.fullmatch(problem, error), (problem, error)
    count = len(errors)
    assert str(caught.value).startswith(
        f"pipeline 'bad' has {count} problem{'s' if count > 1 else ''}:\n  - "
    )


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_validate_pipeline_lists_the_same_problems(name: str) -> None:
    """``validate_pipeline`` returns those problems instead of raising."""
    entry = CATALOGUE[name]
    errors = _pipeline(entry).validate_pipeline()
    assert len(errors) == len(entry.problems)
    for problem, error in zip(entry.problems, errors, strict=True):
        assert re.fullmatch(problem, error), (problem, error)


def test_every_problem_of_the_catalogue_is_reported_at_once() -> None:
    """All the catalogue's stages in one definition: every problem, in one error."""
    stages: list[StageDefinition] = []
    expected = 0
    for index, entry in enumerate(CATALOGUE.values()):
        if (
            entry.timeout_ms is not None
            or any(stage.inputs for stage in entry.stages)
            or any("#" in p or "twice" in p for p in entry.problems)
        ):
            continue  # these depend on ids and positions, which change below
        for stage in entry.stages:
            stages.append(stage.model_copy(update={"id": f"{stage.id}{index}"}))
        expected += len(entry.problems)
    errors = PipelineDefinition(name="all", stages=stages).validate_pipeline()
    assert len(errors) == expected


@st.composite
def _valid_pipelines(draw: st.DrawFn) -> PipelineDefinition:
    """A random valid DAG with random valid settings, in a random order."""
    shape = draw(shapes())
    stages = []
    for index, inputs in enumerate(shape):
        pattern = draw(st.sampled_from(ExecutionPattern))
        if pattern is FAN and len(inputs) > 1:
            pattern = ExecutionPattern.SEQUENTIAL
        stage: Any = draw(st.sampled_from((noop, AsyncExecute())))
        stages.append(
            StageDefinition(
                f"s{index}",
                stage,
                pattern=pattern,
                inputs=[f"s{i}" for i in inputs],
                condition=always
                if pattern is ExecutionPattern.CONDITIONAL or draw(st.booleans())
                else None,
                retry_config=draw(
                    st.none()
                    | st.builds(
                        RetryConfig,
                        max_attempts=st.integers(1, 5),
                        initial_delay_ms=st.sampled_from((0, 1, 1000)),
                        backoff_multiplier=st.sampled_from((1, 1.5, 2)),
                        max_delay_ms=st.sampled_from((1000, 60_000)),
                    )
                ),
                timeout_ms=draw(st.none() | st.sampled_from((1, 250.5, 1e9))),
                critical=draw(st.booleans()),
                max_concurrency=draw(st.none() | st.integers(1, 64))
                if pattern is FAN
                else None,
            )
        )
    order = draw(st.permutations(stages))
    return PipelineDefinition(
        name="valid",
        stages=order,
        fail_fast=draw(st.booleans()),
        timeout_ms=draw(st.none() | st.sampled_from((1, 5000))),
    )


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(pipeline=_valid_pipelines())
def test_random_valid_dags_are_never_refused(pipeline: PipelineDefinition) -> None:
    """A valid DAG, declared in any order, validates clean and runs to an end."""
    assert pipeline.validate_pipeline() == []
    result = trio.run(
        PipelineExecutor(log_events=False).execute,
        pipeline,
        [1, 2],
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    assert set(result.stage_results) == {stage.id for stage in pipeline.stages}


def test_100000_stage_chain_validates_without_recursion() -> None:
    """A 100,000-stage chain declared backwards validates, iteratively."""
    count = 100_000
    stages = [
        StageDefinition(f"s{i}", noop, inputs=[f"s{i - 1}"] if i else [])
        for i in reversed(range(count))
    ]
    assert PipelineDefinition(name="chain", stages=stages).validate_pipeline() == []
    looped = [stages[-1].model_copy(update={"inputs": (f"s{count - 1}",)})]
    cyclic = PipelineDefinition(name="loop", stages=[*stages[:-1], *looped])
    (error,) = cyclic.validate_pipeline()
    assert error.startswith("dependency cycle: ")
    assert error.count(" -> ") == count

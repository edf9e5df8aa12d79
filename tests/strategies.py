"""Hypothesis strategies for the chaos suite: random valid DAGs, then fault plans.

:func:`definitions` draws a random pipeline definition (shapes, patterns,
retries, timeouts, streams and the fan-outs they feed, fail-fast, a pipeline
timeout, a declaration order); the stages are placeholders that a
:class:`~actors.testing.oracle.FaultPlan` replaces. :func:`cases` adds a plan
drawn by the public :func:`actors.testing.strategies.fault_plans`, so the
chaos suite exercises the very kit users test their own pipelines with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    RetryConfig,
    StageContractError,
    StageDefinition,
    StageTimeoutError,
)
from actors.testing.oracle import FaultPlan
from actors.testing.strategies import fault_plans

TIMEOUTS_MS = (750, 1500, 3000)
"""Per-attempt timeouts: never equal to a planned duration, whatever its offset."""
PIPELINE_TIMEOUTS_MS = (1125, 2625, 4125, 8125, 20125)
STREAM_TIMEOUTS_MS = (2130, 5130, 9130)
"""Whole-stream timeouts: not binary fractions of a second, so never the very
instant of a stream's own event (a race the oracle can only bracket)."""

STREAM = "stream"
"""A stage kind besides the patterns: an async generator (a streaming stage)."""


async def unplanned(value: Any, context: PipelineContext[Any]) -> Any:
    """A placeholder stage: the plan replaces it."""
    raise AssertionError("a fault plan replaces every stage")


async def unplanned_stream(
    value: Any, context: PipelineContext[Any]
) -> AsyncIterator[Any]:
    """A placeholder streaming stage: the plan replaces it."""
    raise AssertionError("a fault plan replaces every stage")
    yield  # an async generator function: a streaming stage


def answer(context: PipelineContext[Any]) -> bool:
    """A placeholder condition: the plan answers it."""
    raise AssertionError("a fault plan answers every condition")


@dataclass(frozen=True)
class Case:
    """One chaos example: a definition, its plan, and how to wrap its stages."""

    definition: PipelineDefinition
    plan: FaultPlan
    object_form: frozenset[str]
    """Stages run as objects with ``execute`` (else as async functions)."""
    live: bool = False
    """Run it with ``open_run``, a tap on every stage read as items come."""


@st.composite
def retries(draw: st.DrawFn) -> RetryConfig:
    """Return random retry settings whose delays are whole quarter seconds."""
    initial = draw(st.sampled_from((0, 250, 500, 1000)))
    return RetryConfig(
        max_attempts=draw(st.integers(1, 3)),
        initial_delay_ms=initial,
        backoff_multiplier=draw(st.sampled_from((1.0, 2.0))),
        max_delay_ms=draw(st.sampled_from((initial, 2 * initial, 60_000))),
        retryable_errors=draw(
            st.sampled_from((None, None, ("boom",), ("planned",), ("timed out",)))
        ),
        retry_on=draw(
            st.sampled_from(
                (
                    None,
                    None,
                    (ValueError,),
                    (StageTimeoutError,),
                    (ValueError, StageContractError),
                )
            )
        ),
    )


@st.composite
def shapes(draw: st.DrawFn, max_stages: int = 40) -> list[tuple[int, ...]]:
    """Return the inputs of each stage: 0-3 earlier stages, so always acyclic."""
    count = draw(st.integers(1, max_stages))
    inputs: list[tuple[int, ...]] = []
    for index in range(count):
        size = draw(st.integers(0, min(3, index)))
        chosen = draw(
            st.lists(
                st.integers(0, index - 1), min_size=size, max_size=size, unique=True
            )
            if size
            else st.just([])
        )
        inputs.append(tuple(sorted(chosen)))
    return inputs


@st.composite
def definitions(
    draw: st.DrawFn, max_stages: int = 40, *, streams: bool = True
) -> tuple[PipelineDefinition, frozenset[str]]:
    """Return a random valid definition (stage ``i`` is ``f"s{i}"``) and its object-form stages."""
    shape = draw(shapes(max_stages))
    # A third of the plans have no streams.
    streams = streams and draw(st.integers(0, 2)) > 0
    kinds: list[Any] = []
    for inputs in shape:
        choices: list[Any] = [
            ExecutionPattern.SEQUENTIAL,
            ExecutionPattern.PARALLEL,
            ExecutionPattern.CONDITIONAL,
        ]
        if len(inputs) <= 1:
            choices += [ExecutionPattern.FAN_OUT] * 2
        if streams:
            choices.append(STREAM)
        kind = draw(st.sampled_from(choices))
        if (
            streams
            and kind is ExecutionPattern.FAN_OUT
            and inputs
            and kinds[inputs[0]] is not ExecutionPattern.FAN_OUT
            and draw(st.booleans())
        ):
            kinds[inputs[0]] = STREAM  # feed this fan-out a stream
        elif (
            streams
            and kind is ExecutionPattern.FAN_OUT
            and inputs
            and kinds[inputs[0]] is ExecutionPattern.FAN_OUT
            and shape[inputs[0]]
            and kinds[shape[inputs[0]][0]] is not ExecutionPattern.FAN_OUT
            and draw(st.booleans())
        ):
            kinds[shape[inputs[0]][0]] = STREAM  # a chain of two fan-outs
        kinds.append(kind)
    for index, kind in enumerate(kinds):
        if kind is STREAM and draw(st.booleans()):
            # Often a root: a stream whose inputs failed never flows.
            shape[index] = ()
    # A fan-out fed by a stream takes its items one by one, and may form a
    # chain; one fed by a list needs a list whenever it runs: its source is
    # critical, has no condition and emits a list (a non-list input is a
    # failure at once, which the bad-input tests cover).
    fed = [False] * len(shape)
    streaming = [kind is STREAM for kind in kinds]
    for index, (inputs, kind) in enumerate(zip(shape, kinds, strict=True)):
        if kind is ExecutionPattern.FAN_OUT and inputs and streaming[inputs[0]]:
            fed[index] = True
            streaming[index] = True
    sources = {
        inputs[0]
        for index, (inputs, kind) in enumerate(zip(shape, kinds, strict=True))
        if kind is ExecutionPattern.FAN_OUT and inputs and not fed[index]
    }
    barriers = {
        source
        for index, inputs in enumerate(shape)
        if not fed[index]
        for source in inputs
    }
    stages: list[StageDefinition] = []
    objects: set[str] = set()
    for index, inputs in enumerate(shape):
        kind = kinds[index]
        is_source = index in sources
        pattern = ExecutionPattern.SEQUENTIAL if kind is STREAM else kind
        if is_source and pattern is ExecutionPattern.CONDITIONAL:
            pattern = ExecutionPattern.SEQUENTIAL
        condition = None
        if not fed[index] and (
            pattern is ExecutionPattern.CONDITIONAL
            or (not is_source and draw(st.integers(0, 9)) == 0)
        ):
            condition = answer
        options: dict[str, Any] = {}
        if pattern is ExecutionPattern.FAN_OUT:
            options["max_concurrency"] = draw(st.none() | st.integers(1, 8))
            if draw(st.booleans()):
                options["item_failures"] = "collect"
                options["min_successes"] = draw(st.none() | st.integers(0, 8))
        if kind is STREAM:
            options["stream_buffer"] = draw(st.sampled_from((None, 0, 1, 2, 3)))
            if draw(st.integers(0, 4)) == 0:
                options["stream_timeout_ms"] = draw(st.sampled_from(STREAM_TIMEOUTS_MS))
            resumable = draw(st.booleans())
            options["resumable"] = resumable
            options["verify_replay"] = not resumable and draw(st.booleans())
        if streaming[index] and index not in barriers and draw(st.integers(0, 3)) == 0:
            options["collect"] = False
        elif kind is not STREAM and not fed[index] and draw(st.booleans()):
            objects.add(f"s{index}")
        stages.append(
            StageDefinition(
                f"s{index}",
                unplanned_stream if kind is STREAM else unplanned,
                pattern=pattern,
                inputs=[f"s{i}" for i in inputs],
                condition=condition,
                retry_config=draw(st.none() | retries()),
                timeout_ms=draw(st.none() | st.sampled_from(TIMEOUTS_MS)),
                critical=True if is_source else draw(st.integers(0, 3)) > 0,
                **options,
            )
        )
    order = draw(st.permutations(range(len(stages))))
    timeout_ms = None
    if draw(st.integers(0, 3)) == 0:
        timeout_ms = float(draw(st.sampled_from(PIPELINE_TIMEOUTS_MS)))
    definition = PipelineDefinition(
        name="chaos",
        stages=[stages[i] for i in order],
        fail_fast=draw(st.booleans()),
        timeout_ms=timeout_ms,
    )
    return definition, frozenset(objects)


@st.composite
def cases(draw: st.DrawFn, max_stages: int = 40, *, streams: bool = True) -> Case:
    """Return a random definition with a random fault plan for it."""
    definition, objects = draw(definitions(max_stages, streams=streams))
    plan = draw(fault_plans(definition, max_items=200, hangs=True, interrupts=True))
    return Case(definition, plan, objects, live=draw(st.booleans()))

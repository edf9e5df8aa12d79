"""Turning a definition into a validated graph: pure, synchronous, iterative."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._arity import arity_problem
from ._definition import ExecutionPattern, RetryConfig, StageDefinition
from ._exceptions import PipelineValidationError
from ._offloader import offload_problem
from ._util import describe

if TYPE_CHECKING:
    from ._definition import PipelineDefinition
    from ._offloader import Offloader

_NO_RETRY = RetryConfig()


@dataclass(eq=False, slots=True)
class Node:
    """A validated stage: its definition plus resolved edges and call form."""

    index: int
    id: str
    definition: StageDefinition
    inputs: tuple[int, ...]
    call: Callable[..., Any]
    returns_result: bool
    retry: RetryConfig
    timeout_s: float | None
    offload: Offloader | None = None
    """Where ``call``, then a sync ``fn(input)``, runs; ``None``: awaited inline."""
    generator: bool = False
    """Its call is an async generator function: it yields its items."""
    stream: bool = False
    """Its items flow on one by one: a generator, or a FAN_OUT fed by a stream."""
    stream_fed: bool = False
    """A FAN_OUT whose input is a stream: it consumes items as they arrive."""


@dataclass(eq=False, slots=True)
class Graph:
    """A pipeline that passed validation; the executor runs only these."""

    name: str
    nodes: tuple[Node, ...]
    fail_fast: bool
    timeout_s: float | None
    dependencies: dict[str, tuple[str, ...]]
    streaming: bool = False
    """Some stage streams: the run needs stream edges."""


def graph_of(pipeline: PipelineDefinition) -> Graph:
    """Return the validated graph of *pipeline*, or raise PipelineValidationError."""
    graph = pipeline._graph
    if graph is None:
        graph, errors = compile_pipeline(pipeline)
        if graph is None:
            raise PipelineValidationError(pipeline.name, errors)
        pipeline._graph = graph
    return graph


def compile_pipeline(pipeline: PipelineDefinition) -> tuple[Graph | None, list[str]]:
    """Check every rule; return the graph (or None) and every problem found."""
    errors: list[str] = []
    stages = pipeline.stages
    if not stages:
        errors.append(f"pipeline {pipeline.name!r} has no stages; add at least one")
    _check_timeout(errors, "pipeline", pipeline.name, pipeline.timeout_ms)

    index_of: dict[str, int] = {}
    for position, stage in enumerate(stages):
        if not stage.id.strip():
            errors.append(f"stage #{position + 1} has an empty id; give it a name")
        elif stage.id in index_of:
            first = index_of[stage.id] + 1
            errors.append(
                f"stage {stage.id!r} is defined twice (#{first} and "
                f"#{position + 1}); stage ids must be unique"
            )
        else:
            index_of[stage.id] = position

    known = ""  # listed in a message only when an input is unknown
    calls: list[tuple[Callable[..., Any], bool] | None] = []
    # Each stage's inputs as indices, built once for the cycle check and the
    # nodes: at 100,000 stages, every container per stage is garbage
    # collector work, and 100,000 stages should validate in under a second.
    inputs: list[tuple[int, ...]] = []
    for position, stage in enumerate(stages):
        calls.append(_stage_call(errors, stage))
        _check_stage(errors, stage)
        names = stage.inputs
        seen: set[str] | None = set() if len(names) > 1 else None
        for name in names:
            if seen is not None:
                if name in seen:
                    errors.append(f"stage {stage.id!r} lists input {name!r} twice")
                seen.add(name)
            if name not in index_of:
                known = known or ", ".join(repr(s) for s in index_of) or "none"
                errors.append(
                    f"stage {stage.id!r} depends on unknown stage {name!r}; "
                    f"known stages: {known}"
                )
        # Only the first stage with a given id takes part in the cycle check.
        if index_of.get(stage.id) != position:
            inputs.append(())
        elif seen is None or len(seen) == len(names):
            inputs.append(tuple([index_of[n] for n in names if n in index_of]))
        else:
            unique = dict.fromkeys(names)  # in order: cycle messages are stable
            inputs.append(tuple([index_of[n] for n in unique if n in index_of]))

    errors.extend(_cycles([stage.id for stage in stages], inputs))
    if errors:
        return None, errors
    generators = [_is_generator(stage.stage) for stage in stages]
    streams = (
        _streams(stages, inputs, generators, errors)
        if any(generators) or not all(stage.collect for stage in stages)
        else None
    )
    if errors:
        return None, errors

    nodes = []
    for position, stage in enumerate(stages):
        call = calls[position]
        assert call is not None  # no errors means every stage had a call form
        nodes.append(
            Node(
                index=position,
                id=stage.id,
                definition=stage,
                inputs=inputs[position],
                call=call[0],
                returns_result=call[1],
                retry=stage.retry_config or _NO_RETRY,
                timeout_s=_seconds(stage.timeout_ms),
                offload=stage.offload,
            )
        )
        if streams is not None:
            node = nodes[-1]
            node.generator = generators[position]
            node.stream = streams[position]
            node.stream_fed = (
                stage.pattern is ExecutionPattern.FAN_OUT
                and bool(node.inputs)
                and streams[node.inputs[0]]
            )
    graph = Graph(
        name=pipeline.name,
        nodes=tuple(nodes),
        fail_fast=pipeline.fail_fast,
        timeout_s=_seconds(pipeline.timeout_ms),
        dependencies={stage.id: stage.inputs for stage in stages},
        streaming=streams is not None,
    )
    return graph, []


def _is_generator(target: Any) -> bool:
    """True for an async generator function, or an object whose ``stream`` is one."""
    if isinstance(target, type):
        return False
    if inspect.isasyncgenfunction(target):
        return True
    try:
        return getattr(target, "execute", None) is None and (
            inspect.isasyncgenfunction(getattr(target, "stream", None))
        )
    except Exception:  # a raising attribute is reported by _stage_call
        return False


def _streams(
    stages: tuple[StageDefinition, ...],
    inputs: list[tuple[int, ...]],
    generators: list[bool],
    errors: list[str],
) -> list[bool]:
    """Return which stages stream; record the streaming rules they break.

    A stage streams if it is a generator, or a FAN_OUT whose input streams
    (found by walking up the chain of fan-outs: no recursion).
    """
    count = len(stages)
    streams: list[bool | None] = [None] * count
    for start in range(count):
        chain = []
        node = start
        while streams[node] is None:
            stage = stages[node]
            if generators[node] or not (
                stage.pattern is ExecutionPattern.FAN_OUT and inputs[node]
            ):
                streams[node] = generators[node]
                break
            chain.append(node)
            node = inputs[node][0]
        for member in chain:
            streams[member] = streams[node]
    result = [bool(s) for s in streams]
    for position, stage in enumerate(stages):
        where = f"stage {stage.id!r}"
        fed = stage.pattern is ExecutionPattern.FAN_OUT and bool(inputs[position])
        fed = fed and result[inputs[position][0]]
        if not stage.collect and not result[position]:
            errors.append(f"{where}: collect=False applies only to streaming stages")
        if fed and stage.condition is not None:
            errors.append(
                f"{where}: a FAN_OUT fed by a stream cannot have a condition "
                "(its items start before the stream ends)"
            )
        for source in inputs[position]:
            if result[source] and not stages[source].collect and not fed:
                errors.append(
                    f"{where} needs the whole list of stage "
                    f"{stages[source].id!r}, which keeps only a count "
                    "(collect=False); consume it with a FAN_OUT, or collect it"
                )
    return result


def _is_async(target: Any) -> bool:
    return inspect.iscoroutinefunction(target) or (
        callable(target)
        and not isinstance(target, type)
        and inspect.iscoroutinefunction(type(target).__call__)
    )


def _seconds(ms: float | None) -> float | None:
    return None if ms is None or math.isinf(ms) else ms / 1000


def _stage_call(
    errors: list[str], stage: StageDefinition
) -> tuple[Callable[..., Any], bool] | None:
    """Return (callable, returns_result) for the stage's form, or record why not."""
    target = stage.stage
    if stage.offload is not None:
        return _offloaded_call(errors, stage)
    if isinstance(target, type):
        # A class, not an instance: its execute would get the input as self.
        errors.append(
            f"stage {stage.id!r}: stage must be an object with an async "
            f"execute(input, context) method or an async function, got the "
            f"class {target.__name__}; pass an instance ({target.__name__}())"
        )
        return None
    try:
        execute = getattr(target, "execute", None)
    except Exception as exc:  # validation never raises: report it
        errors.append(
            f"stage {stage.id!r}: reading its execute attribute raised {describe(exc)}"
        )
        return None
    if execute is not None and inspect.iscoroutinefunction(execute):
        return _called_as_a_stage(errors, stage, execute, True)
    if _is_async(target) or inspect.isasyncgenfunction(target):
        return _called_as_a_stage(errors, stage, target, False)
    stream = getattr(target, "stream", None)
    if execute is None and inspect.isasyncgenfunction(stream):
        return _called_as_a_stage(errors, stage, stream, False)
    what = type(target).__name__
    if execute is not None:
        what += " whose execute is not async"
    errors.append(
        f"stage {stage.id!r}: stage must be an object with an async "
        f"execute(input, context) method or an async function, got {what}"
    )
    return None


def _called_as_a_stage(
    errors: list[str], stage: StageDefinition, fn: Callable[..., Any], result: bool
) -> tuple[Callable[..., Any], bool] | None:
    """Return (fn, result) if fn takes (input, context); else record why not."""
    problem = arity_problem(fn)
    if problem is None:
        return fn, result
    errors.append(f"stage {stage.id!r}: {problem}")
    return None


def _offloaded_call(
    errors: list[str], stage: StageDefinition
) -> tuple[Callable[..., Any], bool] | None:
    """An offloaded stage is a plain sync callable the backend can ship."""
    target = stage.stage
    if isinstance(target, type) or not callable(target):
        what = (
            f"the class {target.__name__}"
            if isinstance(target, type)
            else (type(target).__name__)
        )
        errors.append(
            f"stage {stage.id!r}: with offload= the stage must be a plain sync "
            f"function taking the input alone, got {what}"
        )
        return None
    problem = offload_problem(stage.id, target, stage.offload)
    if problem is not None:
        errors.append(problem)
        return None
    return target, False


def _check_stage(errors: list[str], stage: StageDefinition) -> None:
    where = f"stage {stage.id!r}"
    if stage.pattern is ExecutionPattern.CONDITIONAL and stage.condition is None:
        errors.append(f"{where}: CONDITIONAL needs a condition(context) -> bool")
    if stage.condition is not None and not callable(stage.condition):
        errors.append(
            f"{where}: condition must be callable as condition(context), "
            f"got {type(stage.condition).__name__}"
        )
    elif stage.condition is not None and _is_async(stage.condition):
        # bool() of a coroutine is always true: the condition would never skip.
        errors.append(
            f"{where}: condition must be a plain function returning a bool, "
            "got an async function"
        )
    _check_timeout(errors, "stage", stage.id, stage.timeout_ms)
    if stage.max_concurrency is not None:
        if stage.max_concurrency < 1:
            errors.append(
                f"{where}: max_concurrency must be at least 1, "
                f"got {stage.max_concurrency}"
            )
        if stage.pattern is not ExecutionPattern.FAN_OUT:
            errors.append(f"{where}: max_concurrency applies only to FAN_OUT stages")
    if stage.pattern is ExecutionPattern.FAN_OUT and len(stage.inputs) > 1:
        errors.append(
            f"{where}: FAN_OUT takes at most one input (the list to fan out "
            f"over), got {len(stage.inputs)}"
        )
    if stage.retry_config is not None:
        _check_retry(errors, where, stage.retry_config)
    if stage.rate_limit is not None or stage.cost is not None:
        _check_limit(errors, where, stage)
    _check_item_failures(errors, where, stage)
    _check_streaming(errors, where, stage)


def _check_limit(errors: list[str], where: str, stage: StageDefinition) -> None:
    """Check ``rate_limit=`` and ``cost=``; the name itself is checked by execute."""
    if stage.rate_limit is None:
        errors.append(f"{where}: cost applies only with a rate_limit")
    elif not stage.rate_limit.strip():
        errors.append(
            f"{where}: rate_limit must name one of the executor's limits, "
            f"got {stage.rate_limit!r}"
        )
    cost = stage.cost
    if cost is None or callable(cost):
        return
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
        errors.append(
            f"{where}: cost must be a token count >= 0 or a function of the "
            f"input, got {cost!r}"
        )


def _check_streaming(errors: list[str], where: str, stage: StageDefinition) -> None:
    generator = _is_generator(stage.stage)
    if generator and stage.pattern is ExecutionPattern.FAN_OUT:
        errors.append(
            f"{where}: a FAN_OUT's per-item function cannot be an async "
            "generator (one item in, many out is not supported); make it "
            "return a list, or make the stage before it stream"
        )
    _check_timeout(errors, "stage", stage.id, stage.stream_timeout_ms)
    # collect=False, which a FAN_OUT fed by a stream may also take, is
    # checked in _streams, once it is known which stages stream.
    buffer = stage.stream_buffer
    if buffer is not None:
        if not generator:
            errors.append(
                f"{where}: stream_buffer applies only to streaming stages "
                "(an async generator function, or an object with an async "
                "generator stream method)"
            )
        elif buffer < 0:
            errors.append(f"{where}: stream_buffer must be >= 0, got {buffer}")
    if stage.stream_timeout_ms is not None and not generator:
        errors.append(f"{where}: stream_timeout_ms applies only to streaming stages")
    for name in ("resumable", "verify_replay"):
        if getattr(stage, name) and not generator:
            errors.append(f"{where}: {name} applies only to streaming stages")
    if stage.resumable and stage.verify_replay:
        errors.append(
            f"{where}: verify_replay needs resumable=False "
            "(a resumable stage replays nothing)"
        )


def _check_item_failures(errors: list[str], where: str, stage: StageDefinition) -> None:
    collect = stage.item_failures == "collect"
    if collect and stage.pattern is not ExecutionPattern.FAN_OUT:
        errors.append(f"{where}: item_failures applies only to FAN_OUT stages")
    minimum = stage.min_successes
    if minimum is None:
        return
    if not collect:
        errors.append(
            f"{where}: min_successes needs item_failures='collect' "
            "(with 'fail', every item must succeed)"
        )
    if minimum < 0:
        errors.append(f"{where}: min_successes must be >= 0, got {minimum}")


def _check_timeout(
    errors: list[str], kind: str, name: str, value: float | None
) -> None:
    if value is not None and (math.isnan(value) or value <= 0):
        errors.append(f"{kind} {name!r}: timeout_ms must be > 0, got {value}")


def _check_retry(errors: list[str], where: str, retry: RetryConfig) -> None:
    def bad(rule: str) -> None:
        errors.append(f"{where}: retry_config.{rule}")

    if retry.max_attempts < 1:
        bad(f"max_attempts must be at least 1, got {retry.max_attempts}")
    for field in ("initial_delay_ms", "max_delay_ms"):
        value = getattr(retry, field)
        if math.isnan(value) or value < 0:
            bad(f"{field} must be >= 0, got {value}")
    if not math.isfinite(retry.backoff_multiplier) or retry.backoff_multiplier < 1:
        bad(
            "backoff_multiplier must be a finite number >= 1, "
            f"got {retry.backoff_multiplier}"
        )
    if retry.max_delay_ms < retry.initial_delay_ms:
        bad(
            f"max_delay_ms ({retry.max_delay_ms}) must be >= "
            f"initial_delay_ms ({retry.initial_delay_ms})"
        )
    if math.isnan(retry.jitter) or not 0 <= retry.jitter <= 1:
        bad(f"jitter must be between 0 and 1, got {retry.jitter}")
    if math.isnan(retry.max_retry_after_ms) or retry.max_retry_after_ms < 0:
        bad(f"max_retry_after_ms must be >= 0, got {retry.max_retry_after_ms}")


def _cycles(ids: list[str], inputs: list[tuple[int, ...]]) -> list[str]:
    """Return one message per group of mutually dependent stages, as a path."""
    # Kahn's algorithm, iterative: whatever it cannot order lies on, or after,
    # a cycle. Consumers are kept as one flat list (those of stage i are
    # flat[first[i]:first[i + 1]]): fewer objects for the garbage collector.
    count = len(ids)
    first = [0] * (count + 1)
    for edges in inputs:
        for source in edges:
            first[source + 1] += 1
    for node in range(count):
        first[node + 1] += first[node]
    flat = [0] * first[count]
    fill = first[:count]
    for node, edges in enumerate(inputs):
        for source in edges:
            flat[fill[source]] = node
            fill[source] += 1
    pending = [len(edges) for edges in inputs]
    ready = [node for node in range(count) if pending[node] == 0]
    while ready:
        node = ready.pop()
        for consumer in flat[first[node] : first[node + 1]]:
            pending[consumer] -= 1
            if pending[consumer] == 0:
                ready.append(consumer)
    unordered = [node for node in range(count) if pending[node]]
    if not unordered:
        return []
    messages = []
    for group in _strongly_connected(unordered, inputs, pending):
        if len(group) == 1 and group[0] not in inputs[group[0]]:
            continue  # not on a cycle, only after one
        messages.append(f"dependency cycle: {' -> '.join(_loop(group, inputs, ids))}")
    return messages


def _strongly_connected(
    nodes: list[int], inputs: list[tuple[int, ...]], pending: list[int]
) -> list[list[int]]:
    """Tarjan's algorithm without recursion, over *nodes* and their inputs.

    Groups come back ordered by their first-declared stage, so messages are
    stable whatever order the walk takes.
    """
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    groups = []
    for root in nodes:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(inputs[root]))]
        while work:
            node, edges = work[-1]
            for source in edges:
                if not pending[source]:
                    continue  # ordered by Kahn: on no cycle
                if source not in index:
                    index[source] = low[source] = len(index)
                    stack.append(source)
                    on_stack.add(source)
                    work.append((source, iter(inputs[source])))
                    break
                if source in on_stack:
                    low[node] = min(low[node], index[source])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    groups.append(sorted(group))
    groups.sort()
    return groups


def _loop(group: list[int], inputs: list[tuple[int, ...]], ids: list[str]) -> list[str]:
    """Return one cycle inside a strongly connected *group*, as ids in data flow."""
    members = set(group)
    walk: list[int] = []
    on_walk: dict[int, int] = {}
    node = group[0]
    # Every member has an input inside the group: walking inputs backwards
    # comes round to a stage already on the walk, which closes a cycle.
    while node not in on_walk:
        on_walk[node] = len(walk)
        walk.append(node)
        node = next(source for source in inputs[node] if source in members)
    loop = walk[on_walk[node] :]
    loop.reverse()  # inputs were walked backwards; print data flow
    return [ids[n] for n in loop] + [ids[loop[0]]]

"""The declarations: what a pipeline is made of, as pydantic models."""

from __future__ import annotations

import enum
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    Protocol,
    Self,
    TypeAlias,
    runtime_checkable,
)

from pydantic import BaseModel, ConfigDict, PrivateAttr

from ._context import PipelineContext
from ._results import StageResult

if TYPE_CHECKING:
    from ._graph import Graph
    from ._offloader import OffloadedFunction, Offloader

# Each model spells out its own ConfigDict(...): the pydantic mypy plugin reads
# only a literal call there, and it is what shows users' type checkers that
# the declarations are frozen (assigning a field is an error, not a surprise
# at run time).


class ExecutionPattern(enum.StrEnum):
    """How a stage runs once its inputs have arrived."""

    SEQUENTIAL = "sequential"
    """Run once, as soon as the inputs are ready (the default)."""
    PARALLEL = "parallel"
    """Same as SEQUENTIAL: every stage already runs as soon as it can.

    Kept so definitions from the wave executor keep working."""
    FAN_OUT = "fan_out"
    """Run once per item of a list (or tuple) input; the output is the list."""
    CONDITIONAL = "conditional"
    """Run only if ``condition(context)`` is true, else skip."""


@runtime_checkable
class PipelineStage(Protocol):
    """A stage object: a ``name`` and an async ``execute`` returning a StageResult.

    ``execute`` may also raise; the exception fails the attempt like any other.
    An object whose ``stream(input, context)`` is an async generator (and has
    no ``execute``) is a streaming stage instead.
    """

    @property
    def name(self) -> str:
        """A human-readable name for the stage."""
        ...

    async def execute(
        self, input: Any, context: PipelineContext[Any]
    ) -> StageResult[Any]:
        """Run the stage on *input*."""
        ...


@runtime_checkable
class StreamingStage(Protocol):
    """A stage object whose ``stream(input, context)`` is an async generator.

    It yields its items one by one (see the streaming docs); it has no
    ``execute``.
    """

    def stream(self, input: Any, context: PipelineContext[Any]) -> AsyncIterator[Any]:
        """Yield the stage's items for *input*."""
        ...


StageFunction: TypeAlias = Callable[[Any, PipelineContext[Any]], Awaitable[Any]]
"""A stage as a plain ``async def fn(input, context)``; it returns the output."""

StreamFunction: TypeAlias = Callable[[Any, PipelineContext[Any]], AsyncIterator[Any]]
"""A streaming stage: an ``async def fn(input, context)`` that yields its items."""

Stage: TypeAlias = PipelineStage | StreamingStage | StageFunction | StreamFunction
"""Any form of stage."""

Condition: TypeAlias = Callable[[PipelineContext[Any]], bool]
"""Decides, once a stage's inputs are ready, whether it runs."""

ItemFailures: TypeAlias = Literal["fail", "collect"]
"""What a FAN_OUT stage does when an item fails after its own retries."""


class RetryConfig(BaseModel):
    """When and how often to retry a failed attempt.

    The delay before attempt ``k`` (``k >= 2``) is
    ``min(initial_delay_ms * backoff_multiplier ** (k - 2), max_delay_ms)``.
    Cancellation is never retried.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    max_attempts: int = 1
    """Attempts in all, the first included (1 means no retry)."""
    initial_delay_ms: float = 1000
    """Delay before the second attempt."""
    backoff_multiplier: float = 2.0
    """Factor applied to the delay for each further attempt."""
    max_delay_ms: float = 60000
    """Upper bound of any delay."""
    retryable_errors: tuple[str, ...] | None = None
    """If set, retry only errors whose text contains one of these (any case)."""
    retry_on: tuple[type[BaseException], ...] | None = None
    """If set, retry only failures raised as one of these exception types."""
    jitter: float = 0.0
    """Randomise each delay by up to this fraction (0 to 1; 0 keeps it exact)."""
    max_retry_after_ms: float = 60000
    """Longest ``Retry-After`` a :class:`RateLimited` failure may ask to wait.

    A :class:`RateLimited` is retried whatever the filters say (while
    attempts remain), after ``max(backoff, retry_after_s)``; asking for more
    than this fails the stage at once, saying so."""

    def __init__(
        self,
        *,
        max_attempts: int = 1,
        initial_delay_ms: float = 1000,
        backoff_multiplier: float = 2.0,
        max_delay_ms: float = 60000,
        retryable_errors: Iterable[str] | None = None,
        retry_on: Iterable[type[BaseException]] | None = None,
        jitter: float = 0.0,
        max_retry_after_ms: float = 60000,
    ) -> None:
        super().__init__(
            max_attempts=max_attempts,
            initial_delay_ms=initial_delay_ms,
            backoff_multiplier=backoff_multiplier,
            max_delay_ms=max_delay_ms,
            retryable_errors=_tuple(retryable_errors),
            retry_on=None if retry_on is None else tuple(retry_on),
            jitter=jitter,
            max_retry_after_ms=max_retry_after_ms,
        )

    def delay_ms(self, attempt: int, rng: random.Random | None = None) -> float:
        """Return the delay, in ms, before *attempt* (2 or more).

        Jitter draws from *rng* (the executor's ``rng``, so a seeded run
        repeats its delays), else from the global :mod:`random`.
        """
        initial, factor, cap = (
            self.initial_delay_ms,
            self.backoff_multiplier,
            self.max_delay_ms,
        )
        steps = attempt - 2
        if initial <= 0 or factor == 1 or steps <= 0:
            delay = min(initial, cap)
        elif steps * math.log(factor) >= math.log(cap / initial):
            # Compared in log space: the product itself overflows a float
            # long before a long retry schedule ends.
            delay = cap
        else:
            delay = initial * factor**steps
        if self.jitter:
            low, high = 1 - self.jitter, 1 + self.jitter
            delay *= (
                random.uniform(low, high) if rng is None else rng.uniform(low, high)
            )
        return delay

    def should_retry(self, error: str, exception: BaseException | None) -> bool:
        """Return True if the filters admit this failure (attempts aside)."""
        if self.retryable_errors is not None:
            text = error.casefold()
            if not any(part.casefold() in text for part in self.retryable_errors):
                return False
        if self.retry_on is not None:
            return exception is not None and isinstance(exception, self.retry_on)
        return True


class StageDefinition(BaseModel):
    """One stage of a pipeline: what runs, on what inputs, and how.

    ``id`` and ``stage`` may be given by position, as in the wave executor.
    Nothing is checked beyond types here: :class:`PipelineDefinition` reports
    every broken rule at once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    id: str
    """Unique id; other stages name it in ``inputs``."""
    stage: Any
    """A :class:`PipelineStage` object or an ``async def fn(input, context)``;
    with ``offload``, a sync ``fn(input)``."""
    pattern: ExecutionPattern = ExecutionPattern.SEQUENTIAL
    """How it runs."""
    inputs: tuple[str, ...] = ()
    """Ids of the stages whose outputs it needs."""
    condition: Any = None
    """``condition(context) -> bool``; required for CONDITIONAL, allowed for all."""
    retry_config: RetryConfig | None = None
    """Retry policy (per item for FAN_OUT); ``None`` means one attempt."""
    timeout_ms: float | None = None
    """Bound on each attempt (per item for FAN_OUT)."""
    critical: bool = True
    """If false, its failure is recorded, downstream receives ``None``."""
    max_concurrency: int | None = None
    """FAN_OUT only: items running at once (``None``: all of them)."""
    item_failures: ItemFailures = "fail"
    """FAN_OUT only: ``"fail"`` (an item failing for good fails the stage and
    cancels its siblings) or ``"collect"`` (every item runs to its own end;
    failed items leave ``None`` in the output and are listed in
    :attr:`StageResult.item_errors`)."""
    min_successes: int | None = None
    """With ``item_failures="collect"``: how many items must succeed for the
    stage to succeed (``None``: one, or none for an empty input)."""
    stream_buffer: int | None = None
    """Streaming stages only: items read ahead of the slowest consumer
    (``None``: 0, no read-ahead)."""
    stream_timeout_ms: float | None = None
    """Streaming stages only: bound on the whole stream (``timeout_ms``
    bounds the wait for each next item)."""
    collect: bool = True
    """Streaming stages only: keep every item for the result (else only
    their count, for very long streams; then no stage may need the list)."""
    resumable: bool = False
    """Streaming stages only: on a retry, the generator starts at item
    ``context.stream_cursor`` itself (else it starts over and the items
    already delivered are discarded)."""
    verify_replay: bool = False
    """Streaming stages that are not resumable: check that a retry re-yields
    the delivered items unchanged (else :exc:`StreamReplayMismatch`)."""
    description: str | None = None
    """Free text, shown in diagrams."""
    rate_limit: str | None = None
    """The executor's named limit each attempt takes (per item for FAN_OUT).

    The name is checked by ``execute`` against the executor's ``limits``;
    ``validate_pipeline()`` cannot see them."""
    cost: Any = None
    """Tokens each attempt takes from ``rate_limit``: an int, or a function
    of the stage's input returning one (``None``: no tokens)."""
    offload: Any = None
    """Where the function runs: ``offload.thread()``, ``offload.process()`` or
    ``offload.dask(client)`` (any :class:`~actors.abc.Offloader`); the stage is
    then a plain sync callable taking the input alone. ``None``: on the event
    loop."""
    version: str | None = None
    """Part of the stage's checkpoint key: change it to invalidate stored results."""
    cache: bool = False
    """Reuse a matching checkpointed result from any earlier run in the store."""
    output_type: Any = None
    """The type the checkpoint codec encodes and decodes the output as (for a
    streaming stage, each item)."""
    checkpoint: bool = True
    """False: never recorded, always run (in a durable run)."""

    def __init__(
        self,
        id: str,
        stage: Stage | OffloadedFunction,
        *,
        pattern: ExecutionPattern = ExecutionPattern.SEQUENTIAL,
        inputs: Iterable[str] = (),
        condition: Condition | None = None,
        retry_config: RetryConfig | None = None,
        timeout_ms: float | None = None,
        critical: bool = True,
        max_concurrency: int | None = None,
        item_failures: ItemFailures = "fail",
        min_successes: int | None = None,
        stream_buffer: int | None = None,
        stream_timeout_ms: float | None = None,
        collect: bool = True,
        resumable: bool = False,
        verify_replay: bool = False,
        description: str | None = None,
        rate_limit: str | None = None,
        cost: int | Callable[[Any], int] | None = None,
        offload: Offloader | None = None,
        version: str | None = None,
        cache: bool = False,
        output_type: Any = None,
        checkpoint: bool = True,
    ) -> None:
        super().__init__(
            id=id,
            stage=stage,
            pattern=pattern,
            inputs=_tuple(inputs),
            condition=condition,
            retry_config=retry_config,
            timeout_ms=timeout_ms,
            critical=critical,
            max_concurrency=max_concurrency,
            item_failures=item_failures,
            min_successes=min_successes,
            stream_buffer=stream_buffer,
            stream_timeout_ms=stream_timeout_ms,
            collect=collect,
            resumable=resumable,
            verify_replay=verify_replay,
            description=description,
            rate_limit=rate_limit,
            cost=cost,
            offload=offload,
            version=version,
            cache=cache,
            output_type=output_type,
            checkpoint=checkpoint,
        )


class PipelineDefinition(BaseModel):
    """A named set of stages and how failures end the run."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str
    """Names the pipeline in events and results."""
    stages: tuple[StageDefinition, ...]
    """The stages, in any order: dependencies decide when each runs."""
    description: str | None = None
    """Free text."""
    fail_fast: bool = True
    """Cancel everything on the first critical failure (else finish what can)."""
    timeout_ms: float | None = None
    """Bound on the whole run."""

    _graph: Graph | None = PrivateAttr(default=None)

    def __init__(
        self,
        *,
        name: str,
        stages: Iterable[StageDefinition],
        description: str | None = None,
        fail_fast: bool = True,
        timeout_ms: float | None = None,
    ) -> None:
        super().__init__(
            name=name,
            stages=tuple(stages),
            description=description,
            fail_fast=fail_fast,
            timeout_ms=timeout_ms,
        )

    def validate_pipeline(self) -> list[str]:
        """Return every problem with this definition (empty when valid).

        Never raises. The same messages are what ``execute`` raises as
        :class:`PipelineValidationError`.
        """
        from ._graph import compile_pipeline  # noqa: PLC0415  # _graph imports us

        graph, errors = compile_pipeline(self)
        if graph is not None:
            self._graph = graph
        return errors

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> Self:
        """Return a copy (see pydantic); it is validated afresh when first run."""
        copy = super().model_copy(update=update, deep=deep)
        copy._graph = None  # the update may change the stages: never reuse the graph
        return copy


def _tuple(values: Iterable[str] | None) -> tuple[str, ...] | None:
    # A lone string is one name, not a sequence of one-letter names.
    if values is None or isinstance(values, str):
        return None if values is None else (values,)
    return tuple(values)

"""The declarations: what a pipeline is made of, as pydantic models."""

from __future__ import annotations

import enum
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeAlias, runtime_checkable

from pydantic import BaseModel, ConfigDict, PrivateAttr

from ._context import PipelineContext
from ._results import StageResult

if TYPE_CHECKING:
    from ._graph import Graph

_FROZEN = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


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


StageFunction: TypeAlias = Callable[[Any, PipelineContext[Any]], Awaitable[Any]]
"""A stage as a plain ``async def fn(input, context)``; it returns the output."""

Stage: TypeAlias = PipelineStage | StageFunction
"""Either form of stage."""

Condition: TypeAlias = Callable[[PipelineContext[Any]], bool]
"""Decides, once a stage's inputs are ready, whether it runs."""


class RetryConfig(BaseModel):
    """When and how often to retry a failed attempt.

    The delay before attempt ``k`` (``k >= 2``) is
    ``min(initial_delay_ms * backoff_multiplier ** (k - 2), max_delay_ms)``.
    Cancellation is never retried.
    """

    model_config = _FROZEN

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
    ) -> None:
        super().__init__(
            max_attempts=max_attempts,
            initial_delay_ms=initial_delay_ms,
            backoff_multiplier=backoff_multiplier,
            max_delay_ms=max_delay_ms,
            retryable_errors=_tuple(retryable_errors),
            retry_on=None if retry_on is None else tuple(retry_on),
            jitter=jitter,
        )

    def delay_ms(self, attempt: int, rng: random.Random | None = None) -> float:
        """Return the delay, in ms, before *attempt* (2 or more).

        Jitter draws from *rng* (the executor's ``rng``, so a seeded run
        repeats its delays), else from the global :mod:`random`.
        """
        delay = min(
            self.initial_delay_ms * self.backoff_multiplier ** (attempt - 2),
            self.max_delay_ms,
        )
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

    model_config = _FROZEN

    id: str
    """Unique id; other stages name it in ``inputs``."""
    stage: Any
    """A :class:`PipelineStage` object or an ``async def fn(input, context)``."""
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
    description: str | None = None
    """Free text, shown in diagrams."""

    def __init__(
        self,
        id: str,
        stage: Stage,
        *,
        pattern: ExecutionPattern = ExecutionPattern.SEQUENTIAL,
        inputs: Iterable[str] = (),
        condition: Condition | None = None,
        retry_config: RetryConfig | None = None,
        timeout_ms: float | None = None,
        critical: bool = True,
        max_concurrency: int | None = None,
        description: str | None = None,
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
            description=description,
        )


class PipelineDefinition(BaseModel):
    """A named set of stages and how failures end the run."""

    model_config = _FROZEN

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

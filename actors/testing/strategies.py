"""Hypothesis strategies: fault plans for your own pipeline definitions.

:func:`fault_plans` draws :class:`~actors.testing.oracle.FaultPlan`\\ s for a
definition: what every stage (each fan-out item, each attempt of a stream)
does, with failures your retry settings retry and failures they do not,
timeouts, hangs where something bounds them, and sometimes a cancellation.
Pair it with :func:`actors.testing.oracle.expect`.

Durations are binary fractions of a second, and each stage (and each item of
a fan-out) gets its own tiny offset: events of different stages almost never
fall on the same instant, which keeps predictions exact rather than "one of
two outcomes".

This is the only module of ``actors`` that imports hypothesis.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from hypothesis import strategies as st

from .._definition import ExecutionPattern, PipelineDefinition, RetryConfig
from .._graph import graph_of
from .._limits import RateLimited
from .._util import fix_module_names
from ._plan import Act, FaultPlan, StagePlan, Step, StreamStep

__all__ = ["fault_plans"]

BASES = (Fraction(1, 4), Fraction(1, 2), Fraction(1), Fraction(2))
"""Round durations; a stage's own offset is added to them."""
EVERY = (Fraction(1, 64), Fraction(1, 16), Fraction(1, 4), Fraction(1))
"""Round gaps between a stream's items: faster than any consumer, to slower."""
SLOW = Fraction(8)
"""How long a slow attempt takes: more than most timeouts."""
INTERRUPT_LAG = Fraction(1, 16)
"""Added to an interrupt's duration, off the quarter-second grid."""
CANCEL_AT = (Fraction(3, 8), Fraction(11, 8), Fraction(23, 8), Fraction(49, 8))
"""When a drawn cancellation comes: off the grid of the durations."""
SPREAD = Fraction(1, 2**20)
"""Item ``i`` of a fan-out takes ``(i + 1) * SPREAD`` longer."""


def fault_plans(
    definition: PipelineDefinition,
    *,
    max_items: int = 20,
    hangs: bool | None = None,
    interrupts: bool = False,
    cancel: bool = True,
) -> st.SearchStrategy[FaultPlan]:
    """Return a strategy drawing fault plans for *definition*.

    Each stage acts a script of attempts: it returns, raises (errors its
    ``retry_config`` retries, by type or by text, and errors it does not),
    breaks the stage contract, runs slow (past its timeout), or hangs; a
    fan-out's items do so one by one; a streaming stage yields up to
    *max_items* items at its own pace, and may fail or hang part-way, and
    again on a retry. Stages feeding a FAN_OUT return lists; conditions
    answer at random; the run may be cancelled (its cancel token set).

    Args:
        definition: The pipeline the plans are for (validated here).
        max_items: The longest lists and streams drawn.
        hangs: Draw attempts that hang: ``True``; ``False`` never; ``None``
            only where a timeout or a cancellation bounds them, so that every
            run ends.
        interrupts: Draw attempts raising KeyboardInterrupt (an
            :class:`~actors.testing.faults.InjectedInterrupt`; rarely: one
            ends the run). Run such plans in your own ``trio.run``,
            catching KeyboardInterrupt around ``execute``.
        cancel: Sometimes set the context's cancel token part-way.

    Raises:
        PipelineValidationError: *definition* is invalid.
    """
    graph = graph_of(definition)
    return _plans(
        definition,
        graph,
        max_items=max_items,
        hangs=hangs,
        interrupts=interrupts,
        cancel=cancel,
    )


@st.composite
def _plans(
    draw: st.DrawFn,
    definition: PipelineDefinition,
    graph: Any,
    *,
    max_items: int,
    hangs: bool | None,
    interrupts: bool,
    cancel: bool,
) -> FaultPlan:
    # How faulty this plan is (0: every stage behaves), and whether it may
    # hold a KeyboardInterrupt.
    rate = draw(st.integers(0, 7))
    interrupting = interrupts and draw(st.integers(0, 9)) == 0
    cancel_at = None
    if cancel and draw(st.integers(0, 3)) == 0:
        cancel_at = draw(st.sampled_from(CANCEL_AT))
    bounded = cancel_at is not None or definition.timeout_ms is not None
    feeds = {
        node.inputs[0]
        for node in graph.nodes
        if node.definition.pattern is ExecutionPattern.FAN_OUT
        and len(node.inputs) == 1
        and not node.stream_fed
    }
    stages: dict[str, StagePlan] = {}
    for node in graph.nodes:
        stage = node.definition
        offset = Fraction(node.index + 1, 2**10)
        may_hang = hangs is True or (
            hangs is None
            and (
                bounded
                or stage.timeout_ms is not None
                or (node.generator and stage.stream_timeout_ms is not None)
            )
        )
        kinds = _Kinds(
            offset=offset,
            timeout_ms=stage.timeout_ms,
            errors=_errors(stage.retry_config),
            hangs=may_hang,
            interrupts=interrupting,
        )
        condition = draw(st.booleans()) if stage.condition is not None else None
        if node.generator:
            attempts = stage.retry_config.max_attempts if stage.retry_config else 1
            plan = StagePlan(
                stream=draw(_streams(kinds, rate, max_items, attempts)),
                condition=condition,
            )
        elif stage.pattern is ExecutionPattern.FAN_OUT:
            quiet = draw(st.sampled_from(BASES[:2]))
            items = draw(
                st.dictionaries(
                    st.integers(0, max(max_items - 1, 0)),
                    _scripts(kinds, max(rate, 5)),
                    max_size=3,
                )
            )
            plan = StagePlan(
                script=(Step(Act.RETURNS, kinds.duration(quiet)),),
                items=items,
                spread=SPREAD,
                condition=condition,
            )
        else:
            plan = StagePlan(
                script=draw(_scripts(kinds, rate)),
                condition=condition,
                emit=draw(_lengths(max_items)) if node.index in feeds else None,
            )
        stages[stage.id] = plan
    return FaultPlan(
        stages=stages, initial=draw(_lengths(max_items)), cancel_at=cancel_at
    )


class _Kinds:
    """What one stage may do, and its durations (offset, and never its timeout)."""

    def __init__(
        self,
        *,
        offset: Fraction,
        timeout_ms: float | None,
        errors: list[Exception],
        hangs: bool,
        interrupts: bool,
    ) -> None:
        self.offset = offset
        self.timeout = (
            None
            if timeout_ms is None or timeout_ms == float("inf")
            else Fraction(repr(float(timeout_ms))) / 1000
        )
        self.errors = errors
        self.hangs = hangs
        self.interrupts = interrupts

    def duration(self, base: Fraction) -> Fraction:
        """*base* plus the stage's offset, nudged off its timeout."""
        took = base + self.offset
        if took == self.timeout:
            took += Fraction(1, 2**12)  # exactly a timeout may end either way
        return took


def _errors(retry: RetryConfig | None) -> list[Exception]:
    """Errors to raise: one no filter admits, and one each filter admits."""
    found: list[Exception] = [ValueError("boom")]
    if retry is None:
        return found
    for kind in retry.retry_on or ():
        if not issubclass(kind, Exception) or issubclass(kind, RateLimited):
            continue  # RateLimited waits its Retry-After: not modelled
        try:
            error = kind(f"planned {kind.__name__}")
        except Exception:  # needs other arguments: skip it
            continue
        found.append(error)
    found.extend(
        RuntimeError(f"planned: {text}") for text in retry.retryable_errors or ()
    )
    return found


def _scripts(kinds: _Kinds, rate: int) -> st.SearchStrategy[tuple[Step, ...]]:
    """One behaviour, attempt by attempt: fine, or (about *rate* in 10) bad."""
    bases = st.sampled_from(BASES).map(kinds.duration)
    errors = st.sampled_from(kinds.errors)
    raising = st.builds(Step, st.just(Act.RAISES), bases, errors)
    bad = [
        raising.map(lambda step: (step,)),
        st.tuples(st.integers(1, 3), raising, bases).map(
            lambda t: (t[1],) * t[0] + (Step(Act.RETURNS, t[2]),)
        ),
        st.just((Step(Act.RETURNS, kinds.duration(SLOW)),)),
        st.builds(Step, st.just(Act.BREAKS_CONTRACT), bases).map(lambda step: (step,)),
    ]
    if kinds.hangs:
        bad.append(st.just((Step(Act.HANGS),)))
    if kinds.interrupts:
        bad.append(
            st.sampled_from(BASES).map(
                lambda base: (
                    Step(Act.INTERRUPTS, kinds.duration(base + INTERRUPT_LAG)),
                )
            )
        )
    ok = bases.map(lambda after: (Step(Act.RETURNS, after),))
    return st.integers(0, 9).flatmap(lambda roll: st.one_of(bad) if roll < rate else ok)


@st.composite
def _streams(
    draw: st.DrawFn, kinds: _Kinds, rate: int, max_items: int, attempts: int
) -> tuple[StreamStep, ...]:
    """A stream's attempts: each yields some items, then ends, fails or hangs."""
    every = kinds.duration(draw(st.sampled_from(EVERY)))
    total = draw(_lengths(max_items))
    steps = []
    for _ in range(draw(st.integers(1, min(attempts, 3)))):
        if draw(st.integers(0, 9)) >= rate:
            steps.append(StreamStep(total, every))
            continue
        part = draw(st.integers(0, total))
        ends = [
            st.builds(
                Step,
                st.just(Act.RAISES),
                st.sampled_from(BASES).map(kinds.duration),
                st.sampled_from(kinds.errors),
            )
        ]
        if kinds.hangs:
            ends.append(st.just(Step(Act.HANGS)))
        steps.append(StreamStep(part, every, draw(st.one_of(ends))))
    return tuple(steps)


def _lengths(most: int) -> st.SearchStrategy[int]:
    """List lengths from 0 to *most*, mostly short."""
    return st.one_of(
        st.integers(0, min(5, most)),
        st.integers(0, min(30, most)),
        st.integers(0, most),
    )


fix_module_names(globals(), __all__)

"""Hypothesis strategies: random valid DAGs and random fault plans.

A :class:`Plan` is plain data: the shape of a pipeline, what every stage (or
fan-out item) does on each attempt, and when the run is cancelled from
outside. ``tests/model.py`` predicts its outcome without trio;
``tests/test_chaos.py`` builds the real pipeline from it and compares.

Every duration is a dyadic rational (``k / 2**n``), so virtual times are
exact floats. Each stage and item gets its own tiny offset (``eps``) on top
of a round base duration: events of different stages almost never fall on
the same instant, which keeps the model's predictions exact instead of "one
of two outcomes" (see ``tests/model.py`` for how true ties are handled).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from fractions import Fraction

from hypothesis import strategies as st

from actors import ExecutionPattern


class Kind(enum.Enum):
    """What a stage (or an item) does on an attempt."""

    OK = "ok"
    """Sleep for its duration, then return its output."""
    RAISE = "raise"
    """Sleep for its duration, then raise ``ValueError("boom")``."""
    WRONG = "wrong"
    """Sleep for its duration, then return an int from ``execute`` (object form)."""
    HANG = "hang"
    """Sleep until cancelled."""
    FLAKY = "flaky"
    """Raise on the first ``fails`` attempts, then behave like OK."""
    SLOW = "slow"
    """Sleep for SLOW seconds, longer than any timeout, then return."""
    INTERRUPT = "interrupt"
    """Sleep for its duration plus 1/16 s, then raise KeyboardInterrupt."""


SLOW = Fraction(8)
"""How long a SLOW attempt sleeps: more than the longest timeout."""
INTERRUPT_LAG = Fraction(1, 16)
"""Added to an INTERRUPT fault's duration, off the quarter-second grid."""
BASES = (Fraction(1, 4), Fraction(1, 2), Fraction(1), Fraction(2))
"""Round durations; a stage's own ``eps`` is added to them."""
TIMEOUTS_MS = (750, 1500, 3000)
"""Per-attempt timeouts: never equal to a duration, whatever its eps."""


@dataclass(frozen=True)
class Fault:
    """The behaviour of one stage or item, attempt by attempt."""

    kind: Kind
    base: Fraction = Fraction(1, 4)
    fails: int = 0

    def attempt(self, number: int) -> Kind:
        """Return what attempt *number* (from 1) does: OK, RAISE, WRONG, HANG, SLOW or INTERRUPT."""
        if self.kind is Kind.FLAKY:
            return Kind.RAISE if number <= self.fails else Kind.OK
        return self.kind


@dataclass(frozen=True)
class Retry:
    """The parameters of a :class:`actors.RetryConfig`."""

    max_attempts: int = 1
    initial_delay_ms: int = 0
    backoff_multiplier: float = 2.0
    max_delay_ms: int = 60_000
    retryable_errors: tuple[str, ...] | None = None
    retry_on_value_error: bool = False


@dataclass(frozen=True)
class StageSpec:
    """One stage of a plan; stage ``i`` is named ``f"s{i}"``."""

    index: int
    inputs: tuple[int, ...] = ()
    pattern: ExecutionPattern = ExecutionPattern.SEQUENTIAL
    critical: bool = True
    condition: bool | None = None
    """What the condition returns; ``None``: no condition."""
    retry: Retry | None = None
    timeout_ms: int | None = None
    object_form: bool = False
    """Built as an object with ``execute`` (else as an async function)."""
    fault: Fault = Fault(Kind.OK)
    """The stage's behaviour (FAN_OUT: the default item's behaviour)."""
    item_faults: dict[int, Fault] = field(default_factory=dict)
    """FAN_OUT: items that behave differently from ``fault``."""
    max_concurrency: int | None = None
    item_failures: str = "fail"
    """FAN_OUT: ``"fail"`` or ``"collect"``."""
    min_successes: int | None = None
    """FAN_OUT with ``"collect"``: the threshold (``None``: the default)."""
    emit: int | None = None
    """Non-FAN_OUT: output ``list(range(emit))``; ``None``: output ``"out-i"``."""

    @property
    def id(self) -> str:
        """The stage id."""
        return f"s{self.index}"

    def fault_of(self, item: int | None) -> Fault:
        """Return the fault of the stage (``item=None``) or of one fan-out item."""
        if item is None:
            return self.fault
        return self.item_faults.get(item, self.fault)

    def eps(self, item: int | None) -> Fraction:
        """Return the tiny offset added to every duration of this stage or item."""
        offset = Fraction(self.index + 1, 2**10)
        if item is not None:
            offset += Fraction(item + 1, 2**20)
        return offset


@dataclass(frozen=True)
class Plan:
    """A whole example: the DAG, its faults and the outside cancellations."""

    stages: tuple[StageSpec, ...]
    order: tuple[int, ...]
    """Declaration order (a permutation of the stage indices)."""
    fail_fast: bool = True
    timeout_ms: Fraction | None = None
    """The pipeline's own timeout (binary-exact once divided by 1000)."""
    cancel_at: Fraction | None = None
    """When the test sets the context's cancel token, in virtual seconds."""
    initial: int = 0
    """The initial input is ``list(range(initial))``."""


def faults(
    *, object_form: bool, interrupts: bool = True, rate: int = 5
) -> st.SearchStrategy[Fault]:
    """Return a strategy for one fault: OK, or (about *rate* in 10) a bad one.

    WRONG is only for object-form stages, INTERRUPT only if *interrupts*.
    """
    bases = st.sampled_from(BASES)
    bad = [
        st.builds(Fault, st.just(Kind.RAISE), bases),
        st.builds(Fault, st.just(Kind.FLAKY), bases, st.integers(1, 3)),
        st.builds(Fault, st.just(Kind.SLOW)),
        st.builds(Fault, st.just(Kind.HANG)),
    ]
    if object_form:
        bad.append(st.builds(Fault, st.just(Kind.WRONG), bases))
    if interrupts:
        bad.append(st.builds(Fault, st.just(Kind.INTERRUPT), bases))
    ok = st.builds(Fault, st.just(Kind.OK), bases)
    return st.integers(0, 9).flatmap(lambda roll: st.one_of(bad) if roll < rate else ok)


@st.composite
def retries(draw: st.DrawFn) -> Retry:
    """Return random retry settings whose delays are whole quarter seconds."""
    initial = draw(st.sampled_from((0, 250, 500, 1000)))
    return Retry(
        max_attempts=draw(st.integers(1, 3)),
        initial_delay_ms=initial,
        backoff_multiplier=draw(st.sampled_from((1.0, 2.0))),
        max_delay_ms=draw(st.sampled_from((initial, 2 * initial, 60_000))),
        retryable_errors=draw(st.sampled_from((None, None, ("boom",)))),
        retry_on_value_error=draw(st.booleans()) and draw(st.booleans()),
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
def plans(draw: st.DrawFn, max_stages: int = 40) -> Plan:
    """Return a random valid DAG with a random fault plan."""
    shape = draw(shapes(max_stages))
    patterns: list[ExecutionPattern] = []
    for inputs in shape:
        choices = [ExecutionPattern.SEQUENTIAL, ExecutionPattern.PARALLEL]
        choices.append(ExecutionPattern.CONDITIONAL)
        if len(inputs) <= 1:
            choices += [ExecutionPattern.FAN_OUT] * 2
        patterns.append(draw(st.sampled_from(choices)))
    # A fan-out's input must be a list whenever the fan-out runs: its source
    # is critical, has no condition and emits a list (a non-list input is a
    # failure at once, which the bad-input tests cover).
    sources = {
        inputs[0]
        for inputs, pattern in zip(shape, patterns, strict=True)
        if pattern is ExecutionPattern.FAN_OUT and inputs
    }
    # How faulty this plan is (0: every stage behaves), and whether it may
    # hold a KeyboardInterrupt (which ends the run, so keep it rare).
    rate = draw(st.integers(0, 7))
    interrupts = draw(st.integers(0, 9)) == 0
    stages: list[StageSpec] = []
    for index, inputs in enumerate(shape):
        pattern = patterns[index]
        is_source = index in sources
        if is_source and pattern is ExecutionPattern.CONDITIONAL:
            pattern = ExecutionPattern.SEQUENTIAL
        object_form = draw(st.booleans())
        condition: bool | None = None
        if pattern is ExecutionPattern.CONDITIONAL or (
            not is_source and draw(st.integers(0, 9)) == 0
        ):
            condition = draw(st.booleans())
        spec = StageSpec(
            index=index,
            inputs=inputs,
            pattern=pattern,
            critical=True if is_source else draw(st.integers(0, 3)) > 0,
            condition=condition,
            retry=draw(st.none() | retries()),
            timeout_ms=draw(st.none() | st.sampled_from(TIMEOUTS_MS)),
            object_form=object_form,
            fault=draw(
                faults(object_form=object_form, interrupts=interrupts, rate=rate)
            ),
        )
        if pattern is ExecutionPattern.FAN_OUT:
            quiet = draw(st.sampled_from(BASES[:2]))
            spec = replace(
                spec,
                fault=Fault(Kind.OK, quiet),
                item_faults=draw(
                    st.dictionaries(
                        st.integers(0, 199),
                        faults(
                            object_form=object_form,
                            interrupts=interrupts,
                            rate=max(rate, 5),
                        ),
                        max_size=3,
                    )
                ),
                max_concurrency=draw(st.none() | st.integers(1, 8)),
            )
            # A collecting fan-out puts None in place of failed items; one
            # that feeds another fan-out keeps "fail", since an item of None
            # does not say which item it was.
            if not is_source and draw(st.booleans()):
                spec = replace(
                    spec,
                    item_failures="collect",
                    min_successes=draw(st.none() | st.integers(0, 8)),
                )
        elif is_source:
            spec = replace(spec, emit=draw(_lengths()))
        stages.append(spec)
    count = len(stages)
    fail_fast = draw(st.booleans())
    timeout_ms = cancel_at = None
    if draw(st.integers(0, 3)) == 0:
        timeout_ms = draw(
            st.sampled_from((1125, 2625, 4125, 8125, 20125)).map(Fraction)
        )
    if draw(st.integers(0, 3)) == 0:
        cancel_at = draw(st.sampled_from((0.375, 1.375, 2.875, 6.125)).map(Fraction))
    order = tuple(draw(st.permutations(range(count))))
    return Plan(
        stages=tuple(stages),
        order=order,
        fail_fast=fail_fast,
        timeout_ms=timeout_ms,
        cancel_at=cancel_at,
        initial=draw(_lengths()),
    )


def _lengths() -> st.SearchStrategy[int]:
    """List lengths from 0 to 200, mostly short."""
    return st.one_of(st.integers(0, 5), st.integers(0, 30), st.integers(0, 200))

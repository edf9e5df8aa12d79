"""An independent reference model of a run, in plain sequential Python (no trio).

Given a :class:`tests.strategies.Plan`, :func:`expect` computes what the documented
semantics say must happen: each stage's terminal status, its attempt count,
its exact finish time (as a :class:`~fractions.Fraction` of virtual
seconds), its output and input, and how the run as a whole ends.

The model works in two passes. The *natural* pass plays every stage as if
nothing were cancelled from outside: stage ``i`` only depends on earlier
stages, so one walk in index order suffices. Then the run's cancel time ``T``
is known (the pipeline timeout, the cancel token, or the first critical
failure under ``fail_fast``), and the *cut* pass stops everything at ``T``.

Ties. Trio runs the tasks woken at one instant in an unspecified order. When
a stage's own event (an attempt's timeout, the end of a backoff, its inputs
arriving) falls on exactly the instant of a cancellation caused elsewhere,
both orders are legal, so the model returns every legal outcome for that
stage (its ``alternatives``) instead of guessing. Durations carry per-stage
offsets (``StageSpec.eps``) so that this is rare.
"""

from __future__ import annotations

import enum
import heapq
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from strategies import INTERRUPT_LAG, SLOW, Kind, Plan, StageSpec

from actors import ExecutionPattern, PipelineStatus, StageStatus

Time = Fraction | float
"""A virtual time: a Fraction, or ``math.inf`` for never."""

NEVER: float = math.inf


class End(enum.Enum):
    """How one attempt ended, naturally."""

    OK = "ok"
    RAISE = "raise"
    WRONG = "wrong"
    TIMEOUT = "timeout"
    INTERRUPT = "interrupt"
    HANG = "hang"


@dataclass
class Chain:
    """The natural attempts of one stage or fan-out item, started at ``start``."""

    starts: list[Time] = field(default_factory=list)
    ends: list[Time] = field(default_factory=list)
    kinds: list[End] = field(default_factory=list)
    delays: list[Fraction] = field(default_factory=list)
    """The backoff before attempt ``k + 2``, for each retried attempt ``k + 1``."""

    @property
    def end(self) -> Time:
        """When the chain's outcome is known (``NEVER`` if it hangs)."""
        return self.ends[-1]

    @property
    def outcome(self) -> End:
        """How the last attempt ended."""
        return self.kinds[-1]

    @property
    def failed(self) -> bool:
        """True if the chain ends in a failure (not an interrupt or a hang)."""
        return self.outcome in (End.RAISE, End.WRONG, End.TIMEOUT)


@dataclass(frozen=True)
class Alt:
    """One legal outcome of a stage (or item) once cancellation is applied."""

    status: str
    """A StageStatus value, or "interrupt" / "hang" / "ok" / "cancelled" for items."""
    attempts: tuple[int, int]
    """Lowest and highest legal attempt count."""
    finish: Time


@dataclass
class StageExpect:
    """What the model says about one stage."""

    spec: StageSpec
    ready: Time = NEVER
    input: Any = None
    natural_status: str = ""
    natural_finish: Time = NEVER
    natural_attempts: int = 0
    output: Any = None
    error: str | None = None
    """A regex the error text must match, when the failure is unambiguous."""
    alternatives: list[Alt] = field(default_factory=list)
    interrupt_at: Time = NEVER
    chain: Chain | None = None
    items: list[tuple[Time, Chain]] = field(default_factory=list)
    item_failure_at: Time = NEVER
    item_interrupt_at: Time = NEVER
    trigger: bool = False
    """Its failure alone cancels the run (so it never sends its result)."""
    item_errors: dict[int, str] | None = None
    """A collecting fan-out that ran all its items: a regex per failed item."""
    partial: Any = None
    """A collecting fan-out that missed min_successes: its outputs, None at failures."""

    @property
    def statuses(self) -> set[str]:
        """Every legal terminal status."""
        return {alt.status for alt in self.alternatives}

    @property
    def exact(self) -> Alt | None:
        """The single legal outcome, or None when several are legal."""
        return self.alternatives[0] if len(self.alternatives) == 1 else None


@dataclass
class Expected:
    """What the model says about the whole run."""

    stages: list[StageExpect]
    cancel_at: Time
    """When the run is cancelled (``NEVER``: it is not)."""
    cause: set[PipelineStatus]
    """Why it is cancelled: FAILED (fail-fast), TIMED_OUT or CANCELLED."""
    interrupt: set[bool]
    """Whether ``execute`` raises KeyboardInterrupt (both when it is a tie)."""
    interrupt_at: Time
    hangs: bool
    """True if the run never ends (the test's watchdog must stop it)."""
    end: Time
    """When ``execute`` returns (or raises)."""
    statuses: set[PipelineStatus]
    tie: bool = False
    """True if the run's end or cause falls on a tie."""


def expect(plan: Plan) -> Expected:
    """Return what must happen when *plan* runs, from the documented semantics alone."""
    stages = [StageExpect(spec) for spec in plan.stages]
    initial = list(range(plan.initial))
    for stage in stages:
        _natural(plan, stage, stages, initial)

    external: list[tuple[Time, PipelineStatus]] = []
    if plan.timeout_ms is not None:
        external.append((plan.timeout_ms / 1000, PipelineStatus.TIMED_OUT))
    if plan.cancel_at is not None:
        external.append((plan.cancel_at, PipelineStatus.CANCELLED))
    failures = [
        s.natural_finish
        for s in stages
        if s.natural_status == StageStatus.FAILED and s.spec.critical
    ]
    if plan.fail_fast and failures:
        external.append((min(failures), PipelineStatus.FAILED))
    natural_end = max(
        (s.natural_finish for s in stages if s.natural_status != "interrupt"),
        default=Fraction(0),
    )
    interrupt_at = min((s.interrupt_at for s in stages), default=NEVER)

    cancel_at: Time = min((t for t, _ in external), default=NEVER)
    cause = {why for t, why in external if t == cancel_at}
    tie = len(cause) > 1
    if cancel_at > natural_end:
        cancel_at, cause = NEVER, set()
    elif cancel_at == natural_end != NEVER and cause != {PipelineStatus.FAILED}:
        # The last stage ends at the instant of an outside cancellation: the
        # run may finish first, or be cancelled.
        tie = True
    triggers = [
        s
        for s in stages
        if plan.fail_fast
        and s.spec.critical
        and s.natural_status == StageStatus.FAILED
        and s.natural_finish == cancel_at
    ]
    unique_trigger = (
        triggers[0] if len(triggers) == 1 and cause == {PipelineStatus.FAILED} else None
    )

    if unique_trigger is not None:
        unique_trigger.trigger = True
    for stage in stages:
        _cut(stage, stages, cancel_at, stage is unique_trigger)

    if interrupt_at < cancel_at:
        interrupt = {True}
    elif interrupt_at == cancel_at and interrupt_at != NEVER:
        interrupt = {True, False}
    else:
        interrupt = {False}
    hangs = natural_end == NEVER and cancel_at == NEVER and interrupt_at == NEVER
    end: Time = min(cancel_at, natural_end)

    statuses: set[PipelineStatus] = set()
    if cancel_at != NEVER:
        statuses |= cause
        if tie and cancel_at == natural_end:
            statuses.add(_plain_status(stages))
    else:
        statuses.add(_plain_status(stages))
    return Expected(
        stages=stages,
        cancel_at=cancel_at,
        cause=cause,
        interrupt=interrupt,
        interrupt_at=interrupt_at,
        hangs=hangs,
        end=end,
        statuses=statuses,
        tie=tie,
    )


def _plain_status(stages: list[StageExpect]) -> PipelineStatus:
    """Status of a run nobody cancelled: FAILED if a critical stage did not succeed."""
    for stage in stages:
        if stage.spec.critical and stage.natural_status not in (
            StageStatus.SUCCEEDED,
            StageStatus.SKIPPED,
        ):
            return PipelineStatus.FAILED
    return PipelineStatus.SUCCEEDED


def _natural(
    plan: Plan, stage: StageExpect, stages: list[StageExpect], initial: list[int]
) -> None:
    """Play *stage* with no outside cancellation (earlier stages are done)."""
    spec = stage.spec
    sources = [stages[i] for i in spec.inputs]
    if any(s.natural_finish == NEVER for s in sources):
        stage.natural_status = "never"  # an input never arrives
        return
    stage.ready = max((s.natural_finish for s in sources), default=Fraction(0))
    failed = [
        source.spec.id
        for source in sources
        if source.natural_status == StageStatus.UPSTREAM_FAILED
        or (source.natural_status == StageStatus.FAILED and source.spec.critical)
    ]
    if failed:
        # Any failed input may be the one named (the semantics do not say which).
        stage.natural_status = StageStatus.UPSTREAM_FAILED
        stage.natural_finish = stage.ready
        stage.error = rf"^upstream stage '({'|'.join(failed)})' failed$"
        return
    if not sources:
        stage.input = initial
    elif len(sources) == 1:
        stage.input = sources[0].output
    else:
        stage.input = {s.spec.id: s.output for s in sources}
    if spec.condition is False:
        stage.natural_status = StageStatus.SKIPPED
        stage.natural_finish = stage.ready
        return
    if spec.pattern is ExecutionPattern.FAN_OUT and spec.item_failures == "collect":
        _natural_collect(stage)
        return
    if spec.pattern is ExecutionPattern.FAN_OUT:
        _natural_fan_out(stage)
        return
    chain = _chain(spec, None, stage.ready)
    stage.chain = chain
    stage.natural_attempts = len(chain.starts)
    stage.natural_finish = chain.end
    if chain.outcome is End.OK:
        stage.natural_status = StageStatus.SUCCEEDED
        stage.output = list(range(spec.emit)) if spec.emit is not None else spec.id
    elif chain.outcome is End.INTERRUPT:
        stage.natural_status = "interrupt"
        stage.interrupt_at = chain.end
        stage.natural_finish = NEVER
    elif chain.outcome is End.HANG:
        stage.natural_status = "hang"
    else:
        stage.natural_status = StageStatus.FAILED
        stage.error = _error_pattern(spec, chain.outcome, len(chain.starts))


def _natural_fan_out(stage: StageExpect) -> None:
    """Play a fan-out: workers pull items in order; a failed item stops its worker."""
    spec = stage.spec
    items = stage.input
    assert isinstance(items, list)  # the strategy only feeds lists to fan-outs
    count = len(items)
    if count == 0:
        stage.output = []
        stage.natural_status = StageStatus.SUCCEEDED
        stage.natural_finish = stage.ready
        return
    limit = min(spec.max_concurrency or count, count)
    free: list[tuple[Time, int]] = [(stage.ready, worker) for worker in range(limit)]
    for index in range(count):
        if not free:
            break
        start, worker = heapq.heappop(free)
        chain = _chain(spec, index, start)
        stage.items.append((start, chain))
        if chain.outcome is End.OK:
            heapq.heappush(free, (chain.end, worker))
    failures = [chain.end for _, chain in stage.items if chain.failed]
    interrupts = [
        chain.end for _, chain in stage.items if chain.outcome is End.INTERRUPT
    ]
    stage.item_failure_at = min(failures, default=NEVER)
    stage.item_interrupt_at = min(interrupts, default=NEVER)
    stop = min(stage.item_failure_at, stage.item_interrupt_at)
    started = [(s, c) for s, c in stage.items if s <= stop]
    stage.natural_attempts = sum(
        _count(c, stop)[0] if s < stop else 1 for s, c in started
    )
    if stage.item_interrupt_at < stage.item_failure_at:
        stage.natural_status = "interrupt"
        stage.interrupt_at = stage.item_interrupt_at
        return
    if stage.item_failure_at != NEVER:
        stage.natural_status = StageStatus.FAILED
        stage.natural_finish = stage.item_failure_at
        first = [
            (index, chain)
            for index, (_, chain) in enumerate(stage.items)
            if chain.failed and chain.end == stage.item_failure_at
        ]
        if len(first) == 1:
            index, chain = first[0]
            inner = _error_pattern(spec, chain.outcome, len(chain.starts))
            stage.error = rf"^item {index}: {inner.removeprefix('^')}"
        if stage.item_interrupt_at == stage.item_failure_at:
            stage.interrupt_at = stage.item_interrupt_at  # a tie: either may win
        return
    if len(stage.items) == count and all(
        chain.outcome is End.OK for _, chain in stage.items
    ):
        stage.natural_status = StageStatus.SUCCEEDED
        stage.natural_finish = max(chain.end for _, chain in stage.items)
        stage.output = [[spec.index, item] for item in items]
        return
    stage.natural_status = "hang"


def _natural_collect(stage: StageExpect) -> None:
    """Play a collecting fan-out: a failed item frees its worker and stops nothing.

    Only an interrupt stops the items; a hung item holds its worker forever.
    Once every item has ended, the stage succeeds if at least
    ``min_successes`` did (default: one, or none for an empty list).
    """
    spec = stage.spec
    items = stage.input
    assert isinstance(items, list)
    count = len(items)
    minimum = spec.min_successes
    if minimum is not None and minimum > count:
        stage.natural_status = StageStatus.FAILED
        stage.natural_finish = stage.ready
        stage.error = rf"^min_successes={minimum} but only {count} items arrived$"
        stage.item_errors = {}
        return
    if count == 0:
        stage.output = []
        stage.natural_status = StageStatus.SUCCEEDED
        stage.natural_finish = stage.ready
        stage.item_errors = {}
        return
    limit = min(spec.max_concurrency or count, count)
    free: list[tuple[Time, int]] = [(stage.ready, worker) for worker in range(limit)]
    for index in range(count):
        if not free:
            break
        start, worker = heapq.heappop(free)
        chain = _chain(spec, index, start)
        stage.items.append((start, chain))
        if chain.outcome is End.OK or chain.failed:
            heapq.heappush(free, (chain.end, worker))
    stage.item_interrupt_at = min(
        (chain.end for _, chain in stage.items if chain.outcome is End.INTERRUPT),
        default=NEVER,
    )
    stop = stage.item_interrupt_at
    stage.natural_attempts = sum(
        _count(c, stop)[0] if s < stop else 1 for s, c in stage.items if s <= stop
    )
    if stop != NEVER:
        stage.natural_status = "interrupt"
        stage.interrupt_at = stop
        return
    if len(stage.items) < count or any(
        chain.outcome is End.HANG for _, chain in stage.items
    ):
        stage.natural_status = "hang"
        return
    errors = {
        index: _error_pattern(spec, chain.outcome, len(chain.starts))
        for index, (_, chain) in enumerate(stage.items)
        if chain.failed
    }
    stage.item_errors = errors
    outputs = [
        None if index in errors else [spec.index, item]
        for index, item in enumerate(items)
    ]
    stage.natural_finish = max(chain.end for _, chain in stage.items)
    succeeded = count - len(errors)
    needed = min(count, 1) if minimum is None else minimum
    if succeeded >= needed:
        stage.natural_status = StageStatus.SUCCEEDED
        stage.output = outputs
        return
    stage.natural_status = StageStatus.FAILED
    stage.partial = outputs
    first = min(errors)
    inner = errors[first].removeprefix("^").removesuffix("$")
    stage.error = (
        rf"^{len(errors)} of {count} items failed, {succeeded} succeeded "
        rf"\(min_successes={needed}\): item {first}: {inner}"
    )


def _chain(spec: StageSpec, item: int | None, start: Time) -> Chain:
    """Play the attempts of one stage or item from *start*, with its retry policy."""
    fault = spec.fault_of(item)
    eps = spec.eps(item)
    timeout: Fraction | None = (
        None if spec.timeout_ms is None else Fraction(spec.timeout_ms, 1000)
    )
    retry = spec.retry
    max_attempts = 1 if retry is None else retry.max_attempts
    chain = Chain()
    now = start
    number = 0
    while True:
        number += 1
        chain.starts.append(now)
        kind = fault.attempt(number)
        if kind is Kind.HANG:
            took: Time = NEVER
        elif kind is Kind.SLOW:
            took = SLOW
        elif kind is Kind.INTERRUPT:
            took = fault.base + INTERRUPT_LAG + eps
        else:
            took = fault.base + eps
        if timeout is not None and took >= timeout:
            end, result = now + timeout, End.TIMEOUT
        elif kind is Kind.HANG:
            end, result = NEVER, End.HANG
        else:
            end = now + took
            result = {
                Kind.OK: End.OK,
                Kind.SLOW: End.OK,
                Kind.RAISE: End.RAISE,
                Kind.WRONG: End.WRONG,
                Kind.INTERRUPT: End.INTERRUPT,
            }[kind]
        chain.ends.append(end)
        chain.kinds.append(result)
        if result not in (End.RAISE, End.WRONG, End.TIMEOUT):
            return chain
        if number >= max_attempts or not _retryable(spec, result):
            return chain
        assert retry is not None
        delay_ms = min(
            retry.initial_delay_ms * retry.backoff_multiplier ** (number - 1),
            retry.max_delay_ms,
        )
        delay = Fraction(delay_ms) / 1000
        chain.delays.append(delay)
        now = end + delay


def _retryable(spec: StageSpec, result: End) -> bool:
    """Whether the retry filters admit this failure (attempts aside)."""
    retry = spec.retry
    assert retry is not None
    if retry.retryable_errors is not None and result is not End.RAISE:
        return False  # only "ValueError: boom" contains "boom"
    return not (retry.retry_on_value_error and result is not End.RAISE)


def _error_pattern(spec: StageSpec, result: End, attempt: int) -> str:
    """A regex for the error text of a failure ending in *result*."""
    if result is End.RAISE:
        return r"^ValueError: boom$"
    if result is End.WRONG:
        return rf"^StageContractError: stage '{spec.id}': execute returned int, "
    assert result is End.TIMEOUT
    return (
        rf"^StageTimeoutError: stage '{spec.id}' timed out after "
        rf"{spec.timeout_ms} ms \(attempt {attempt}\)$"
    )


def _count(chain: Chain, cut: Time) -> tuple[int, int]:
    """Attempts of *chain* started by *cut* (low, high: high counts a tie at *cut*)."""
    low = sum(1 for start in chain.starts if start < cut)
    ties = sum(1 for start in chain.starts[1:] if start == cut)
    if chain.starts[0] == cut:
        low += 1  # the first attempt is started by whoever started the chain
    return low, low + ties


def _chain_alternatives(chain: Chain, cut: Time, trigger: bool) -> list[Alt]:
    """Every legal outcome of *chain* when everything is cancelled at *cut*.

    *trigger* says the chain's own failure is what cancels at *cut*, so that
    failure certainly happens.
    """
    if cut > chain.end or cut == NEVER:
        low, _ = _count(chain, NEVER)
        return [Alt(chain.outcome.value, (low, low), chain.end)]
    # An attempt starting exactly at *cut* (a backoff ending then) may or may
    # not start before the cancellation is seen: *high* counts it.
    low, high = _count(chain, cut)
    cancelled = Alt("cancelled", (low, high), cut)
    if cut < chain.end:
        return [cancelled]
    # The last attempt ends at *cut*. Its sleep ends through trio's deadline
    # machinery, so if the cancellation is processed first, the stage sees
    # Cancelled instead: both are legal, unless its own failure is the cause.
    natural = Alt(chain.outcome.value, (low, low), chain.end)
    if trigger:
        return [natural]
    return [natural, cancelled]


def _cut(
    stage: StageExpect, stages: list[StageExpect], cut: Time, trigger: bool
) -> None:
    """Fill ``stage.alternatives``: what is legal once the run is cancelled at *cut*."""
    status = stage.natural_status
    if status == "never" or stage.ready > cut:
        stage.alternatives = [Alt(StageStatus.CANCELLED, (0, 0), cut)]
        return
    if trigger and stage.ready == cut == stage.natural_finish:
        # It fails the instant its inputs arrive (min_successes above the
        # item count), and that failure is what cancels the run.
        stage.alternatives = [Alt(status, (0, 0), cut)]
        return
    if (
        stage.ready == cut
        and cut != NEVER
        and any(
            source.trigger
            or all(alt.status == StageStatus.CANCELLED for alt in source.alternatives)
            for source in (stages[i] for i in stage.spec.inputs)
        )
    ):
        # An input that ends at *cut* without sending its result (the cause
        # of the cancellation, or certainly cancelled): this stage never gets
        # all its inputs.
        stage.alternatives = [Alt(StageStatus.CANCELLED, (0, 0), cut)]
        return
    if stage.ready == cut and cut != NEVER:
        # Inputs arrive at the instant of the cancellation: the stage may or
        # may not get to decide (skip, upstream failure, empty fan-out, start).
        spec = stage.spec
        workers = 1
        if spec.pattern is ExecutionPattern.FAN_OUT and isinstance(stage.input, list):
            workers = min(spec.max_concurrency or len(stage.input), len(stage.input))
        stage.alternatives = [Alt(StageStatus.CANCELLED, (0, workers), cut)]
        if status in (StageStatus.SKIPPED, StageStatus.UPSTREAM_FAILED) or (
            status in (StageStatus.SUCCEEDED, StageStatus.FAILED)
            and stage.natural_finish == cut
        ):
            stage.alternatives.append(Alt(status, (0, 0), cut))
        return
    if status in (StageStatus.SKIPPED, StageStatus.UPSTREAM_FAILED):
        stage.alternatives = [Alt(status, (0, 0), stage.natural_finish)]
        return
    if stage.spec.pattern is ExecutionPattern.FAN_OUT:
        stage.alternatives = _fan_out_alternatives(stage, cut, trigger)
        return
    assert stage.chain is not None
    stage.alternatives = [
        Alt(_stage_status(alt.status), alt.attempts, alt.finish)
        for alt in _chain_alternatives(stage.chain, cut, trigger)
    ]


def _stage_status(item_status: str) -> str:
    return {
        "ok": StageStatus.SUCCEEDED,
        "raise": StageStatus.FAILED,
        "wrong": StageStatus.FAILED,
        "timeout": StageStatus.FAILED,
        "cancelled": StageStatus.CANCELLED,
        "interrupt": "interrupt",
        "hang": "hang",
    }[item_status]


def _fan_out_alternatives(stage: StageExpect, cut: Time, trigger: bool) -> list[Alt]:
    """Legal outcomes of a fan-out stage cancelled at *cut* (or by its own failure)."""
    if not stage.items:
        # An empty list succeeded, and a collecting fan-out asking more
        # successes than items failed, when it became ready.
        return [Alt(stage.natural_status, (0, 0), stage.natural_finish)]
    local = min(stage.item_failure_at, stage.item_interrupt_at)
    stop = min(local, cut)
    # Decided by its own items alone: a success, or a collecting fan-out's
    # failure once every item has ended (a collected failure stops nothing).
    settled = stage.natural_status == StageStatus.SUCCEEDED or (
        stage.spec.item_failures == "collect"
        and stage.natural_status == StageStatus.FAILED
    )
    low = high = 0
    for start, chain in stage.items:
        if start > stop:
            continue
        if start == stop:
            high += 1  # its worker may finish the previous item, or be cancelled
            continue
        alternatives = _chain_alternatives(chain, stop, False)
        low += min(alt.attempts[0] for alt in alternatives)
        high += max(alt.attempts[1] for alt in alternatives)
    status = stage.natural_status
    if stop == NEVER or (settled and stage.natural_finish < cut):
        return [Alt(status, (low, high), stage.natural_finish)]
    if local < cut:
        if stage.item_interrupt_at == stage.item_failure_at:
            return [
                Alt(StageStatus.FAILED, (low, high), local),
                Alt("interrupt", (low, high), local),
            ]
        return [Alt(status, (low, high), local)]
    cancelled = Alt(StageStatus.CANCELLED, (low, high), cut)
    if local == cut or (settled and stage.natural_finish == cut):
        if trigger:
            return [Alt(status, (low, high), cut)]
        return [Alt(status, (low, high), cut), cancelled]
    return [cancelled]

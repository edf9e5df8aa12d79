"""The reference model of a run, in plain sequential Python (no trio).

Given each stage's settings and plan, :func:`play` computes what the
documented semantics say must happen: each stage's terminal status, its
attempt count, its exact finish time, its output and input, and how the run
as a whole ends.

The model works in two passes. The *natural* pass plays every stage as if
nothing were cancelled from outside, in dependency order (a stream and the
fan-outs it feeds are played together, see ``_model_streams``). Then the
run's cancel time ``T`` is known (the pipeline timeout, the cancel token, or
the first critical failure under ``fail_fast``), and the *cut* pass stops
everything at ``T``.

Ties. Trio runs the tasks woken at one instant in an unspecified order. When
a stage's own event (an attempt's timeout, the end of a backoff, its inputs
arriving) falls on exactly the instant of a cancellation caused elsewhere,
both orders are legal, so the model returns every legal outcome for that
stage (its ``alternatives``) instead of guessing.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .._results import PipelineStatus, StageStatus
from ._model_chain import (
    NEVER,
    Alt,
    End,
    Spec,
    StageExpect,
    Time,
    chain_alternatives,
    escape,
    play_chain,
)
from ._model_streams import Chooser, play_cluster


@dataclass
class Expected:
    """What the model says about the whole run (one scenario)."""

    stages: list[StageExpect]
    """By position in the definition."""
    cancel_at: Time
    """When the run is cancelled (``NEVER``: it is not)."""
    cause: set[PipelineStatus]
    """Why it is cancelled: FAILED (fail-fast), TIMED_OUT or CANCELLED."""
    interrupt: set[bool]
    """Whether ``execute`` raises KeyboardInterrupt (both when it is a tie)."""
    interrupt_at: Time
    hangs: bool
    """True if the run never ends."""
    end: Time
    """When ``execute`` returns (or raises)."""
    statuses: set[PipelineStatus]
    tie: bool = False
    """True if the run's end or cause falls on a tie."""


@dataclass(frozen=True)
class Run:
    """The run-level settings the model needs."""

    fail_fast: bool
    timeout_ms: float | None
    cancel_at: Fraction | None
    initial: Any


def play(specs: list[Spec], run: Run, chooser: Chooser) -> Expected:
    """Return what must happen when these stages run, from the semantics alone."""
    stages = [StageExpect(spec) for spec in specs]
    for index in _order(specs):
        _natural(stages[index], stages, run.initial, chooser)

    external: list[tuple[Time, PipelineStatus]] = []
    if run.timeout_ms is not None:
        external.append(
            (Fraction(repr(run.timeout_ms)) / 1000, PipelineStatus.TIMED_OUT)
        )
    if run.cancel_at is not None:
        external.append((run.cancel_at, PipelineStatus.CANCELLED))
    failures = [
        s.natural_finish
        for s in stages
        if s.natural_status == StageStatus.FAILED and s.spec.critical
    ]
    if run.fail_fast and failures:
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
        if run.fail_fast
        and s.spec.critical
        and s.natural_status == StageStatus.FAILED
        and s.natural_finish == cancel_at
    ]
    unique_trigger = (
        triggers[0] if len(triggers) == 1 and cause == {PipelineStatus.FAILED} else None
    )

    if unique_trigger is not None:
        unique_trigger.trigger = True
    for index in _order(specs):
        stage = stages[index]
        _cut(stage, stages, cancel_at, stage is unique_trigger)
        details = stage.details
        stage.alternatives = [
            Alt(alt.status, alt.attempts, alt.finish, details)
            if alt.status == stage.natural_status
            else alt
            for alt in stage.alternatives
        ]

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


def _order(specs: list[Spec]) -> list[int]:
    """Positions in dependency order (the definition is acyclic)."""
    order: list[int] = []
    done = [False] * len(specs)
    for root in range(len(specs)):
        stack = [(root, False)]
        while stack:
            index, expanded = stack.pop()
            if done[index]:
                continue
            if expanded:
                done[index] = True
                order.append(index)
                continue
            stack.append((index, True))
            stack.extend(
                (i, False) for i in reversed(specs[index].inputs) if not done[i]
            )
    return order


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
    stage: StageExpect, stages: list[StageExpect], initial: Any, chooser: Chooser
) -> None:
    """Play *stage* with no outside cancellation (its inputs are done)."""
    spec = stage.spec
    if spec.stream_fed:
        return  # played with the stream that feeds it
    sources = [stages[i] for i in spec.inputs]
    if any(s.natural_finish == NEVER for s in sources):
        stage.natural_status = "never"  # an input never arrives
    else:
        _decide(stage, sources, initial)
    if spec.generator:
        play_cluster(stages, stage, chooser)
        return
    if stage.natural_status:
        return
    if spec.fan_out:
        items = stage.input
        if not isinstance(items, list):
            stage.natural_status = StageStatus.FAILED
            stage.natural_finish = stage.ready
            stage.error = (
                rf"^TypeError: FAN_OUT stage '{escape(spec.id)}' expected a list or "
                rf"tuple input, got {type(items).__name__}$"
            )
            stage.metadata = {}
        elif spec.item_failures == "collect":
            _natural_collect(stage)
        else:
            _natural_fan_out(stage)
        return
    chain = play_chain(spec, None, stage.ready)
    stage.chain = chain
    stage.natural_finish = chain.end
    if chain.outcome is End.OK:
        stage.natural_status = StageStatus.SUCCEEDED
        stage.output = spec.plan.output(spec.id)
        stage.metadata = {}
    elif chain.outcome is End.INTERRUPT:
        stage.natural_status = "interrupt"
        stage.interrupt_at = chain.end
        stage.natural_finish = NEVER
    elif chain.outcome is End.HANG:
        stage.natural_status = "hang"
    else:
        stage.natural_status = StageStatus.FAILED
        stage.error = chain.error
        stage.metadata = {}


def _decide(stage: StageExpect, sources: list[StageExpect], initial: Any) -> None:
    """Settle what happens as the inputs arrive: upstream failure, skip, or run."""
    spec = stage.spec
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
        names = "|".join(escape(name) for name in failed)
        stage.error = rf"^upstream stage '({names})' failed$"
        stage.metadata = {}
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
        stage.output = None
        stage.metadata = {"skipped": True, "reason": "condition returned False"}


def _natural_fan_out(stage: StageExpect) -> None:
    """Play a fan-out: workers pull items in order; a failed item stops its worker."""
    spec = stage.spec
    items = stage.input
    count = len(items)
    stage.metadata = {}
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
        chain = play_chain(spec, index, start)
        stage.items[index] = (start, chain)
        if chain.outcome is End.OK:
            heapq.heappush(free, (chain.end, worker))
    chains = list(stage.items.values())
    failures = [chain.end for _, chain in chains if chain.failed]
    interrupts = [chain.end for _, chain in chains if chain.outcome is End.INTERRUPT]
    stage.item_failure_at = min(failures, default=NEVER)
    stage.item_interrupt_at = min(interrupts, default=NEVER)
    if stage.item_interrupt_at < stage.item_failure_at:
        stage.natural_status = "interrupt"
        stage.interrupt_at = stage.item_interrupt_at
        return
    if stage.item_failure_at != NEVER:
        stage.natural_status = StageStatus.FAILED
        stage.natural_finish = stage.item_failure_at
        first = [
            (index, chain)
            for index, (_, chain) in stage.items.items()
            if chain.failed and chain.end == stage.item_failure_at
        ]
        if len(first) == 1:
            index, chain = first[0]
            assert chain.error is not None
            stage.error = rf"^item {index}: {chain.error.removeprefix('^')}"
        if stage.item_interrupt_at == stage.item_failure_at:
            stage.interrupt_at = stage.item_interrupt_at  # a tie: either may win
        return
    if len(chains) == count and all(chain.outcome is End.OK for _, chain in chains):
        stage.natural_status = StageStatus.SUCCEEDED
        stage.natural_finish = max(chain.end for _, chain in chains)
        stage.output = list(items)
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
    count = len(items)
    minimum = spec.min_successes
    stage.metadata = {}
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
        chain = play_chain(spec, index, start)
        stage.items[index] = (start, chain)
        if chain.outcome is End.OK or chain.failed:
            heapq.heappush(free, (chain.end, worker))
    chains = list(stage.items.values())
    stage.item_interrupt_at = min(
        (chain.end for _, chain in chains if chain.outcome is End.INTERRUPT),
        default=NEVER,
    )
    if stage.item_interrupt_at != NEVER:
        stage.natural_status = "interrupt"
        stage.interrupt_at = stage.item_interrupt_at
        return
    if len(chains) < count or any(chain.outcome is End.HANG for _, chain in chains):
        stage.natural_status = "hang"
        return
    errors = {
        index: chain.error
        for index, (_, chain) in stage.items.items()
        if chain.failed and chain.error is not None
    }
    stage.item_errors = errors
    outputs = [None if index in errors else item for index, item in enumerate(items)]
    stage.natural_finish = max(chain.end for _, chain in chains)
    succeeded = count - len(errors)
    needed = min(count, 1) if minimum is None else minimum
    if succeeded >= needed:
        stage.natural_status = StageStatus.SUCCEEDED
        stage.output = outputs
        return
    stage.natural_status = StageStatus.FAILED
    stage.metadata = {"partial": outputs}
    first = min(errors)
    inner = errors[first].removeprefix("^").removesuffix("$")
    stage.error = (
        rf"^{len(errors)} of {count} items failed, {succeeded} succeeded "
        rf"\(min_successes={needed}\): item {first}: {inner}"
    )


def _silent(source: StageExpect) -> bool:
    """True if *source* certainly sends no result at the cut."""
    return source.trigger or all(
        alt.status == StageStatus.CANCELLED for alt in source.alternatives
    )


def _cut(
    stage: StageExpect, stages: list[StageExpect], cut: Time, trigger: bool
) -> None:
    """Fill ``stage.alternatives``: what is legal once the run is cancelled at *cut*."""
    spec = stage.spec
    if spec.stream_fed:
        parent = stages[spec.inputs[0]]
        stage.alternatives = _consumer_alternatives(
            stage, cut, trigger, silent=cut != NEVER and _silent(parent)
        )
        return
    status = stage.natural_status
    if status == "never" or stage.ready > cut:
        stage.alternatives = [Alt(StageStatus.CANCELLED, (0, 0), cut)]
        return
    if trigger and stage.ready == cut == stage.natural_finish:
        # It fails the instant its inputs arrive (min_successes above the
        # item count), and that failure is what cancels the run.
        stage.alternatives = [Alt(status, (0, 0), cut)]
        return
    sources = [stages[i] for i in spec.inputs]
    if stage.ready == cut and cut != NEVER and any(_silent(s) for s in sources):
        # An input that ends at *cut* without sending its result (the cause
        # of the cancellation, or certainly cancelled): this stage never gets
        # all its inputs.
        stage.alternatives = [Alt(StageStatus.CANCELLED, (0, 0), cut)]
        return
    if stage.ready == cut and cut != NEVER:
        # Inputs arrive at the instant of the cancellation: the stage may or
        # may not get to decide (skip, upstream failure, empty fan-out, start).
        workers = 1
        if spec.fan_out and isinstance(stage.input, list):
            workers = min(spec.max_concurrency or len(stage.input), len(stage.input))
        stage.alternatives = [Alt(StageStatus.CANCELLED, (0, workers), cut)]
        if status in (StageStatus.SKIPPED, StageStatus.UPSTREAM_FAILED) or (
            status in (StageStatus.SUCCEEDED, StageStatus.FAILED)
            and stage.natural_finish == cut
        ):
            # Decided at once, or by attempts that took no time.
            chains = list(stage.items.values())
            attempts = sum(len(chain.starts) for _, chain in chains)
            if stage.chain is not None:
                attempts += len(stage.chain.starts)
            stage.alternatives.append(Alt(status, (attempts, attempts), cut))
        return
    if status in (StageStatus.SKIPPED, StageStatus.UPSTREAM_FAILED) or (
        spec.fan_out and not stage.items and status == StageStatus.FAILED
    ):
        # Decided as the inputs arrived: an empty list, a list too short for
        # min_successes, or an input that is not a list.
        stage.alternatives = [Alt(status, (0, 0), stage.natural_finish)]
        return
    if spec.fan_out:
        stage.alternatives = _fan_out_alternatives(stage, cut, trigger)
        return
    assert stage.chain is not None
    stage.alternatives = [
        Alt(
            _stage_status(alt.status),
            (alt.attempts[0], alt.attempts[1] + stage.slack),
            alt.finish,
        )
        for alt in chain_alternatives(stage.chain, cut, trigger)
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


def _item_attempts(stage: StageExpect, stop: Time) -> tuple[int, int]:
    """Attempts of a fan-out's items started by *stop* (low, high)."""
    low = high = 0
    for start, chain in stage.items.values():
        if start > stop:
            continue
        if start == stop:
            high += 1  # its worker may finish the previous item, or be cancelled
            continue
        alternatives = chain_alternatives(chain, stop, False)
        low += min(alt.attempts[0] for alt in alternatives)
        high += max(alt.attempts[1] for alt in alternatives)
    return low, high + stage.slack


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
    low, high = _item_attempts(stage, stop)
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


def _consumer_alternatives(
    stage: StageExpect, cut: Time, trigger: bool, *, silent: bool
) -> list[Alt]:
    """Legal outcomes of a stream-fed FAN_OUT when the run is cancelled at *cut*.

    *silent*: its stream certainly sends no result at *cut* (it is the
    cause of the cancellation, or certainly cancelled then).
    """
    status = stage.natural_status
    finish = stage.natural_finish
    local = min(stage.item_failure_at, stage.item_interrupt_at)
    stop = min(local, cut)
    low, high = _item_attempts(stage, stop)
    if status in ("never", "hang") and cut == NEVER:
        return [Alt(status, (low, high), NEVER)]
    if local < cut or (finish < cut and status != "interrupt"):
        if local < cut and stage.item_interrupt_at == stage.item_failure_at:
            return [
                Alt(StageStatus.FAILED, (low, high), local),
                Alt("interrupt", (low, high), local),
            ]
        return [Alt(status, (low, high), min(local, finish))]
    cancelled = Alt(StageStatus.CANCELLED, (low, high), cut)
    if cut in (local, finish):
        if trigger:
            return [Alt(status, (low, high), cut)]
        if silent and local > cut:
            # It was waiting only for the end of its stream, which ends the
            # run and sends nothing.
            return [cancelled]
        return [Alt(status, (low, high), cut), cancelled]
    return [cancelled]

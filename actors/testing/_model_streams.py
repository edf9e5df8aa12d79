"""The reference model of streams: a producer and the FAN_OUTs it feeds, together.

A stream's pace depends on its consumers (backpressure) and theirs on it, so a
producer and every FAN_OUT fed by it, directly or along a chain of fan-outs,
are played as one small discrete-event simulation, as the streaming rules
describe them: an unbuffered channel per stream edge, ``max_concurrency``
workers per consumer (a task per item without a limit), the producer handing
each item to its consumers in declaration order, ``stream_buffer`` items read
ahead, a failed item of a ``"fail"`` consumer stopping that consumer and
closing its channels.

Ties. Within one instant the model matches senders to receivers only once
every process woken then has run. Where trio's order of that instant changes
what happens (two items ready for one free worker, a consumer failing while
an item crosses one of its channels), the model asks its chooser, and the
oracle plays every choice as a separate scenario.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import StageTimeoutError
from .._util import describe
from ._model_chain import (
    FAILURES,
    NEVER,
    UNSET,
    Chain,
    End,
    StageExpect,
    Time,
    error_pattern,
    escape,
    play_chain,
    stream_step,
)
from ._plan import Act, seconds, stream_item

Chooser = Callable[[int], int]
"""Returns which of *n* legal orders to play (0 is the first)."""


class _Eoc:
    """The end of a channel, as a receiver sees it."""


EOC = _Eoc()

Command = tuple[Any, ...]
Process = Generator[Command, Any, None]


@dataclass(eq=False)
class Proc:
    """A process of the simulation: a generator yielding commands."""

    gen: Process
    member: Member
    counted: bool = True
    """Its stage's work is over only once it has ended (not so a watchdog)."""
    alive: bool = True

    @property
    def group(self) -> int:
        """The index of the stage it belongs to."""
        return self.member.stage.spec.index


@dataclass(eq=False)
class Channel:
    """A stream edge (or a producer's read-ahead buffer)."""

    capacity: int
    stages: tuple[int, ...]
    """The stages whose stop this channel's activity is tied to."""
    buffer: deque[Any] = field(default_factory=deque)
    senders: deque[tuple[Proc, Any, Time]] = field(default_factory=deque)
    receivers: deque[Proc] = field(default_factory=deque)
    closed: bool = False
    """No more items will be sent."""
    broken: bool = False
    """Its receiver stopped taking items."""

    def matchable(self) -> bool:
        """True if an item could change hands now."""
        if self.broken:
            return bool(self.senders)
        return bool(self.receivers) and bool(self.buffer or self.senders)


@dataclass(eq=False)
class Member:
    """The simulation's view of one stage of the cluster."""

    stage: StageExpect
    inlet: Channel | None = None
    outlets: dict[int, Channel] = field(default_factory=dict)
    live: list[int] = field(default_factory=list)
    """Consumers still taking items, in declaration order."""
    procs: int = 0
    """Processes still running (a consumer is done when none are)."""
    done_at: Time = NEVER
    stopped: bool = False
    # A producer:
    produced: int = 0
    starts: list[Time] = field(default_factory=list)
    error: BaseException | None = None
    end: End = End.HANG
    # A consumer:
    outputs: dict[int, Any] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    failures: list[tuple[int, Chain]] = field(default_factory=list)
    count: int = 0


@dataclass(eq=False)
class _Stop:
    member: Member
    interrupt: bool = False


class Simulation:
    """Plays one cluster from the producer's ready time to quiescence."""

    def __init__(self, chooser: Chooser, start: Time) -> None:
        self.chooser = chooser
        self.now: Time = start
        self.timers: list[tuple[Time, int, Proc]] = []
        self.ready: deque[tuple[Proc, Any]] = deque()
        self.seq = itertools.count()
        self.channels: list[Channel] = []
        self.members: dict[int, Member] = {}
        self.pending: list[_Stop] = []
        self.decided = False
        self.woken: list[Proc] = []
        """The processes a timer woke in this instant."""

    def spawn(self, gen: Process, member: Member, *, counted: bool = True) -> None:
        """Start a process of *member* in this instant."""
        if counted:
            member.procs += 1
        self.ready.append((Proc(gen, member, counted), None))

    def channel(self, capacity: int, *stages: int) -> Channel:
        """Open a channel tied to *stages*."""
        channel = Channel(capacity, stages)
        self.channels.append(channel)
        return channel

    def run(self) -> None:
        """Play until nothing can happen any more."""
        while True:
            self._instant()
            if not self.timers or self.timers[0][0] == NEVER:
                return
            self.now = self.timers[0][0]
            self.woken = []
            while self.timers and self.timers[0][0] == self.now:
                _, _, proc = heapq.heappop(self.timers)
                if proc.alive:
                    self.ready.append((proc, None))
                    self.woken.append(proc)

    def _instant(self) -> None:
        self.decided = False
        while True:
            self._drain()
            if self.pending and not self.decided:
                self.decided = True
                busy = any(
                    channel.matchable()
                    for channel in self.channels
                    for stop in self.pending
                    if stop.member.stage.spec.index in channel.stages
                )
                # 0: the stop comes first in the instant; 1: last.
                if not busy or self.chooser(2) == 0:
                    self._stop_all()
                    continue
            if self._match():
                continue
            if self.pending:
                self._stop_all()
                continue
            return

    def _drain(self) -> None:
        while self.ready:
            proc, value = self.ready.popleft()
            if proc.alive:
                self._step(proc, value)

    def _step(self, proc: Proc, value: Any) -> None:
        try:
            command = proc.gen.send(value)
        except StopIteration:
            proc.alive = False
            member = proc.member
            if proc.counted:
                member.procs -= 1
                if member.procs == 0 and not member.stopped:
                    self._done(member)
            return
        kind = command[0]
        if kind == "sleep":
            heapq.heappush(self.timers, (command[1], next(self.seq), proc))
        elif kind == "send":
            channel: Channel = command[1]
            if channel.broken:
                self.ready.append((proc, False))
            elif len(channel.buffer) < channel.capacity and not channel.senders:
                channel.buffer.append(command[2])
                self.ready.append((proc, True))
            else:
                channel.senders.append((proc, command[2], self.now))
        elif kind == "recv":
            command[1].receivers.append(proc)
        else:  # "stop": a consumer's item failed for good, or interrupted
            proc.alive = False
            proc.member.procs -= 1
            self.pending.append(_Stop(proc.member, command[1]))

    def _match(self) -> bool:
        moved = False
        for channel in self.channels:
            if channel.broken:
                while channel.senders:
                    proc, _, _ = channel.senders.popleft()
                    self.ready.append((proc, False))
                    moved = True
                continue
            while True:
                while channel.senders and len(channel.buffer) < channel.capacity:
                    proc, item, _ = channel.senders.popleft()
                    channel.buffer.append(item)
                    self.ready.append((proc, True))
                    moved = True
                if not channel.receivers:
                    break
                if channel.buffer:
                    item = channel.buffer.popleft()
                elif channel.senders:
                    item = self._pick(channel)
                elif channel.closed:
                    item = EOC
                else:
                    break
                self.ready.append((channel.receivers.popleft(), item))
                moved = True
        return moved

    def _pick(self, channel: Channel) -> Any:
        """Take an item from a parked sender: the earliest, trio's choice among ties."""
        senders = channel.senders
        first = senders[0][2]
        tied = [i for i, (_, _, since) in enumerate(senders) if since == first]
        index = 0
        if len(tied) > len(channel.receivers):
            index = tied[self.chooser(len(tied))]
        proc, item, _ = senders[index]
        del senders[index]
        self.ready.append((proc, True))
        return item

    def _stop_all(self) -> None:
        pending, self.pending = self.pending, []
        for stop in pending:
            self._stop(stop.member, interrupt=stop.interrupt)

    def _stop(self, member: Member, *, interrupt: bool) -> None:
        """A consumer's item failed for good (or interrupted): stop it now."""
        stage = member.stage
        if interrupt:
            # Raised whatever else happens in this instant: it propagates.
            stage.interrupt_at = stage.item_interrupt_at = self.now
        else:
            stage.item_failure_at = min(stage.item_failure_at, self.now)
        if member.stopped:
            return
        member.stopped = True
        self.kill(stage.spec.index)
        if member.inlet is not None:
            member.inlet.broken = True
        for outlet in member.outlets.values():
            outlet.closed = True
        member.done_at = self.now

    def kill(self, index: int) -> None:
        """End every process of stage *index* where it is."""
        for _, _, proc in self.timers:
            if proc.group == index:
                proc.alive = False
        for proc, _ in self.ready:
            if proc.group == index:
                proc.alive = False
        for channel in self.channels:
            channel.senders = deque(s for s in channel.senders if s[0].group != index)
            channel.receivers = deque(r for r in channel.receivers if r.group != index)

    def _done(self, member: Member) -> None:
        """Every process of a consumer ended: its stream is over."""
        member.done_at = self.now
        for outlet in member.outlets.values():
            outlet.closed = True


def play_cluster(
    stages: list[StageExpect], producer: StageExpect, chooser: Chooser
) -> list[StageExpect]:
    """Play *producer* and every FAN_OUT its stream feeds; return those consumers.

    The producer's own inputs are known (its ``natural_status`` says
    whether it runs). Fills each one's natural outcome.
    """
    consumers: list[StageExpect] = []
    pending = list(producer.spec.consumers)
    while pending:
        consumer = stages[pending.pop(0)]
        consumers.append(consumer)
        pending.extend(consumer.spec.consumers)
    if producer.natural_status == "never":
        for consumer in consumers:
            consumer.natural_status = "never"
        return consumers

    sim = Simulation(chooser, producer.ready)
    head = Member(producer)
    sim.members[producer.spec.index] = head
    for consumer in consumers:
        sim.members[consumer.spec.index] = Member(consumer)
    for member in list(sim.members.values()):
        for index in member.stage.spec.consumers:
            channel = sim.channel(0, member.stage.spec.index, index)
            member.outlets[index] = channel
            member.live.append(index)
            sim.members[index].inlet = channel
    if producer.natural_status in ("skipped", "upstream_failed"):
        # It never streams: its consumers see the end at once.
        _done_producer(sim, head, producer.natural_status)
    else:
        sim.spawn(_produce(sim, head), head)
        whole = producer.spec.stream_timeout_ms
        if whole is not None:
            deadline = producer.ready + seconds(whole) / 1000
            sim.spawn(_watch(sim, head, deadline), head, counted=False)
    for consumer in consumers:
        member = sim.members[consumer.spec.index]
        limit = consumer.spec.max_concurrency
        if limit is None:
            sim.spawn(_receive(sim, member), member)
        else:
            for _ in range(limit):
                sim.spawn(_worker(sim, member), member)
    sim.run()
    _settle_producer(head)
    for consumer in consumers:
        _settle_consumer(sim, sim.members[consumer.spec.index])
    return consumers


def _done_producer(sim: Simulation, head: Member, status: str) -> None:
    head.stopped = True
    head.done_at = sim.now
    for outlet in head.outlets.values():
        outlet.closed = True
    head.stage.natural_finish = sim.now


def _produce(sim: Simulation, head: Member) -> Process:
    """The producer: attempts of the generator, each item handed on in turn."""
    spec = head.stage.spec
    retry = spec.retry
    attempt = 0
    error: BaseException | None = None
    while True:
        attempt += 1
        head.starts.append(sim.now)
        delivered = head.produced
        errors: list[BaseException] = []
        if spec.buffer == 0:
            yield from _pull(sim, head, attempt, delivered, errors, deliver=True)
        else:
            ahead = sim.channel(spec.buffer - 1, spec.index)
            sim.spawn(_read(sim, head, attempt, delivered, errors, ahead=ahead), head)
            while True:
                pair = yield ("recv", ahead)
                if pair is EOC:
                    break
                yield from _deliver(head, pair)
        error = errors[0] if errors else None
        if (
            error is None
            or retry is None
            or attempt >= retry.max_attempts
            or not retry.should_retry(describe(error), error)
        ):
            break
        yield ("sleep", sim.now + seconds(retry.delay_ms(attempt + 1)) / 1000)
    _finish_producer(sim, head, error)


def _finish_producer(
    sim: Simulation, head: Member, error: BaseException | None
) -> None:
    head.error = error
    head.stopped = True
    head.done_at = head.stage.natural_finish = sim.now
    head.end = End.OK if error is None else End.RAISE
    for outlet in head.outlets.values():
        outlet.closed = True


def _read(
    sim: Simulation,
    head: Member,
    attempt: int,
    delivered: int,
    errors: list[BaseException],
    *,
    ahead: Channel,
) -> Process:
    """The read-ahead task: iterates the generator into the buffer."""
    yield from _pull(sim, head, attempt, delivered, errors, deliver=False, ahead=ahead)
    ahead.closed = True


def _pull(
    sim: Simulation,
    head: Member,
    attempt: int,
    delivered: int,
    errors: list[BaseException],
    *,
    deliver: bool,
    ahead: Channel | None = None,
) -> Process:
    """Iterate one attempt of the generator; hand each new item on."""
    spec = head.stage.spec
    step = stream_step(spec, attempt)
    every = seconds(step.every)
    first = delivered if spec.resumable else 0
    for index in range(first, step.items):
        timed_out = yield from _wait(sim, head, every)
        if timed_out is not None:
            errors.append(timed_out)
            return
        if index < delivered:
            continue  # re-yielded after a retry: discarded
        pair = (index, stream_item(spec.id, index))
        head.produced += 1
        if deliver:
            yield from _deliver(head, pair)
        else:
            assert ahead is not None
            yield ("send", ahead, pair)
    then = step.then
    wait: Time = NEVER if then.act is Act.HANGS else seconds(then.after)
    timed_out = yield from _wait(sim, head, wait)
    if timed_out is not None:
        errors.append(timed_out)
    elif then.act is Act.RAISES:
        errors.append(then.raised())


def _wait(
    sim: Simulation, head: Member, wait: Time
) -> Generator[Command, Any, BaseException | None]:
    """Wait for the generator's next item, bounded by the stage's timeout."""
    spec = head.stage.spec
    timeout = spec.timeout
    if timeout is not None and wait == timeout:
        raise ValueError(
            f"stage {spec.id!r}: a planned wait of exactly its timeout "
            f"({spec.timeout_ms:g} ms) may end either way; plan another duration"
        )
    if timeout is not None and wait > timeout:
        yield ("sleep", sim.now + timeout)
        assert spec.timeout_ms is not None
        return StageTimeoutError(
            f"stage {spec.id!r} timed out after {spec.timeout_ms / 1000 * 1000:g} ms "
            f"waiting for item {head.produced}"
        )
    yield ("sleep", sim.now + wait)
    return None


def _deliver(head: Member, pair: tuple[int, Any]) -> Process:
    """Hand *pair* to every live consumer in turn; drop those that stopped."""
    for index in list(head.live):
        taken = yield ("send", head.outlets[index], pair)
        if not taken:
            head.live.remove(index)


def _watch(sim: Simulation, head: Member, deadline: Time) -> Process:
    """``stream_timeout_ms``: the whole stream fails at *deadline*."""
    yield ("sleep", deadline)
    if head.stage.natural_finish != NEVER:
        return
    spec = head.stage.spec
    if any(proc.counted and proc.member is head for proc in sim.woken):
        # The producer woke in this very instant too. trio cancels on the
        # deadline first, but what the producer does before its next
        # checkpoint still happens: it may yield once more (counted, never
        # delivered), start one more attempt, or end (then without failing).
        head.stage.metadata = UNSET
        head.stage.slack = 1
        if sim.chooser(2) == 1:
            yield ("sleep", sim.now)  # after the rest of this instant
            if head.stage.natural_finish != NEVER:
                return
    sim.kill(spec.index)
    assert spec.stream_timeout_ms is not None
    _finish_producer(
        sim,
        head,
        StageTimeoutError(
            f"stage {spec.id!r}: stream timed out after {spec.stream_timeout_ms:g} ms "
            f"({head.produced} items)"
        ),
    )


def _worker(sim: Simulation, member: Member) -> Process:
    """One of a consumer's ``max_concurrency`` workers."""
    assert member.inlet is not None
    while True:
        pair = yield ("recv", member.inlet)
        if pair is EOC:
            return
        yield from _item(sim, member, pair)
        if member.failures:
            return


def _receive(sim: Simulation, member: Member) -> Process:
    """A consumer without a limit: one task per item, no backpressure."""
    assert member.inlet is not None
    while True:
        pair = yield ("recv", member.inlet)
        if pair is EOC:
            return
        sim.spawn(_item(sim, member, pair), member)


def _item(sim: Simulation, member: Member, pair: tuple[int, Any]) -> Process:
    """Run one item through its attempts, then hand its output on."""
    stage = member.stage
    spec = stage.spec
    index, value = pair
    member.count = max(member.count, index + 1)
    chain = play_chain(spec, index, sim.now)
    stage.items[index] = (sim.now, chain)
    yield ("sleep", chain.end)
    outcome = chain.outcome
    if outcome is End.INTERRUPT:
        yield ("stop", True)
        return
    collect = spec.item_failures == "collect"
    if outcome is End.OK or (collect and outcome in FAILURES):
        output = value if outcome is End.OK else None
        if outcome is not End.OK:
            assert chain.error is not None
            member.errors[index] = chain.error
        member.outputs[index] = output
        for child in list(member.live):
            taken = yield ("send", member.outlets[child], (index, output))
            if not taken and child in member.live:  # another worker saw it first
                member.live.remove(child)
        return
    member.failures.append((index, chain))
    yield ("stop", False)


def _settle_producer(head: Member) -> None:
    """The producer's natural outcome, once the simulation is over."""
    stage = head.stage
    spec = stage.spec
    if stage.natural_status in ("skipped", "upstream_failed"):
        return
    if head.starts:
        stage.chain = Chain(
            starts=list(head.starts), ends=[stage.natural_finish], kinds=[head.end]
        )
    kept: Any = [stream_item(spec.id, i) for i in range(head.produced)]
    if not spec.collect:
        kept = head.produced
    if stage.natural_finish == NEVER:
        stage.natural_status = "hang"
        return
    error = head.error
    if error is None:
        stage.natural_status = "succeeded"
        stage.output = kept if spec.collect else None
        stage.metadata = {}
        return
    stage.natural_status = "failed"
    stage.error = error_pattern(spec, End.RAISE, describe(error))
    if stage.slack and stage.error.endswith(r" items\)$"):
        # Timed out in the instant the generator woke: one more item or not.
        stage.error = stage.error[: stage.error.rindex(r"\(")] + r"\(\d+ items\)$"
    # With slack, the stream timed out in the instant the generator woke:
    # the items kept are not predicted.
    stage.metadata = UNSET if stage.slack else {"items": kept}


def _settle_consumer(sim: Simulation, member: Member) -> None:
    """A stream-fed FAN_OUT's natural outcome (see docs/streaming.md)."""
    stage = member.stage
    spec = stage.spec
    parent = sim.members[spec.inputs[0]].stage
    if stage.interrupt_at != NEVER:
        stage.natural_status = "interrupt"
        return
    if member.failures:
        stage.natural_status = "failed"
        stage.natural_finish = member.done_at
        if len(member.failures) == 1:
            index, chain = member.failures[0]
            assert chain.error is not None
            stage.error = rf"^item {index}: {chain.error.removeprefix('^')}"
        stage.metadata = {}
        return
    if member.done_at == NEVER:
        stage.natural_status = "hang"
        return
    stage.natural_finish = member.done_at
    count = member.count
    keep = spec.collect
    collect = spec.item_failures == "collect"
    listed = [member.outputs.get(i) for i in range(count)] if keep else []
    output: Any = listed if keep else None
    failed_input = parent.natural_status == "upstream_failed" or (
        parent.natural_status == "failed" and parent.spec.critical
    )
    status, error, metadata = "succeeded", None, {}
    if collect:
        stage.item_errors = dict(sorted(member.errors.items()))
        minimum = spec.min_successes
        if minimum is not None and minimum > count:
            status = "failed"
            error = rf"^min_successes={minimum} but only {count} items arrived$"
            output = None
        else:
            outputs = listed if keep else [None] * count
            errors = stage.item_errors
            succeeded = count - len(errors)
            needed = min(count, 1) if minimum is None else minimum
            if succeeded >= needed:
                output = outputs if keep else None
            else:
                status = "failed"
                output = outputs
                first = min(errors)
                inner = errors[first].removeprefix("^").removesuffix("$")
                error = (
                    rf"^{len(errors)} of {count} items failed, {succeeded} "
                    rf"succeeded \(min_successes={needed}\): item {first}: {inner}"
                )
                metadata = {"partial": outputs}
    if failed_input:
        stage.natural_status = "upstream_failed"
        stage.error = rf"^upstream stage '{escape(parent.spec.id)}' failed$"
        stage.metadata = {"partial": output}
        return
    stage.natural_status = status
    stage.error = error
    stage.metadata = metadata
    if status == "succeeded":
        stage.output = output

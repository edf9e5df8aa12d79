"""GCRA meters and one named limit's FIFO admission, on trio's clock."""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Protocol

import trio

if TYPE_CHECKING:
    from ._model import RateLimit


class LimitBackend(Protocol):
    """A quota shared beyond this process, consulted once the local pacer admits.

    :class:`actors.limits.RedisBackend` is the one the library ships.
    """

    async def admit(
        self, name: str, limit: RateLimit, requests: int, tokens: float
    ) -> float | None:
        """Take *requests* and *tokens* from the shared quota of *name*.

        Return ``None`` once taken, or the seconds to wait before asking
        again (nothing taken). A checkpoint.
        """
        ...


class Meter:
    """One GCRA meter: ``T`` seconds per unit, a tolerance of ``tau`` seconds.

    ``tat`` (the theoretical arrival time) is when the meter would be full
    again; a cost ``c`` conforms at ``tat + c*T - tau``.
    """

    __slots__ = ("burst", "interval", "tat", "tau", "unit")

    def __init__(self, per_second: float, burst: float, unit: str) -> None:
        self.interval = 1 / per_second
        self.burst = burst
        self.tau = burst * self.interval
        self.tat = -math.inf
        self.unit = unit

    def ready_at(self, cost: float) -> float:
        """Return the earliest time a cost conforms (maybe in the past)."""
        return self.tat + cost * self.interval - self.tau

    def take(self, cost: float, now: float) -> None:
        """Charge *cost* at *now*."""
        tat = self.tat
        self.tat = (tat if tat > now else now) + cost * self.interval

    def adjust(self, delta: float, now: float) -> None:
        """Move the meter by *delta* units: a debt if positive, else a refund."""
        if delta > 0:
            self.take(delta, now)
        else:
            self.tat += delta * self.interval


def meters_of(spec: RateLimit) -> tuple[tuple[Meter, ...], tuple[Meter, ...]]:
    """Return the request meters and the token meters that *spec* declares."""
    burst = 1.0 if spec.burst is None else spec.burst
    requests = []
    if spec.requests_per_second is not None:
        requests.append(Meter(spec.requests_per_second, burst, "requests"))
    if spec.requests_per_minute is not None:
        requests.append(Meter(spec.requests_per_minute / 60, burst, "requests"))
    tokens = []
    for per_second in (
        spec.tokens_per_second,
        None if spec.tokens_per_minute is None else spec.tokens_per_minute / 60,
    ):
        if per_second is not None:
            # One second's worth by default: never a whole minute at start-up.
            token_burst = per_second if spec.token_burst is None else spec.token_burst
            tokens.append(Meter(per_second, token_burst, "tokens"))
    return tuple(requests), tuple(tokens)


def impossible(
    name: str,
    request_meters: tuple[Meter, ...],
    token_meters: tuple[Meter, ...],
    requests: int,
    tokens: float,
) -> str | None:
    """Return why a request could never be granted (a cost above a burst)."""
    for meters, cost, what in (
        (request_meters, requests, "burst"),
        (token_meters, tokens, "token_burst"),
    ):
        for meter in meters:
            if cost > meter.burst:
                return (
                    f"limit {name!r}: a cost of {cost:g} {meter.unit} exceeds its "
                    f"{what} of {meter.burst:g}; it could never be granted "
                    f"(raise {what} or split the request)"
                )
    return None


class _Waiter:
    __slots__ = ("requests", "tokens", "wake")

    def __init__(self, requests: int, tokens: float) -> None:
        self.requests = requests
        self.tokens = tokens
        self.wake = trio.Event()


class LimitState:
    """One named limit within one trio run: meters, slots, queue and pause.

    Admission is strictly FIFO: the concurrency slot first (FIFO), then a
    place in the meter queue, whose head alone sleeps until its exact ready
    time and then takes every meter at once.
    """

    __slots__ = (
        "backend",
        "max_requests",
        "max_tokens",
        "name",
        "paused_until",
        "queue",
        "request_meters",
        "resume",
        "slots",
        "spec",
        "token_meters",
    )

    def __init__(self, name: str, spec: RateLimit) -> None:
        self.name = name
        self.spec = spec
        self.request_meters, self.token_meters = meters_of(spec)
        # The largest costs ever grantable, compared on every acquisition.
        self.max_requests = min(
            (m.burst for m in self.request_meters), default=math.inf
        )
        self.max_tokens = min((m.burst for m in self.token_meters), default=math.inf)
        self.slots = (
            None
            if spec.max_concurrency is None
            else trio.CapacityLimiter(spec.max_concurrency)
        )
        self.queue: deque[_Waiter] = deque()
        self.paused_until = -math.inf
        # The resume instant of the last pause, until the first grant after
        # it: that grant leaves every meter's burst allowance empty.
        self.resume: float | None = None
        self.backend: LimitBackend | None = spec.backend

    def check(self, requests: int, tokens: float) -> None:
        """Raise ValueError if the request can never be granted."""
        if requests <= self.max_requests and tokens <= self.max_tokens:
            return
        problem = impossible(
            self.name, self.request_meters, self.token_meters, requests, tokens
        )
        if problem is not None:
            raise ValueError(problem)

    def ready_at(self, requests: int, tokens: float) -> float:
        """Return when every meter conforms (and any pause is over)."""
        ready = self.paused_until
        if requests:
            for meter in self.request_meters:
                at = meter.tat + requests * meter.interval - meter.tau
                if at > ready:  # noqa: PLR1730  # max() costs a call per meter
                    ready = at
        if tokens:
            for meter in self.token_meters:
                at = meter.tat + tokens * meter.interval - meter.tau
                if at > ready:  # noqa: PLR1730  # same
                    ready = at
        return ready

    def take(self, requests: int, tokens: float, now: float) -> None:
        """Charge every meter at once (never awaits)."""
        resume = self.resume
        for meter in self.request_meters:
            meter.take(requests, now)
            if resume is not None:
                meter.tat = max(meter.tat, resume + meter.tau)
        for meter in self.token_meters:
            if tokens:
                meter.take(tokens, now)
            if resume is not None:
                meter.tat = max(meter.tat, resume + meter.tau)
        self.resume = None

    def pause(self, seconds: float, now: float) -> float:
        """Admit nothing until ``now + seconds``; return when it resumes."""
        until = now + seconds
        if until > self.paused_until:
            self.paused_until = until
            self.resume = until
            self.changed()
        return self.paused_until

    def changed(self) -> None:
        """Wake the head waiter to recompute its ready time."""
        if self.queue:
            self.queue[0].wake.set()

    async def admit(self, requests: int, tokens: float, checkpointed: bool) -> None:
        """Wait in FIFO order until every meter conforms, then take them all.

        A checkpoint (unless *checkpointed* says the caller already made
        one). Cancelled while queued, it takes nothing and hands the head
        on to the next waiter.
        """
        now = trio.current_time()
        if (
            not self.queue
            and self.backend is None
            and self.ready_at(requests, tokens) <= now
        ):
            if not checkpointed:
                await trio.lowlevel.checkpoint_if_cancelled()
            self.take(requests, tokens, now)
            if not checkpointed:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return
        waiter = _Waiter(requests, tokens)
        queue = self.queue
        queue.append(waiter)
        try:
            while True:
                if queue[0] is waiter:
                    ready = self.ready_at(requests, tokens)
                    now = trio.current_time()
                    if ready <= now:
                        if self.backend is not None:
                            wait = await self.backend.admit(
                                self.name, self.spec, requests, tokens
                            )
                            if wait is not None:
                                # Wall-clock by nature: the shared window's reset.
                                await trio.sleep(wait)
                                continue
                            now = trio.current_time()
                        self.take(requests, tokens, now)
                        break
                    with trio.move_on_at(ready):
                        await waiter.wake.wait()
                else:
                    await waiter.wake.wait()
                if waiter.wake.is_set():
                    waiter.wake = trio.Event()
        finally:
            if queue[0] is waiter:
                queue.popleft()
                if queue:
                    queue[0].wake.set()
            else:
                queue.remove(waiter)

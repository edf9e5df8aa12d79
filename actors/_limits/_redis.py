"""The shared backend: one quota for several processes, kept in Redis.

Imported only when a :class:`RedisBackend` is made; the ``limits`` and
``redis`` packages (the ``actors[redis]`` extra) only when it is first used.
The ``limits`` library's synchronous API runs in a worker thread: its
``limits.aio`` flavour needs asyncio and is not used.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.strategies import MovingWindowRateLimiter

    from ._model import RateLimit

_SCHEMES = ("redis://", "rediss://", "redis+unix://", "redis+sentinel://")
_SHORTEST_WAIT = 0.001
"""Never poll Redis faster than this, whatever the clocks say."""


class RedisBackend:
    """Share a limit's rates with every process that names it on the same Redis.

    Each process keeps its own FIFO GCRA pacer; when its head waiter is
    locally ready, it takes the cost from a moving window in Redis, and on
    refusal sleeps until that window frees enough room, then asks again.
    The shared path runs on the wall clock by nature: under a virtual trio
    clock only the local pacer is virtual. Concurrency slots and pauses stay
    per process; ``settle`` corrects the local meters only.

    Args:
        url: A Redis URL such as ``redis://127.0.0.1:6379/0``.
        prefix: Namespaces the keys, so applications can share one Redis.
    """

    def __init__(self, url: str, *, prefix: str = "actors") -> None:
        if not str(url).startswith(_SCHEMES):
            raise ValueError(
                f"RedisBackend needs a redis:// (or rediss://, redis+unix://, "
                f"redis+sentinel://) URL, got {url!r}"
            )
        self.url = url
        self.prefix = prefix
        self._lock = threading.Lock()
        self._limiter: MovingWindowRateLimiter | None = None

    def __repr__(self) -> str:
        return f"RedisBackend({self.url!r}, prefix={self.prefix!r})"

    async def admit(
        self, name: str, limit: RateLimit, requests: int, tokens: float
    ) -> float | None:
        """Take the cost from the shared windows, or say how long to wait.

        Returns ``None`` once taken, else the seconds until the window frees
        enough room. A checkpoint; it waits for Redis in a worker thread, and
        cancellation waits for that round trip to end.
        """
        return await trio.to_thread.run_sync(self._admit, name, limit, requests, tokens)

    def _admit(
        self, name: str, limit: RateLimit, requests: int, tokens: float
    ) -> float | None:
        limiter = self._connect()
        costs = [
            (item, unit, cost) for item, unit, cost in _items(limit, requests, tokens)
        ]
        for item, unit, cost in costs:
            if cost > item.amount:
                raise ValueError(
                    f"limit {name!r}: a cost of {cost} {unit} exceeds the shared "
                    f"window of {item}; it could never be granted"
                )
        # Test every window first, so a refusal rarely leaves a partial hit.
        for item, unit, cost in costs:
            if not limiter.test(item, self.prefix, name, unit, cost=cost):
                return self._wait(limiter, item, name, unit)
        for item, unit, cost in costs:
            # Another process may have taken the room since the test: the
            # windows already hit stay spent (conservative, never over).
            if not limiter.hit(item, self.prefix, name, unit, cost=cost):
                return self._wait(limiter, item, name, unit)
        return None

    def _wait(
        self,
        limiter: MovingWindowRateLimiter,
        item: RateLimitItem,
        name: str,
        unit: str,
    ) -> float:
        reset = limiter.get_window_stats(item, self.prefix, name, unit).reset_time
        return max(reset - time.time(), _SHORTEST_WAIT)

    def _connect(self) -> MovingWindowRateLimiter:
        with self._lock:
            if self._limiter is None:
                from limits.storage import storage_from_string  # noqa: PLC0415  # optional extra
                from limits.strategies import MovingWindowRateLimiter  # noqa: PLC0415  # same

                self._limiter = MovingWindowRateLimiter(storage_from_string(self.url))
            return self._limiter


def _items(
    limit: RateLimit, requests: int, tokens: float
) -> list[tuple[RateLimitItem, str, int]]:
    """The shared windows of *limit*, each with the cost to take from it."""
    from limits import (  # noqa: PLC0415  # optional extra
        RateLimitItemPerHour,
        RateLimitItemPerMinute,
        RateLimitItemPerSecond,
    )

    found: list[tuple[RateLimitItem, str, int]] = []
    for per_second, per_minute, unit, cost in (
        (limit.requests_per_second, limit.requests_per_minute, "requests", requests),
        (limit.tokens_per_second, limit.tokens_per_minute, "tokens", math.ceil(tokens)),
    ):
        if not cost:
            continue
        if per_second is not None:
            # A fractional rate becomes a whole count over a longer window,
            # rounded down: the shared window never admits more than the rate.
            if per_second.is_integer():
                found.append((RateLimitItemPerSecond(int(per_second)), unit, cost))
            else:
                amount = max(1, math.floor(per_second * 60))
                found.append((RateLimitItemPerMinute(amount), unit, cost))
        if per_minute is not None:
            if per_minute.is_integer():
                found.append((RateLimitItemPerMinute(int(per_minute)), unit, cost))
            else:
                amount = max(1, math.floor(per_minute * 60))
                found.append((RateLimitItemPerHour(amount), unit, cost))
    return found


RedisBackend.__module__ = "actors.limits"

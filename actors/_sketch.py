"""Percentiles of fan-out item durations in memory that does not grow with items."""

from __future__ import annotations

import math
from typing import TypeVar

_EXACT_LIMIT = 512
"""Distinct values kept exactly; past this, values share log-spaced buckets."""

_GROWTH = 1.01
"""Bucket width: each bucket spans 1 %, so a percentile is off by < 0.5 %."""

_LOG_GROWTH = math.log(_GROWTH)
_log, _floor = math.log, math.floor
_PER_LOG = 1 / _LOG_GROWTH


class DurationSketch:
    """Counts durations to answer nearest-rank percentiles.

    Exact while at most 512 distinct values were seen (always so under a mock
    clock, and for short lists); after that each value is counted in a
    log-spaced bucket 1 % wide and a percentile is that bucket's midpoint,
    within 0.5 % of the exact answer. The maximum is always exact. Memory is
    bounded by the number of buckets a range of durations needs (about 230
    per factor of ten), never by the number of items.
    """

    __slots__ = ("_buckets", "_count", "_exact", "maximum")

    def __init__(self) -> None:
        self._exact: dict[float, int] | None = {}
        self._buckets: dict[int, int] = {}
        self._count = 0
        self.maximum = 0.0

    def __len__(self) -> int:
        return self._count

    def add(self, value: float) -> None:
        """Count one duration (ms, >= 0)."""
        # On the fan-out hot path: once per item, so no calls that can be
        # comparisons.
        self._count += 1
        if value > self.maximum:  # noqa: PLR1730  # max() is a call; this is not
            self.maximum = value
        exact = self._exact
        if exact is None:
            key = _ZERO if value <= 0 else _floor(_log(value) * _PER_LOG)
            buckets = self._buckets
            buckets[key] = buckets.get(key, 0) + 1
            return
        exact[value] = exact.get(value, 0) + 1
        if len(exact) > _EXACT_LIMIT:
            for seen, times in exact.items():
                key = _bucket(seen)
                self._buckets[key] = self._buckets.get(key, 0) + times
            self._exact = None

    def percentile(self, fraction: float) -> float:
        """Return the nearest-rank percentile (``fraction`` in (0, 1])."""
        if not self._count:
            raise ValueError("no durations counted")
        rank = math.ceil(fraction * self._count)
        if self._exact is not None:
            return _walk(self._exact, rank)
        key = _walk(self._buckets, rank)
        if key == _ZERO:
            return 0.0
        return min(math.exp((key + 0.5) * _LOG_GROWTH), self.maximum)


_ZERO = -(2**31)
"""The bucket of zero durations (a log has no value there)."""


def _bucket(value: float) -> int:
    return _ZERO if value <= 0 else math.floor(math.log(value) * _PER_LOG)


KeyT = TypeVar("KeyT", float, int)


def _walk(counts: dict[KeyT, int], rank: int) -> KeyT:
    """Return the key at *rank* (1-based) in key order, counting multiplicities."""
    seen = 0
    for key in sorted(counts):
        seen += counts[key]
        if seen >= rank:
            return key
    raise AssertionError("rank beyond the count")  # rank <= count by construction

"""Fan-out duration percentiles: exact for few distinct values, bounded memory."""

from __future__ import annotations

import math
import random
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors._sketch import DurationSketch


def nearest_rank(values: list[float], fraction: float) -> float:
    """The textbook nearest-rank percentile."""
    ranked = sorted(values)
    return ranked[math.ceil(fraction * len(ranked)) - 1]


@given(
    st.lists(
        st.sampled_from([0.0, 0.25, 1.0, 2.5, 1000.0, 1e6]), min_size=1, max_size=300
    ),
    st.sampled_from([0.01, 0.5, 0.95, 1.0]),
)
def test_exact_while_few_distinct_values(values: list[float], fraction: float) -> None:
    """With few distinct durations the percentile is exactly the nearest rank."""
    sketch = DurationSketch()
    for value in values:
        sketch.add(value)
    assert sketch.percentile(fraction) == nearest_rank(values, fraction)
    assert sketch.maximum == max(values)
    assert len(sketch) == len(values)


@given(
    st.integers(0, 2**32),
    st.integers(600, 3000),
    st.sampled_from([0.5, 0.95]),
)
def test_within_half_a_percent_past_the_exact_limit(
    seed: int, count: int, fraction: float
) -> None:
    """Past 512 distinct values a percentile is within 0.5 % of the exact one."""
    rng = random.Random(seed)
    values = [10 ** rng.uniform(-3, 7) for _ in range(count)]
    sketch = DurationSketch()
    for value in values:
        sketch.add(value)
    exact = nearest_rank(values, fraction)
    assert sketch.percentile(fraction) == pytest.approx(exact, rel=0.005)
    assert sketch.maximum == max(values)


def test_memory_does_not_grow_with_the_item_count() -> None:
    """A million distinct durations over six decades fit in a few kilobytes."""
    sketch = DurationSketch()
    rng = random.Random(1)
    for _ in range(1_000_000):
        sketch.add(10 ** rng.uniform(-2, 4))
    size = sys.getsizeof(sketch._buckets) + sum(
        sys.getsizeof(k) + sys.getsizeof(v) for k, v in sketch._buckets.items()
    )
    assert len(sketch._buckets) <= 1400
    assert size < 200_000


def test_empty_sketch_refuses_percentiles() -> None:
    """Asking for a percentile of nothing is an error, not a made-up number."""
    with pytest.raises(ValueError, match="no durations counted"):
        DurationSketch().percentile(0.5)

"""Assertions on a test run: its timeline, its events, prompt cancellation."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .._events import StageFinished, StageUnresponsive
from .._results import StageStatus
from ._recorder import format_seconds

if TYPE_CHECKING:
    from ._run import TestRun

Mode = Literal["exact", "subsequence"]


def assert_timeline(run: TestRun, expected: str, *, mode: Mode = "exact") -> None:
    """Assert the run's timeline is *expected*, one ``"<seconds> <text>"`` per line.

    Times are compared as numbers (``0.1`` matches ``0.10``), the rest as
    text; blank lines and surrounding whitespace are ignored. Lines of one
    instant are compared as a set: trio runs the tasks woken at the same
    instant in an unspecified order. ``"exact"`` wants every line;
    ``"subsequence"`` wants these lines, others may come between.

    Raises:
        AssertionError: With a diff of the two timelines.
    """
    want = [_normalise(line) for line in expected.strip().splitlines() if line.strip()]
    have = run.timeline
    wanted, had = _instants(want), _instants(have)
    if mode == "exact":
        ok = wanted == had
    else:
        ok = all(
            not (lines - had.get(time, Counter())) for time, lines in wanted.items()
        )
    if not ok:
        diff = "\n".join(
            difflib.unified_diff(want, have, "expected", "actual", lineterm="")
        )
        raise AssertionError(f"timeline differs ({mode}):\n{diff}")


def _instants(lines: list[str]) -> dict[str, Counter[str]]:
    """Group timeline lines by their time."""
    grouped: dict[str, Counter[str]] = {}
    for line in lines:
        time = line.partition(" ")[0]
        grouped.setdefault(time, Counter())[line] += 1
    return grouped


def _normalise(line: str) -> str:
    time, _, rest = line.strip().partition(" ")
    try:
        seconds = float(time)
    except ValueError:
        raise ValueError(
            f"a timeline line starts with its time in seconds, got {line!r}"
        ) from None
    return f"{format_seconds(seconds)} {' '.join(rest.split())}"


@dataclass(frozen=True, slots=True)
class EventPattern:
    """Matches events of one type whose given fields have the given values."""

    type: type
    fields: dict[str, Any]

    def matches(self, event: object) -> bool:
        """Return True if *event* is of the type and has every field value."""
        return isinstance(event, self.type) and all(
            getattr(event, name, _MISSING) == value
            for name, value in self.fields.items()
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"{self.type.__name__}({args})"


_MISSING = object()


def event(kind: type, /, **fields: Any) -> EventPattern:
    """Return a pattern matching events of *kind* with these field values.

    Any attribute may be named, ``status`` of StageFinished included:
    ``event(StageFinished, stage_id="b", status=StageStatus.CANCELLED)``.
    """
    return EventPattern(kind, fields)


def assert_events(
    run: TestRun,
    expected: Sequence[EventPattern | type],
    *,
    mode: Mode = "exact",
) -> None:
    """Assert the run's events match *expected* (patterns or bare event types).

    ``"exact"``: one pattern per event, in order. ``"subsequence"``: the
    patterns match events in this order, others may come between.

    Raises:
        AssertionError: Naming the first pattern that did not match.
    """
    patterns = [
        p if isinstance(p, EventPattern) else EventPattern(p, {}) for p in expected
    ]
    events = run.events
    if mode == "exact":
        if len(events) != len(patterns):
            raise AssertionError(
                f"expected {len(patterns)} events, got {len(events)}:\n"
                + "\n".join(run.timeline)
            )
        for index, (pattern, seen) in enumerate(zip(patterns, events, strict=True)):
            if not pattern.matches(seen):
                raise AssertionError(
                    f"event {index}: expected {pattern!r}, got {seen!r}"
                )
        return
    position = 0
    for pattern in patterns:
        while position < len(events) and not pattern.matches(events[position]):
            position += 1
        if position == len(events):
            raise AssertionError(
                f"no event matching {pattern!r} (in order); the timeline:\n"
                + "\n".join(run.timeline)
            )
        position += 1


def assert_cancelled_promptly(run: TestRun, stage: str, *, within: float = 0.0) -> None:
    """Assert *stage* was cancelled and stopped within *within* seconds of the cancel.

    The stage's status is cancelled, it was never named unresponsive, it
    broke no cancellation contract, and every scripted call of it running at
    the cancel saw ``trio.Cancelled`` and ended by then.

    Raises:
        AssertionError: Saying which condition failed.
    """
    at = run.cancelled_at
    if at is None:
        raise AssertionError(f"the run was not cancelled ({run.result.status.value})")
    result = run.result.stage_results[stage]
    if result.status is not StageStatus.CANCELLED:
        raise AssertionError(f"stage {stage!r} is {result.status.value}, not cancelled")
    violation = result.metadata.get("contract_violation")
    if violation:
        raise AssertionError(f"stage {stage!r} broke the contract: {violation}")
    for seen in run.events:
        if isinstance(seen, StageUnresponsive) and seen.stage_id == stage:
            raise AssertionError(
                f"stage {stage!r} was named unresponsive at {seen.at_ms / 1000:g} s"
            )
    for call in run.calls_of(stage):
        if call.ended is None or call.ended < at:
            continue  # ended before the cancel
        if not call.cancelled or call.ended > at + within:
            raise AssertionError(
                f"stage {stage!r} (attempt {call.attempt}) ended at "
                f"{call.ended:g} s, cancelled at {at:g} s "
                f"(allowed: {within:g} s; saw Cancelled: {call.cancelled})"
            )
    finished = [
        e for e in run.events if isinstance(e, StageFinished) and e.stage_id == stage
    ]
    assert finished, f"stage {stage!r} never finished"  # every stage does

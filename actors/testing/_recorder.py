"""The recorder: keeps a run's events and scripted calls; renders the timeline."""

from __future__ import annotations

from contextvars import Token
from typing import Any

import trio

from .._events import (
    ItemFinished,
    PipelineFinished,
    PipelineStarted,
    StageFinished,
    StageRetrying,
    StageStarted,
    StageUnresponsive,
)
from .._observers import Observer
from .._results import StageStatus
from ._script import CURRENT, Attempt, Call

Event = (
    PipelineStarted
    | StageStarted
    | StageRetrying
    | ItemFinished
    | StageFinished
    | StageUnresponsive
    | PipelineFinished
)
"""Any event record."""


class Recorder(Observer):
    """Keeps every event of the runs it observes, and the calls of scripted stages.

    An observer and an :class:`~actors.abc.AttemptHook`: pass it in a
    :class:`~actors.PipelineExecutor`'s ``observers``. Its hooks never
    checkpoint. Times of calls are virtual seconds since the run started.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.calls: list[Call] = []
        self._start: float | None = None

    def now(self) -> float:
        """Seconds since the (last) observed run started, from the trio clock."""
        start = self._start
        # Rounded to 1 ns, as the executor rounds its ms: 0.1 + 0.2 reads 0.3.
        return 0.0 if start is None else round(trio.current_time() - start, 9)

    def around_attempt(
        self,
        *,
        run_id: str,
        pipeline: str,
        stage_id: str,
        item_index: int | None,
        attempt: int,
    ) -> Any:
        """Tell scripted stages which stage, item and attempt they play."""
        return _Current(Attempt(self, stage_id, item_index, attempt))

    def pipeline_started(self, event: PipelineStarted) -> None:
        """Keep the event; the run's clock starts now."""
        self._start = trio.current_time()
        self.events.append(event)

    def stage_started(self, event: StageStarted) -> None:
        """Keep the event; tell a streaming stage which attempt it plays.

        A stream's generator runs outside the attempt hooks, in the task that
        emits this event, right after it: the attempt is made current there.
        """
        self.events.append(event)
        if event.item_index is None:
            CURRENT.set(Attempt(self, event.stage_id, None, event.attempt))

    def stage_retrying(self, event: StageRetrying) -> None:
        """Keep the event."""
        self.events.append(event)

    def item_finished(self, event: ItemFinished) -> None:
        """Keep the event."""
        self.events.append(event)

    def stage_finished(self, event: StageFinished) -> None:
        """Keep the event."""
        self.events.append(event)

    def stage_unresponsive(self, event: StageUnresponsive) -> None:
        """Keep the event."""
        self.events.append(event)

    def pipeline_finished(self, event: PipelineFinished) -> None:
        """Keep the event."""
        self.events.append(event)

    def timeline(self) -> list[str]:
        """Return one line per event (the run's start left out); see timeline_of."""
        return timeline_of(self.events)


class _Current:
    """Makes an attempt current in its task (a class: no generator frame)."""

    __slots__ = ("_attempt", "_token")

    def __init__(self, attempt: Attempt) -> None:
        self._attempt = attempt
        self._token: Token[Attempt | None] | None = None

    def __enter__(self) -> None:
        self._token = CURRENT.set(self._attempt)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            CURRENT.reset(self._token)


def format_seconds(seconds: float) -> str:
    """Two decimals when they are exact, else as many as needed (up to 1 ns)."""
    text = f"{seconds:.2f}"
    if abs(float(text) - seconds) < 5e-10:
        return text
    return f"{seconds:.9f}".rstrip("0")


def timeline_of(events: list[Event]) -> list[str]:
    """Render events as lines ``"<seconds> <who> <what>"``.

    ``who`` is a stage id, ``stage[i]`` for a fan-out item, or ``pipeline``.
    """
    lines = []
    for event in events:
        text = _line(event)
        if text is not None:
            lines.append(f"{format_seconds(event.at_ms / 1000)} {text}")
    return lines


def _who(stage_id: str, item: int | None) -> str:
    return stage_id if item is None else f"{stage_id}[{item}]"


def _line(event: Event) -> str | None:
    if isinstance(event, StageStarted):
        who = _who(event.stage_id, event.item_index)
        if event.items is not None:
            return f"{who} started items={event.items}"
        more = f" attempt={event.attempt}" if event.attempt > 1 else ""
        return f"{who} started{more}"
    if isinstance(event, StageRetrying):
        who = _who(event.stage_id, event.item_index)
        return f"{who} failed attempt={event.attempt} {event.error}"
    if isinstance(event, ItemFinished):
        who = _who(event.stage_id, event.item_index)
        if event.success:
            return f"{who} succeeded"
        return f"{who} failed attempt={event.attempts} {event.error}"
    if isinstance(event, StageFinished):
        result = event.result
        if result.status is StageStatus.FAILED:
            fan_out = result.profile is not None and result.profile.items is not None
            if result.attempts and not fan_out:
                return (
                    f"{event.stage_id} failed attempt={result.attempts} {result.error}"
                )
            return f"{event.stage_id} failed {result.error}"
        return f"{event.stage_id} {result.status.value}"
    if isinstance(event, StageUnresponsive):
        return f"{event.stage_id} unresponsive"
    if isinstance(event, PipelineFinished):
        return f"pipeline {event.result.status.value}"
    return None  # PipelineStarted: every timeline starts at 0

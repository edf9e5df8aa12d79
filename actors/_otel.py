"""OpenTelemetry spans from a run's events; imported only by actors.opentelemetry."""

from __future__ import annotations

import time
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

import trio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, Status, StatusCode

from ._events import (
    ItemFinished,
    LimitPaused,
    LimitWaited,
    PipelineFinished,
    PipelineStarted,
    StageFinished,
    StageRetrying,
    StageStarted,
    StageUnresponsive,
)
from ._exceptions import StageTimeoutError
from ._observers import Observer
from ._results import PipelineStatus, StageResult, StageStatus
from ._version import __version__

_VALUE_LIMIT = 1000
"""Characters of a value's repr kept when values are recorded."""


@dataclass(eq=False, slots=True)
class _Attempt:
    span: Span
    ended_ns: int | None = None
    exception: Exception | None = None


_EXITED: ContextVar[_Attempt | None] = ContextVar("actors_otel_exited", default=None)
"""The attempt whose user code this task ran last (its span may still be open)."""

_SpanEvent = tuple[str, dict[str, Any], int]
"""A span event waiting for its span: name, attributes, timestamp (ns)."""


@dataclass(eq=False, slots=True)
class _Run:
    """The open spans of one run, and its clock anchors."""

    span: Span
    wall_ns: int
    trio_start: float
    dependencies: dict[str, tuple[str, ...]]
    stages: dict[str, Span] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    items: dict[tuple[str, int], Span] = field(default_factory=dict)
    attempts: dict[tuple[str, int | None, int], _Attempt] = field(default_factory=dict)
    waiting: dict[tuple[str, int | None], list[_SpanEvent]] = field(
        default_factory=dict
    )
    """Limit waits of a ``rate_limit=`` stage, granted before its attempt span."""

    def ns(self, at_ms: float) -> int:
        """Wall-clock nanoseconds of a run time in ms (exact under a mock clock)."""
        return self.wall_ns + round(at_ms * 1_000_000)

    def now_ns(self) -> int:
        return self.wall_ns + round((trio.current_time() - self.trio_start) * 1e9)


class OpenTelemetryObserver(Observer):
    """Emits one span per run, stage, fan-out item and attempt.

    ``pipeline {name}`` is a child of the span current where ``execute`` is
    called; ``stage {id}`` spans are its children, linked to the stage spans
    of their inputs (link attribute ``actors.dependency``); ``item {id}``
    spans (one per fan-out item) and ``attempt {id}`` spans follow. The
    attempt span is current while the stage's code runs, so spans the code
    starts (HTTP clients, SDKs) nest under it, also from ``trio.to_thread``.

    Times come from the run's trio clock, anchored to the wall clock when the
    run starts: durations are exact under a mock clock. Every span is ended
    by the time ``execute`` returns or raises.

    Args:
        tracer_provider: Where spans go. ``None`` uses the global provider
            (read once, here); a provider given is the only one used.
        record_values: Record stage outputs (their ``repr``, cut at 1000
            characters) as ``actors.stage.output``. Off by default: outputs
            may hold personal data.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        record_values: bool = False,
    ) -> None:
        if tracer_provider is None:
            self._tracer = trace.get_tracer("actors", __version__)
        else:
            self._tracer = tracer_provider.get_tracer("actors", __version__)
        self._record_values = record_values
        self._runs: dict[str, _Run] = {}

    # -- the attempt hook -------------------------------------------------

    def around_attempt(
        self,
        *,
        run_id: str,
        pipeline: str,
        stage_id: str,
        item_index: int | None,
        attempt: int,
    ) -> _Current:
        """Start the attempt's span and make it current while the stage runs."""
        run = self._runs.get(run_id)
        if run is None:  # not a run this observer saw start
            return _Current(None, None)
        parent = (
            run.items.get((stage_id, item_index)) if item_index is not None else None
        ) or run.stages.get(stage_id)
        attributes: dict[str, Any] = {
            "actors.stage.id": stage_id,
            "actors.attempt": attempt,
        }
        if item_index is not None:
            attributes["actors.item.index"] = item_index
        span = self._tracer.start_span(
            f"attempt {stage_id}",
            context=trace.set_span_in_context(parent or run.span),
            attributes=attributes,
            start_time=run.now_ns(),
            record_exception=False,
            set_status_on_exception=False,
        )
        for name, event_attributes, at in run.waiting.pop((stage_id, item_index), ()):
            span.add_event(name, event_attributes, timestamp=at)
        record = _Attempt(span)
        run.attempts[(stage_id, item_index, attempt)] = record
        return _Current(run, record)

    # -- events -----------------------------------------------------------

    def pipeline_started(self, event: PipelineStarted) -> None:
        """Open the run's span, as a child of the caller's current span."""
        wall_ns = time.time_ns()
        span = self._tracer.start_span(
            f"pipeline {event.pipeline}",
            context=otel_context.get_current(),
            attributes={
                "actors.pipeline": event.pipeline,
                "actors.run_id": event.run_id,
            },
            start_time=wall_ns,
        )
        self._runs[event.run_id] = _Run(
            span=span,
            wall_ns=wall_ns,
            trio_start=trio.current_time(),
            dependencies=event.dependencies,
        )

    def stage_started(self, event: StageStarted) -> None:
        """Open the stage's span on its first start, an item's on its first attempt."""
        run = self._runs.get(event.run_id)
        if run is None:
            return
        if event.stage_id not in run.stages:
            self._open_stage(run, event.stage_id, run.ns(event.at_ms))
        if event.item_index is not None and event.attempt == 1:
            key = (event.stage_id, event.item_index)
            run.items[key] = self._tracer.start_span(
                f"item {event.stage_id}",
                context=trace.set_span_in_context(run.stages[event.stage_id]),
                attributes={
                    "actors.stage.id": event.stage_id,
                    "actors.item.index": event.item_index,
                },
                start_time=run.ns(event.at_ms),
            )

    def stage_retrying(self, event: StageRetrying) -> None:
        """End the failed attempt's span with a ``retry`` event carrying the delay."""
        run = self._runs.get(event.run_id)
        if run is None:
            return
        record = run.attempts.pop(
            (event.stage_id, event.item_index, event.attempt), None
        )
        if record is None:
            return
        at = run.ns(event.at_ms)
        record.span.add_event("retry", {"delay_ms": event.delay_ms}, timestamp=at)
        _fail(record, event.error, event.error_type, at)
        record.span.end(end_time=record.ended_ns or at)

    def item_finished(self, event: ItemFinished) -> None:
        """End the item's last attempt span and the item's span."""
        run = self._runs.get(event.run_id)
        if run is None:
            return
        at = run.ns(event.at_ms)
        key = (event.stage_id, event.item_index, event.attempts)
        record = run.attempts.pop(key, None)
        item = run.items.pop((event.stage_id, event.item_index), None)
        for span in (record.span if record else None, item):
            if span is None:
                continue
            if not event.success:
                span.set_status(Status(StatusCode.ERROR, event.error))
                span.set_attribute("error.type", _error_type(event.error_type))
        if record is not None:
            if not event.success and record.exception is not None:
                record.span.record_exception(record.exception, timestamp=at)
            record.span.end(end_time=record.ended_ns or at)
        if item is not None:
            item.end(end_time=at)

    def stage_finished(self, event: StageFinished) -> None:
        """End the stage's span (zero-length if it never started) and its children."""
        run = self._runs.get(event.run_id)
        if run is None:
            return
        at = run.ns(event.at_ms)
        stage = run.stages.get(event.stage_id) or self._open_stage(
            run, event.stage_id, at
        )
        result = event.result
        status = result.status
        # Attempts and items still open were cut short (cancelled), or are
        # the stage's last attempt: the result says how it ended.
        for key in [k for k in run.attempts if k[0] == event.stage_id]:
            record = run.attempts.pop(key)
            if key[1] is None and status is StageStatus.FAILED:
                _fail(record, result.error or "", _type_of(result), at)
                if record.exception is not None:
                    record.span.record_exception(record.exception, timestamp=at)
            elif status is not StageStatus.SUCCEEDED:
                record.span.set_attribute("actors.attempt.status", "cancelled")
            record.span.end(end_time=record.ended_ns or at)
        for item_key in [k for k in run.items if k[0] == event.stage_id]:
            item = run.items.pop(item_key)
            item.set_attribute("actors.item.status", "cancelled")
            item.end(end_time=at)
        stage.set_attribute("actors.stage.status", status.value)
        stage.set_attribute("actors.stage.attempts", result.attempts)
        if status is StageStatus.FAILED:
            stage.set_status(Status(StatusCode.ERROR, result.error))
            stage.set_attribute("error.type", _error_type(_type_of(result)))
            if result.exception is not None:
                stage.record_exception(result.exception, timestamp=at)
        if self._record_values and status is StageStatus.SUCCEEDED:
            stage.set_attribute(
                "actors.stage.output", repr(result.output)[:_VALUE_LIMIT]
            )
        stage.end(end_time=at)
        run.ended.add(event.stage_id)
        for waiting in [k for k in run.waiting if k[0] == event.stage_id]:
            del run.waiting[waiting]  # granted, then cancelled before the call

    def limit_waited(self, event: LimitWaited) -> None:
        """Add a ``limit_wait`` event to the attempt that was granted the limit.

        A grant inside the stage's code (``ctx.limit``) goes to the current
        attempt span; a ``rate_limit=`` grant comes just before its attempt
        starts, and goes to that attempt's span as it opens.
        """
        run = self._runs.get(event.run_id)
        if run is None:
            return
        attributes: dict[str, Any] = {
            "actors.limit": event.limit,
            "waited_ms": event.waited_ms,
            "requests": event.requests,
            "tokens": event.tokens,
        }
        at = run.ns(event.at_ms)
        record = _current_attempt(run)
        if record is not None:
            record.span.add_event("limit_wait", attributes, timestamp=at)
        else:
            key = (event.stage_id, event.item_index)
            run.waiting.setdefault(key, []).append(("limit_wait", attributes, at))

    def limit_paused(self, event: LimitPaused) -> None:
        """Add a ``limit_pause`` event to the attempt that reported the pushback.

        That is the current attempt (``permit.retry_after`` in the stage's
        code) or the attempt that just raised :class:`~actors.RateLimited`;
        failing both, the stage's span.
        """
        run = self._runs.get(event.run_id)
        if run is None:
            return
        attributes: dict[str, Any] = {
            "actors.limit": event.limit,
            "pause_ms": event.pause_ms,
            "until_ms": event.until_ms,
        }
        at = run.ns(event.at_ms)
        record = _current_attempt(run)
        exited = _EXITED.get()
        if record is None and exited is not None and exited in run.attempts.values():
            record = exited
        span = record.span if record is not None else run.stages.get(event.stage_id)
        if span is not None:
            span.add_event("limit_pause", attributes, timestamp=at)

    def stage_unresponsive(self, event: StageUnresponsive) -> None:
        """Add an ``unresponsive`` event to the stage's span."""
        run = self._runs.get(event.run_id)
        if run is None:
            return
        stage = run.stages.get(event.stage_id)
        if stage is not None and event.stage_id not in run.ended:
            stage.add_event(
                "unresponsive",
                {"cancelled_at_ms": event.cancelled_at_ms},
                timestamp=run.ns(event.at_ms),
            )

    def pipeline_finished(self, event: PipelineFinished) -> None:
        """End the run's span, and any span still open (none, normally)."""
        run = self._runs.pop(event.run_id, None)
        if run is None:
            return
        at = run.ns(event.at_ms)
        for record in run.attempts.values():
            record.span.end(end_time=record.ended_ns or at)
        for item in run.items.values():
            item.end(end_time=at)
        for stage_id, stage in run.stages.items():
            if stage_id not in run.ended:
                stage.end(end_time=at)
        result = event.result
        run.span.set_attribute("actors.pipeline.status", result.status.value)
        if result.status in {PipelineStatus.FAILED, PipelineStatus.TIMED_OUT}:
            run.span.set_status(Status(StatusCode.ERROR, result.status.value))
            if result.status is PipelineStatus.TIMED_OUT:
                run.span.set_attribute("error.type", "timeout")
        run.span.end(end_time=at)

    def _open_stage(self, run: _Run, stage_id: str, at: int) -> Span:
        links = [
            Link(run.stages[dep].get_span_context(), {"actors.dependency": dep})
            for dep in run.dependencies.get(stage_id, ())
            if dep in run.stages
        ]
        span = self._tracer.start_span(
            f"stage {stage_id}",
            context=trace.set_span_in_context(run.span),
            attributes={"actors.stage.id": stage_id},
            links=links,
            start_time=at,
        )
        run.stages[stage_id] = span
        return span


class _Current:
    """Makes an attempt's span current in its task, and notes how it ended."""

    __slots__ = ("_record", "_run", "_token")

    def __init__(self, run: _Run | None, record: _Attempt | None) -> None:
        self._run = run
        self._record = record
        self._token: Token[Any] | None = None

    def __enter__(self) -> None:
        if self._record is not None:
            self._token = otel_context.attach(
                trace.set_span_in_context(self._record.span)
            )

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
        record, run = self._record, self._run
        if record is not None and run is not None:
            record.ended_ns = run.now_ns()
            # A RateLimited it raised pauses the limit right after, here.
            _EXITED.set(record)
            if isinstance(exc, Exception):
                record.exception = exc


def _current_attempt(run: _Run) -> _Attempt | None:
    """The attempt of *run* whose span is current in this task, if any."""
    current = trace.get_current_span()
    for record in run.attempts.values():
        if record.span is current:
            return record
    return None


def _fail(record: _Attempt, error: str, error_type: str | None, at: int) -> None:
    record.span.set_status(Status(StatusCode.ERROR, error))
    record.span.set_attribute("error.type", _error_type(error_type))
    if record.exception is not None:
        record.span.record_exception(record.exception, timestamp=at)
        record.exception = None


def _type_of(result: StageResult[Any]) -> str | None:
    exc = result.exception
    return None if exc is None else type(exc).__name__


def _error_type(name: str | None) -> str:
    if name == StageTimeoutError.__name__:
        return "timeout"
    return name or "failure"


def add_trace_ids(
    logger: Any, method_name: str, event_dict: dict[str, Any]
) -> dict[str, Any]:
    """A structlog processor: add ``trace_id`` and ``span_id`` of the current span.

    Adds nothing when no span is current. Ids are lower-case hex, as
    OpenTelemetry exporters print them.
    """
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict["trace_id"] = format(span_context.trace_id, "032x")
        event_dict["span_id"] = format(span_context.span_id, "016x")
    return event_dict

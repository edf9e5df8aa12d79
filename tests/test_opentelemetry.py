"""OpenTelemetry spans of a run: tree, links, times, attempts, statuses, nesting."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio
import trio.testing
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineStatus,
    RateLimit,
    RateLimited,
    RetryConfig,
    StageDefinition,
)
from actors.opentelemetry import OpenTelemetryObserver, add_trace_ids
from actors.testing import faults, hangs, raises, returns, returns_input, run, script


class OpenSpans(SpanProcessor):
    """Counts spans started and not yet ended."""

    def __init__(self) -> None:
        self.open = 0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        """One more open span."""
        self.open += 1

    def on_end(self, span: ReadableSpan) -> None:
        """One fewer."""
        self.open -= 1


class Tracing:
    """A private provider with an in-memory exporter."""

    def __init__(self) -> None:
        self.provider = TracerProvider()
        self.exporter = InMemorySpanExporter()
        self.counter = OpenSpans()
        self.provider.add_span_processor(self.counter)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.observer = OpenTelemetryObserver(self.provider)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def rows(self) -> list[tuple[Any, ...]]:
        """Each span as (name, parent name, start ms, end ms, key attributes), sorted."""
        spans = self.spans()
        by_id = {s.context.span_id: s for s in spans}
        t0 = next(s for s in spans if s.name.startswith("pipeline ")).start_time
        assert t0 is not None
        rows = []
        for s in spans:
            assert s.start_time is not None
            assert s.end_time is not None
            parent = by_id.get(s.parent.span_id) if s.parent else None
            attrs = s.attributes or {}
            rows.append(
                (
                    s.name,
                    parent.name if parent else None,
                    (s.start_time - t0) / 1e6,
                    (s.end_time - t0) / 1e6,
                    attrs.get("actors.item.index"),
                    attrs.get("actors.attempt"),
                )
            )
        return sorted(rows, key=lambda r: (r[2], r[0], r[4] or 0, r[5] or 0))

    def one(self, name: str, **attributes: Any) -> ReadableSpan:
        found = [
            s
            for s in self.spans()
            if s.name == name
            and all((s.attributes or {}).get(k) == v for k, v in attributes.items())
        ]
        assert len(found) == 1, found
        return found[0]


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    """A private tracer provider; the global one must stay unset."""
    before = trace.get_tracer_provider()
    yield Tracing()
    assert trace.get_tracer_provider() is before
    assert isinstance(before, trace.ProxyTracerProvider)


def sleeper(seconds: float) -> Any:
    async def stage(value: Any, context: PipelineContext[Any]) -> Any:
        await trio.sleep(seconds)
        return value

    return stage


async def test_diamond_span_tree_links_and_exact_durations(
    autojump_clock: trio.testing.MockClock, tracing: Tracing
) -> None:
    """Stage spans are the run's children; the join links both inputs."""
    diamond = PipelineDefinition(
        name="diamond",
        stages=[
            StageDefinition("a", sleeper(1)),
            StageDefinition("b", sleeper(2), inputs=["a"]),
            StageDefinition("c", sleeper(3), inputs=["a"]),
            StageDefinition("d", sleeper(0.5), inputs=["b", "c"]),
        ],
    )
    executor = PipelineExecutor(log_events=False, observers=[tracing.observer])
    result = await executor.execute(diamond, 1)
    assert result.success
    assert tracing.rows() == [
        ("attempt a", "stage a", 0.0, 1000.0, None, 1),
        ("pipeline diamond", None, 0.0, 4500.0, None, None),
        ("stage a", "pipeline diamond", 0.0, 1000.0, None, None),
        ("attempt b", "stage b", 1000.0, 3000.0, None, 1),
        ("attempt c", "stage c", 1000.0, 4000.0, None, 1),
        ("stage b", "pipeline diamond", 1000.0, 3000.0, None, None),
        ("stage c", "pipeline diamond", 1000.0, 4000.0, None, None),
        ("attempt d", "stage d", 4000.0, 4500.0, None, 1),
        ("stage d", "pipeline diamond", 4000.0, 4500.0, None, None),
    ]
    join = tracing.one("stage d")
    spans = {s.context.span_id: s.name for s in tracing.spans()}
    assert sorted(
        (spans[link.context.span_id], dict(link.attributes or {}))
        for link in join.links
    ) == [
        ("stage b", {"actors.dependency": "b"}),
        ("stage c", {"actors.dependency": "c"}),
    ]
    assert [len(tracing.one(f"stage {s}").links) for s in "abc"] == [0, 1, 1]
    assert {s.status.status_code for s in tracing.spans()} == {StatusCode.UNSET}
    assert tracing.one("stage d").attributes == {
        "actors.stage.id": "d",
        "actors.stage.status": "succeeded",
        "actors.stage.attempts": 1,
    }
    assert tracing.counter.open == 0


def test_attempt_ordinals_retry_events_and_a_timeout(tracing: Tracing) -> None:
    """A failure, a timeout, a success: three attempt spans, two retry events."""
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "a",
                script(
                    raises(ValueError("boom"), after=0.5),
                    hangs(),
                    returns(1, after=0.25),
                ),
                timeout_ms=1000,
                retry_config=RetryConfig(max_attempts=3, initial_delay_ms=100),
            )
        ],
    )
    done = run(pipeline, observers=[tracing.observer])
    assert done.result.success
    assert tracing.rows() == [
        ("attempt a", "stage a", 0.0, 500.0, None, 1),
        ("pipeline p", None, 0.0, 2050.0, None, None),
        ("stage a", "pipeline p", 0.0, 2050.0, None, None),
        ("attempt a", "stage a", 600.0, 1600.0, None, 2),
        ("attempt a", "stage a", 1800.0, 2050.0, None, 3),
    ]
    first, second, third = (
        tracing.one("attempt a", **{"actors.attempt": k}) for k in (1, 2, 3)
    )
    t0 = tracing.one("pipeline p").start_time
    assert t0 is not None

    def events(span: ReadableSpan) -> list[tuple[str, float, dict[str, Any]]]:
        return [
            (e.name, (e.timestamp - t0) / 1e6, dict(e.attributes or {}))
            for e in span.events
            if e.name != "exception"
        ]

    assert events(first) == [("retry", 500.0, {"delay_ms": 100.0})]
    assert events(second) == [("retry", 1600.0, {"delay_ms": 200.0})]
    assert events(third) == []
    assert (first.status.status_code, first.status.description) == (
        StatusCode.ERROR,
        "ValueError: boom",
    )
    assert (first.attributes or {})["error.type"] == "ValueError"
    assert [
        (e.attributes or {})["exception.type"]
        for e in first.events
        if e.name == "exception"
    ] == ["ValueError"]
    assert second.status.status_code is StatusCode.ERROR
    assert (second.attributes or {})["error.type"] == "timeout"
    assert third.status.status_code is StatusCode.UNSET
    assert tracing.counter.open == 0


def test_statuses_failure_cancelled_skipped_and_items(tracing: Tracing) -> None:
    """A failure is an error; stages cancelled by it are not; a skip is zero-length."""
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("bad", script(raises(ValueError("boom"), after=1))),
            StageDefinition("waits", script(hangs())),
            StageDefinition("list", script(returns([1, 2], after=0.25))),
            StageDefinition(
                "each",
                script(returns_input(after=0.25)),
                inputs=["list"],
                pattern=ExecutionPattern.FAN_OUT,
            ),
            StageDefinition(
                "never",
                script(returns(0)),
                inputs=["list"],
                condition=lambda context: False,
            ),
            StageDefinition("after", script(returns(0)), inputs=["bad"]),
        ],
    )
    done = run(pipeline, observers=[tracing.observer])
    assert done.result.status is PipelineStatus.FAILED
    rows = tracing.rows()
    assert rows == [
        ("attempt bad", "stage bad", 0.0, 1000.0, None, 1),
        ("attempt list", "stage list", 0.0, 250.0, None, 1),
        ("attempt waits", "stage waits", 0.0, 1000.0, None, 1),
        ("pipeline p", None, 0.0, 1000.0, None, None),
        ("stage bad", "pipeline p", 0.0, 1000.0, None, None),
        ("stage list", "pipeline p", 0.0, 250.0, None, None),
        ("stage waits", "pipeline p", 0.0, 1000.0, None, None),
        ("attempt each", "item each", 250.0, 500.0, 0, 1),
        ("attempt each", "item each", 250.0, 500.0, 1, 1),
        ("item each", "stage each", 250.0, 500.0, 0, None),
        ("item each", "stage each", 250.0, 500.0, 1, None),
        ("stage each", "pipeline p", 250.0, 500.0, None, None),
        ("stage never", "pipeline p", 250.0, 250.0, None, None),
        ("stage after", "pipeline p", 1000.0, 1000.0, None, None),
    ]
    status = {
        s.name: (s.status.status_code, (s.attributes or {}).get("actors.stage.status"))
        for s in tracing.spans()
        if s.name.startswith("stage ")
    }
    assert status == {
        "stage bad": (StatusCode.ERROR, "failed"),
        "stage waits": (StatusCode.UNSET, "cancelled"),
        "stage list": (StatusCode.UNSET, "succeeded"),
        "stage each": (StatusCode.UNSET, "succeeded"),
        "stage never": (StatusCode.UNSET, "skipped"),
        "stage after": (StatusCode.UNSET, "cancelled"),
    }
    assert (tracing.one("attempt waits").attributes or {}).get(
        "actors.attempt.status"
    ) == "cancelled"
    assert tracing.one("pipeline p").status.status_code is StatusCode.ERROR
    assert tracing.counter.open == 0


def test_user_spans_nest_under_the_attempt_also_from_a_thread(tracing: Tracing) -> None:
    """The attempt span is current in the stage, its child tasks and its threads."""
    tracer = tracing.provider.get_tracer("user")
    ids: list[dict[str, Any]] = []

    def in_thread() -> None:
        with tracer.start_as_current_span("thread work"):
            pass

    async def stage(value: Any, context: PipelineContext[Any]) -> Any:
        ids.append(add_trace_ids(None, "info", {}))
        with tracer.start_as_current_span("user work"):
            await trio.to_thread.run_sync(in_thread)
        return value

    pipeline = PipelineDefinition(name="p", stages=[StageDefinition("a", stage)])
    assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
    # A real thread: the run goes on a real clock (an autojump clock would
    # leap while the thread runs).
    executor = PipelineExecutor(log_events=False, observers=[tracing.observer])
    result = trio.run(executor.execute, pipeline)
    assert result.success
    attempt = tracing.one("attempt a")
    user = tracing.one("user work")
    thread = tracing.one("thread work")
    assert user.parent is not None
    assert thread.parent is not None
    assert user.parent.span_id == attempt.context.span_id
    assert thread.parent.span_id == user.context.span_id
    assert ids == [
        {
            "trace_id": format(attempt.context.trace_id, "032x"),
            "span_id": format(attempt.context.span_id, "016x"),
        }
    ]


async def test_the_run_span_is_a_child_of_the_callers_span(
    autojump_clock: trio.testing.MockClock, tracing: Tracing
) -> None:
    """The caller's current span parents the run; nothing stays current after."""
    tracer = tracing.provider.get_tracer("app")
    pipeline = PipelineDefinition(name="p", stages=[StageDefinition("a", sleeper(1))])
    executor = PipelineExecutor(log_events=False, observers=[tracing.observer])
    with tracer.start_as_current_span("request") as request:
        await executor.execute(pipeline)
        assert trace.get_current_span() is request
    run_span = tracing.one("pipeline p")
    assert run_span.parent is not None
    assert run_span.parent.span_id == request.get_span_context().span_id


def test_no_span_is_left_open_on_keyboard_interrupt(tracing: Tracing) -> None:
    """An interrupt tears the run down; every span still ends, at the interrupt."""
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("a", script(returns([1, 2, 3], after=1))),
            StageDefinition(
                "b",
                script(returns_input(after=5)),
                inputs=["a"],
                pattern=ExecutionPattern.FAN_OUT,
            ),
            StageDefinition("c", script(returns(0)), inputs=["b"]),
        ],
    )
    done = run(
        pipeline, observers=[tracing.observer], faults=[faults.interrupt_at("b", 2)]
    )
    assert isinstance(done.raised, KeyboardInterrupt)
    assert tracing.counter.open == 0
    ends = {(r[0], r[4]): r[3] for r in tracing.rows()}
    assert ends == {
        ("pipeline p", None): 2000.0,
        ("stage a", None): 1000.0,
        ("attempt a", None): 1000.0,
        ("stage b", None): 2000.0,
        ("item b", 0): 2000.0,
        ("item b", 1): 2000.0,
        ("item b", 2): 2000.0,
        ("attempt b", 0): 2000.0,
        ("attempt b", 1): 2000.0,
        ("attempt b", 2): 2000.0,
        ("stage c", None): 2000.0,
    }
    assert (tracing.one("stage b").attributes or {})[
        "actors.stage.status"
    ] == "cancelled"


def events_of(span: ReadableSpan, t0: int) -> list[tuple[float, str, dict[str, Any]]]:
    """A span's events as (ms since t0, name, attributes); of exceptions, the type."""
    found = []
    for e in span.events:
        attributes = dict(e.attributes or {})
        if e.name == "exception":
            attributes = {"exception.type": attributes["exception.type"]}
        found.append(((e.timestamp - t0) / 1e6, e.name, attributes))
    return found


async def test_limit_waits_are_events_of_the_attempt_granted(
    autojump_clock: trio.testing.MockClock, tracing: Tracing
) -> None:
    """Three items queued on 2 requests a second: each attempt tells its wait."""
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "calls",
                sleeper(0.1),
                pattern=ExecutionPattern.FAN_OUT,
                rate_limit="api",
            )
        ],
    )
    executor = PipelineExecutor(
        log_events=False,
        observers=[tracing.observer],
        limits={"api": RateLimit(requests_per_second=2)},
    )
    result = await executor.execute(pipeline, [1, 2, 3])
    assert result.success
    t0 = tracing.one("pipeline p").start_time
    assert t0 is not None
    seen = []
    for item in range(3):
        attempt = tracing.one("attempt calls", **{"actors.item.index": item})
        assert attempt.start_time is not None
        start = (attempt.start_time - t0) / 1e6
        # The attempt starts when the limit is granted, and says how long
        # it queued (all three queued from 0).
        assert events_of(attempt, t0) == [
            (
                start,
                "limit_wait",
                {
                    "actors.limit": "api",
                    "waited_ms": start,
                    "requests": 1,
                    "tokens": 0,
                },
            )
        ]
        seen.append(start)
    assert sorted(seen) == [0.0, 500.0, 1000.0]


def test_a_pushback_pauses_on_the_attempt_that_raised(tracing: Tracing) -> None:
    """RateLimited(retry_after_s=2) is a limit_pause on its attempt; waits follow."""
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "s",
                script(
                    raises(RateLimited("429", retry_after_s=2)), returns(1, after=0.1)
                ),
                rate_limit="api",
                retry_config=RetryConfig(max_attempts=2, initial_delay_ms=100),
            ),
            StageDefinition("wait", script(returns(0, after=0.5))),
            StageDefinition(
                "t", script(returns_input(after=0.1)), inputs=["wait"], rate_limit="api"
            ),
        ],
    )
    done = run(
        pipeline,
        observers=[tracing.observer],
        limits={"api": RateLimit(requests_per_second=10)},
    )
    assert done.result.success
    assert tracing.counter.open == 0
    t0 = tracing.one("pipeline p").start_time
    assert t0 is not None

    def wait(at: float, waited: float) -> tuple[float, str, dict[str, Any]]:
        attributes = {"actors.limit": "api", "waited_ms": waited, "requests": 1}
        return (at, "limit_wait", {**attributes, "tokens": 0})

    first = tracing.one("attempt s", **{"actors.attempt": 1})
    assert events_of(first, t0) == [
        wait(0.0, 0.0),
        (
            0.0,
            "limit_pause",
            {"actors.limit": "api", "pause_ms": 2000.0, "until_ms": 2000.0},
        ),
        (0.0, "retry", {"delay_ms": 2000.0}),
        (0.0, "exception", {"exception.type": "actors.RateLimited"}),
    ]
    # t queued at 0.5 behind the pause: first at its end; s's retry next.
    assert events_of(tracing.one("attempt t"), t0) == [wait(2000.0, 1500.0)]
    second = tracing.one("attempt s", **{"actors.attempt": 2})
    assert events_of(second, t0) == [wait(2100.0, 100.0)]
    limited = {"attempt s", "attempt t"}
    assert [(r[0], r[2], r[3]) for r in tracing.rows() if r[0] in limited] == [
        ("attempt s", 0.0, 0.0),
        ("attempt t", 2000.0, 2100.0),
        ("attempt s", 2100.0, 2200.0),
    ]


async def test_a_streams_attempt_span_is_current_in_its_generator(
    autojump_clock: trio.testing.MockClock, tracing: Tracing
) -> None:
    """ctx.limit waits and user spans inside a generator belong to its attempt."""
    tracer = tracing.provider.get_tracer("user")

    async def pages(value: Any, context: PipelineContext[Any]) -> AsyncIterator[int]:
        for page in (1, 2):
            async with context.limit("api"):
                with tracer.start_as_current_span(f"fetch {page}"):
                    await trio.sleep(0.1)
            yield page

    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("pages", pages),
            StageDefinition(
                "work", sleeper(1), inputs=["pages"], pattern=ExecutionPattern.FAN_OUT
            ),
        ],
    )
    executor = PipelineExecutor(
        log_events=False,
        observers=[tracing.observer],
        limits={"api": RateLimit(requests_per_second=2)},
    )
    result = await executor.execute(pipeline)
    assert result.outputs == {"pages": [1, 2], "work": [1, 2]}
    t0 = tracing.one("pipeline p").start_time
    assert t0 is not None
    attempt = tracing.one("attempt pages")
    assert attempt.parent is not None
    assert attempt.parent.span_id == tracing.one("stage pages").context.span_id
    for page in (1, 2):
        fetch = tracing.one(f"fetch {page}")
        assert fetch.parent is not None
        assert fetch.parent.span_id == attempt.context.span_id
    assert events_of(attempt, t0) == [
        (
            0.0,
            "limit_wait",
            {"actors.limit": "api", "waited_ms": 0.0, "requests": 1, "tokens": 0},
        ),
        (
            500.0,
            "limit_wait",
            {"actors.limit": "api", "waited_ms": 400.0, "requests": 1, "tokens": 0},
        ),
    ]
    assert attempt.start_time is not None
    assert attempt.end_time is not None
    assert ((attempt.start_time - t0) / 1e6, (attempt.end_time - t0) / 1e6) == (
        0.0,
        600.0,
    )


def test_a_crashed_run_ends_no_span_after_the_crash(tracing: Tracing) -> None:
    """Killed at 1.5 s: what ended before is exported, the rest never ends."""
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("a", script(returns(1, after=1))),
            StageDefinition("b", script(returns_input(after=1)), inputs=["a"]),
        ],
    )
    done = run(pipeline, observers=[tracing.observer], faults=[faults.crash_at(1.5)])
    assert done.crashed
    assert {s.name for s in tracing.spans()} == {"attempt a", "stage a"}
    # The run's span, b's stage and its attempt stay open, as in a dead process.
    assert tracing.counter.open == 3

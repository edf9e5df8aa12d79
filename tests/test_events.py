"""The structured events of representative runs, exact under the autojump clock."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import structlog
import trio
import trio.testing
from stages import failing, fan_out, sleeper

import actors.logging
from actors import (
    ExecutionPattern,
    Observer,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    PipelineStarted,
    RetryConfig,
    StageDefinition,
)

Event = dict[str, Any]


async def logged(
    definition: PipelineDefinition,
    initial_input: Any = None,
    context: PipelineContext[Any] | None = None,
) -> tuple[PipelineResult, list[Event]]:
    """Run *definition*; return its result and its events without run_id/pipeline.

    Every event is checked to carry the run's ``run_id`` and ``pipeline``.
    """
    with structlog.testing.capture_logs() as captured:
        result = await PipelineExecutor().execute(definition, initial_input, context)
    events = []
    for entry in captured:
        event = dict(entry)
        assert event.pop("run_id") == result.run_id
        assert event.pop("pipeline") == definition.name
        events.append(event)
    times = [event["at_ms"] for event in events]
    assert times == sorted(times), "an event was logged with an earlier time"
    return result, canonical(events)


# Within one instant, what causes what: an attempt or item ends, which may
# end its stage, which may fail or cancel others, which may start others;
# the run ends last.
_PHASE = {
    "pipeline_started": 0,
    "stage_retrying": 1,
    "item_succeeded": 1,
    "item_failed": 1,
    "stage_succeeded": 2,
    "stage_failed": 2,
    "stage_skipped": 2,
    "stage_upstream_failed": 3,
    "stage_cancelled": 3,
    "stage_started": 4,
    "item_started": 4,
    "pipeline_finished": 5,
}


def canonical(events: list[Event]) -> list[Event]:
    """Order events by time, then cause before effect, then stage and item.

    Trio deliberately randomises the order of tasks woken in the same tick,
    so independent stages' events of one instant may come in either order;
    this puts them in one order (stable for everything else).
    """
    return sorted(
        events,
        key=lambda e: (
            e["at_ms"],
            _PHASE[e["event"]],
            e.get("stage_id") or "",
            -1 if e.get("item_index") is None else e["item_index"],
        ),
    )


def outline(events: list[Event]) -> list[tuple[str, str | None, str, float]]:
    """Reduce events to (name, stage_id, level, at_ms), the sequence to compare."""
    return [(e["event"], e.get("stage_id"), e["log_level"], e["at_ms"]) for e in events]


def ran(
    stage_id: str,
    attempt_ms: tuple[float, ...],
    ready: float,
    finished: float,
    *,
    backoff: float = 0.0,
) -> Event:
    """The stage_succeeded event of a sequential stage that started when ready."""
    return {
        "stage_id": stage_id,
        "status": "succeeded",
        "attempts": len(attempt_ms),
        "duration_ms": finished - ready,
        "at_ms": finished,
        "ready_at_ms": ready,
        "started_at_ms": ready,
        "finished_at_ms": finished,
        "queued_ms": 0.0,
        "attempt_ms": attempt_ms,
        "backoff_ms": backoff,
        "event": "stage_succeeded",
        "log_level": "info",
    }


def started(stage_id: str, at: float, attempt: int = 1) -> Event:
    """The stage_started event of a sequential stage."""
    return {
        "stage_id": stage_id,
        "attempt": attempt,
        "at_ms": at,
        "event": "stage_started",
        "log_level": "info",
    }


def counts(**nonzero: int) -> dict[str, int]:
    """The counts per status of a pipeline_finished event."""
    base = dict.fromkeys(
        ["succeeded", "failed", "skipped", "cancelled", "upstream_failed"], 0
    )
    return base | nonzero


async def test_success_logs_every_lifecycle_event_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A diamond logs pipeline_started, each start and success, pipeline_finished."""
    definition = PipelineDefinition(
        name="diamond",
        stages=[
            StageDefinition("a", sleeper(1)),
            StageDefinition("b", sleeper(2), inputs=["a"]),
            StageDefinition("c", sleeper(1), inputs=["a"]),
            StageDefinition("d", sleeper(1), inputs=["b", "c"]),
        ],
    )
    result, events = await logged(definition, 1)
    assert result.success
    assert events == [
        {
            "stages": ["a", "b", "c", "d"],
            "dependencies": {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]},
            "fail_fast": True,
            "timeout_ms": None,
            "at_ms": 0.0,
            "event": "pipeline_started",
            "log_level": "info",
        },
        started("a", 0.0),
        ran("a", (1000.0,), 0.0, 1000.0),
        started("b", 1000.0),
        started("c", 1000.0),
        ran("c", (1000.0,), 1000.0, 2000.0),
        ran("b", (2000.0,), 1000.0, 3000.0),
        started("d", 3000.0),
        ran("d", (1000.0,), 3000.0, 4000.0),
        {
            "status": "succeeded",
            "success": True,
            "duration_ms": 4000.0,
            "counts": counts(succeeded=4),
            "failed_stages": [],
            "critical_path": ["a", "b", "d"],
            "at_ms": 4000.0,
            "event": "pipeline_finished",
            "log_level": "info",
        },
    ]


async def test_retry_logs_each_attempt_and_the_delay_and_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage failing twice logs start, retrying (delay, error) per attempt."""
    calls = 0

    async def flaky(value: Any, context: PipelineContext[Any]) -> Any:
        nonlocal calls
        calls += 1
        await trio.sleep(0.5)
        if calls < 3:
            raise ConnectionError(f"try {calls}")
        return value

    retry = RetryConfig(max_attempts=3, initial_delay_ms=100, backoff_multiplier=3)
    definition = PipelineDefinition(
        name="retry", stages=[StageDefinition("fetch", flaky, retry_config=retry)]
    )
    result, events = await logged(definition)
    assert result.success
    assert events[1:-1] == [
        started("fetch", 0.0),
        {
            "stage_id": "fetch",
            "attempt": 1,
            "delay_ms": 100.0,
            "error": "ConnectionError: try 1",
            "error_type": "ConnectionError",
            "at_ms": 500.0,
            "event": "stage_retrying",
            "log_level": "warning",
        },
        started("fetch", 600.0, attempt=2),
        {
            "stage_id": "fetch",
            "attempt": 2,
            "delay_ms": 300.0,
            "error": "ConnectionError: try 2",
            "error_type": "ConnectionError",
            "at_ms": 1100.0,
            "event": "stage_retrying",
            "log_level": "warning",
        },
        started("fetch", 1400.0, attempt=3),
        ran("fetch", (500.0, 500.0, 500.0), 0.0, 1900.0, backoff=400.0),
    ]
    assert events[-1]["duration_ms"] == 1900.0


async def test_fail_fast_logs_the_failure_then_the_cancelled_stages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The failure is logged with its error; running and waiting stages as cancelled."""
    definition = PipelineDefinition(
        name="ff",
        stages=[
            StageDefinition("a", failing(1)),
            StageDefinition("b", sleeper(2)),
            StageDefinition("c", sleeper(1), inputs=["a"]),
        ],
    )
    result, events = await logged(definition)
    assert not result.success
    assert outline(events) == [
        ("pipeline_started", None, "info", 0.0),
        ("stage_started", "a", "info", 0.0),
        ("stage_started", "b", "info", 0.0),
        ("stage_failed", "a", "error", 1000.0),
        ("stage_cancelled", "b", "warning", 1000.0),
        ("stage_cancelled", "c", "warning", 1000.0),
        ("pipeline_finished", None, "error", 1000.0),
    ]
    failed, cancelled_b, cancelled_c, finished = events[3:]
    assert (failed["status"], failed["error"], failed["error_type"]) == (
        "failed",
        "ValueError: boom",
        "ValueError",
    )
    assert (failed["attempts"], failed["duration_ms"]) == (1, 1000.0)
    # b was cancelled mid-attempt: the attempt still counts, up to the cancel.
    assert cancelled_b["error"] == "cancelled: stage 'a' failed"
    assert cancelled_b["error_type"] is None
    assert (cancelled_b["attempts"], cancelled_b["attempt_ms"]) == (1, (1000.0,))
    assert cancelled_b["duration_ms"] == 1000.0
    # c never started: no ready or start time, no attempt.
    assert (cancelled_c["attempts"], cancelled_c["duration_ms"]) == (0, 0.0)
    assert "ready_at_ms" not in cancelled_c
    assert "started_at_ms" not in cancelled_c
    assert {k: finished[k] for k in ("status", "duration_ms", "counts")} == {
        "status": "failed",
        "duration_ms": 1000.0,
        "counts": counts(failed=1, cancelled=2),
    }
    assert finished["failed_stages"] == ["a"]
    assert finished["critical_path"] == ["a"]


async def test_skip_logs_the_reason_and_downstream_still_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A false condition logs stage_skipped with its reason, at the ready time."""
    definition = PipelineDefinition(
        name="skip",
        stages=[
            StageDefinition("a", sleeper(1)),
            StageDefinition(
                "maybe",
                sleeper(1),
                inputs=["a"],
                pattern=ExecutionPattern.CONDITIONAL,
                condition=lambda context: False,
            ),
            StageDefinition("after", sleeper(1), inputs=["maybe"]),
        ],
    )
    result, events = await logged(definition)
    assert result.success
    assert outline(events) == [
        ("pipeline_started", None, "info", 0.0),
        ("stage_started", "a", "info", 0.0),
        ("stage_succeeded", "a", "info", 1000.0),
        ("stage_skipped", "maybe", "info", 1000.0),
        ("stage_started", "after", "info", 1000.0),
        ("stage_succeeded", "after", "info", 2000.0),
        ("pipeline_finished", None, "info", 2000.0),
    ]
    assert events[3] == {
        "stage_id": "maybe",
        "status": "skipped",
        "attempts": 0,
        "duration_ms": 0.0,
        "at_ms": 1000.0,
        "reason": "condition returned False",
        "ready_at_ms": 1000.0,
        "finished_at_ms": 1000.0,
        "queued_ms": 0.0,
        "attempt_ms": (),
        "backoff_ms": 0.0,
        "event": "stage_skipped",
        "log_level": "info",
    }
    assert events[-1]["counts"] == counts(succeeded=2, skipped=1)


async def test_cancel_token_logs_cancelled_stages_and_a_cancelled_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Setting the cancel token mid-run logs the cut attempt and a warning finish."""
    token = trio.Event()
    definition = PipelineDefinition(
        name="cancel",
        stages=[
            StageDefinition("a", sleeper(1)),
            StageDefinition("b", sleeper(2), inputs=["a"]),
            StageDefinition("c", sleeper(1), inputs=["b"]),
        ],
    )

    async def cancel_later() -> None:
        await trio.sleep(1.5)
        token.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancel_later)
        result, events = await logged(
            definition, None, PipelineContext(cancel_token=token)
        )
    assert outline(events) == [
        ("pipeline_started", None, "info", 0.0),
        ("stage_started", "a", "info", 0.0),
        ("stage_succeeded", "a", "info", 1000.0),
        ("stage_started", "b", "info", 1000.0),
        ("stage_cancelled", "b", "warning", 1500.0),
        ("stage_cancelled", "c", "warning", 1500.0),
        ("pipeline_finished", None, "warning", 1500.0),
    ]
    assert events[4]["error"] == "cancelled: cancel token set"
    assert (events[4]["attempt_ms"], events[4]["duration_ms"]) == ((500.0,), 500.0)
    assert (events[-1]["status"], events[-1]["success"]) == ("cancelled", False)
    assert events[-1]["counts"] == counts(succeeded=1, cancelled=2)
    assert events[-1]["critical_path"] == result.critical_path() == ["a", "b"]


async def test_upstream_failure_is_logged_when_not_failing_fast(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Without fail_fast, dependents log stage_upstream_failed naming the input."""
    definition = PipelineDefinition(
        name="up",
        fail_fast=False,
        stages=[
            StageDefinition("a", failing(1)),
            StageDefinition("b", sleeper(1), inputs=["a"]),
            StageDefinition("x", sleeper(3)),
        ],
    )
    _, events = await logged(definition)
    assert outline(events) == [
        ("pipeline_started", None, "info", 0.0),
        ("stage_started", "a", "info", 0.0),
        ("stage_started", "x", "info", 0.0),
        ("stage_failed", "a", "error", 1000.0),
        ("stage_upstream_failed", "b", "warning", 1000.0),
        ("stage_succeeded", "x", "info", 3000.0),
        ("pipeline_finished", None, "error", 3000.0),
    ]
    assert events[4]["error"] == "upstream stage 'a' failed"
    assert events[4]["status"] == "upstream_failed"
    assert events[-1]["counts"] == counts(succeeded=1, failed=1, upstream_failed=1)
    assert events[-1]["critical_path"] == ["x"]


async def test_pipeline_timeout_logs_a_timed_out_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The pipeline's own timeout cancels the running stage and logs timed_out."""
    definition = PipelineDefinition(
        name="slow", timeout_ms=500, stages=[StageDefinition("a", sleeper(2))]
    )
    _, events = await logged(definition)
    assert outline(events) == [
        ("pipeline_started", None, "info", 0.0),
        ("stage_started", "a", "info", 0.0),
        ("stage_cancelled", "a", "warning", 500.0),
        ("pipeline_finished", None, "error", 500.0),
    ]
    assert events[0]["timeout_ms"] == 500.0
    assert events[2]["error"] == "cancelled: pipeline timed out after 500 ms"
    assert events[-1]["status"] == "timed_out"


async def test_fan_out_logs_items_at_debug_with_their_index(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A fan-out stage starts once at info; each item starts and ends at debug."""

    async def item(value: float, context: PipelineContext[Any]) -> float:
        await trio.sleep(value)
        if value == 3:
            raise ValueError("three")
        return value

    definition = PipelineDefinition(
        name="fan",
        stages=[
            StageDefinition(
                "each", item, pattern=ExecutionPattern.FAN_OUT, max_concurrency=2
            )
        ],
    )
    _, events = await logged(definition, [1, 2, 3])
    assert [
        (e["event"], e["log_level"], e.get("item_index"), e["at_ms"]) for e in events
    ] == [
        ("pipeline_started", "info", None, 0.0),
        ("stage_started", "info", None, 0.0),
        ("item_started", "debug", 0, 0.0),
        ("item_started", "debug", 1, 0.0),
        ("item_succeeded", "debug", 0, 1000.0),
        ("item_started", "debug", 2, 1000.0),
        ("item_succeeded", "debug", 1, 2000.0),
        ("item_failed", "debug", 2, 4000.0),
        ("stage_failed", "error", None, 4000.0),
        ("pipeline_finished", "error", None, 4000.0),
    ]
    assert events[1]["items"] == 3
    assert events[4] == {
        "stage_id": "each",
        "item_index": 0,
        "status": "succeeded",
        "attempts": 1,
        "duration_ms": 1000.0,
        "at_ms": 1000.0,
        "event": "item_succeeded",
        "log_level": "debug",
    }
    assert (events[7]["error"], events[7]["error_type"]) == (
        "ValueError: three",
        "ValueError",
    )
    assert events[8]["error"] == "item 2: ValueError: three"
    assert events[8]["items"] == 3


async def test_fan_out_item_retry_is_logged_with_its_index(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An item's retry is a warning that names the item."""
    failed_once: set[int] = set()

    async def item(value: int, context: PipelineContext[Any]) -> int:
        await trio.sleep(1)
        if value == 1 and value not in failed_once:
            failed_once.add(value)
            raise TimeoutError("slow")
        return value

    definition = fan_out(item, retry_delay_ms=250)
    _, events = await logged(definition, [0, 1])
    retrying = [e for e in events if e["event"] == "stage_retrying"]
    assert retrying == [
        {
            "stage_id": "each",
            "attempt": 1,
            "delay_ms": 250.0,
            "error": "TimeoutError: slow",
            "error_type": "TimeoutError",
            "at_ms": 1000.0,
            "item_index": 1,
            "event": "stage_retrying",
            "log_level": "warning",
        }
    ]


async def test_observer_failure_is_logged_with_the_run_identity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """observer_failed names the run, the observer, the hook and the error."""

    class Broken(Observer):
        def pipeline_started(self, event: PipelineStarted) -> None:
            raise RuntimeError("oops")

    definition = PipelineDefinition(name="p", stages=[StageDefinition("a", sleeper(1))])
    with structlog.testing.capture_logs() as captured:
        result = await PipelineExecutor(observers=[Broken()]).execute(definition)
    failure = [e for e in captured if e["event"] == "observer_failed"]
    assert len(failure) == 1
    assert {k: v for k, v in failure[0].items() if k != "exc_info"} == {
        "event": "observer_failed",
        "log_level": "error",
        "run_id": result.run_id,
        "pipeline": "p",
        "stage_id": None,
        "observer": "test_observer_failure_is_logged_with_the_run_identity."
        "<locals>.Broken",
        "hook": "pipeline_started",
        "error": "RuntimeError: oops",
        "error_type": "RuntimeError",
    }
    assert isinstance(failure[0]["exc_info"], RuntimeError)


async def test_run_ids_differ_between_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Every execute gets its own run_id, and every event of a run carries it."""
    definition = PipelineDefinition(name="p", stages=[StageDefinition("a", sleeper(1))])
    first, _ = await logged(definition)
    second, _ = await logged(definition)
    assert first.run_id != second.run_id
    assert len(first.run_id) == 32


async def test_log_events_false_logs_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An executor created with log_events=False stays silent."""
    definition = PipelineDefinition(name="p", stages=[StageDefinition("a", sleeper(1))])
    with structlog.testing.capture_logs() as captured:
        await PipelineExecutor(log_events=False).execute(definition)
    assert captured == []


# --- the configuration helpers ----------------------------------------------


@pytest.mark.usefixtures("restore_structlog")
async def test_configure_json_writes_one_json_object_per_line(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """configure_json renders each event as JSON with its level and a timestamp."""
    stream = io.StringIO()
    actors.logging.configure_json(stream)
    definition = PipelineDefinition(name="p", stages=[StageDefinition("a", sleeper(1))])
    result = await PipelineExecutor().execute(definition)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [
        "pipeline_started",
        "stage_started",
        "stage_succeeded",
        "pipeline_finished",
    ]
    assert all(line["run_id"] == result.run_id for line in lines)
    assert [line["level"] for line in lines] == ["info"] * 4
    assert all(line["timestamp"].endswith("Z") for line in lines)
    assert lines[2]["attempt_ms"] == [1000.0]


@pytest.mark.usefixtures("restore_structlog")
async def test_configure_json_filters_by_level_and_merges_context(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """At info, fan-out items are dropped; a stage's own events carry its identity."""
    stream = io.StringIO()
    actors.logging.configure_json(stream, level="info")
    app_logger = structlog.get_logger("app")

    async def item(value: int, context: PipelineContext[Any]) -> int:
        app_logger.info("working", value=value)
        await trio.sleep(1)
        return value

    definition = fan_out(item)
    result = await PipelineExecutor().execute(definition, [1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [
        "pipeline_started",
        "stage_started",
        "working",
        "stage_succeeded",
        "pipeline_finished",
    ]
    working = lines[2]
    assert (working["run_id"], working["pipeline"], working["stage_id"]) == (
        result.run_id,
        "fan",
        "each",
    )


@pytest.mark.usefixtures("restore_structlog")
def test_configure_json_appends_to_a_path(tmp_path: Any) -> None:
    """A path is opened for appending; reconfiguring closes it and keeps the lines."""
    path = tmp_path / "log.jsonl"
    path.write_text('{"event": "before"}\n', encoding="utf-8")
    actors.logging.configure_json(path)
    structlog.get_logger("app").warning("hello", n=1)
    actors.logging.configure_json(str(path), level="debug")
    structlog.get_logger("app").debug("again")
    actors.logging.configure_console(io.StringIO())
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert [(line["event"], line.get("level")) for line in lines] == [
        ("before", None),
        ("hello", "warning"),
        ("again", "debug"),
    ]


@pytest.mark.usefixtures("restore_structlog")
def test_configure_console_writes_readable_lines() -> None:
    """configure_console writes one uncoloured line per event to a non-terminal."""
    stream = io.StringIO()
    actors.logging.configure_console(stream, level="warning")
    log = structlog.get_logger("app")
    log.info("hidden")
    log.warning("stage_retrying", stage_id="fetch", delay_ms=100.0)
    (line,) = stream.getvalue().splitlines()
    assert "\x1b[" not in line
    assert "[warning  ] stage_retrying" in line
    assert "delay_ms=100.0 stage_id=fetch" in line

"""A fan-out that keeps what succeeded: ``item_failures="collect"``, timed exactly."""

from __future__ import annotations

import re
from typing import Any

import pytest
import structlog
import trio
import trio.testing
from stages import Log, execute, sleeper

from actors import (
    ExecutionPattern,
    Observer,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineStatus,
    PipelineValidationError,
    RetryConfig,
    StageDefinition,
    StageResult,
    StageStatus,
)
from actors._events import StageFinished
from actors.testing import arun, assert_timeline, per_item, raises, returns

FAILING = {3, 7}
"""The items of :func:`ten_items` that fail on every attempt."""


def ten_items(log: Log, failing: set[int] = FAILING, fail_after: float = 1) -> Any:
    """Item i sleeps 1 + i/8 s and returns 10 * i; *failing* items raise after *fail_after* s.

    Each attempt logs ``(time, "start i")`` and ``(time, "end i")`` or
    ``(time, "cancelled i")``.
    """

    async def item(value: int, context: PipelineContext[Any]) -> int:
        log.append((trio.current_time(), f"start {value}"))
        try:
            await trio.sleep(fail_after if value in failing else 1 + value / 8)
        except trio.Cancelled:
            log.append((trio.current_time(), f"cancelled {value}"))
            raise
        log.append((trio.current_time(), f"end {value}"))
        if value in failing:
            raise ValueError(f"bad {value}")
        return 10 * value

    return item


def collecting(stage: Any, **options: Any) -> StageDefinition:
    """A ``"collect"`` fan-out ``each``, retrying each item once after 0.5 s."""
    return StageDefinition(
        "each",
        stage,
        pattern=ExecutionPattern.FAN_OUT,
        retry_config=RetryConfig(max_attempts=2, initial_delay_ms=500),
        item_failures="collect",
        **options,
    )


def pipeline(*stages: StageDefinition, **options: Any) -> PipelineDefinition:
    """Build a PipelineDefinition named 'collect'."""
    return PipelineDefinition(name="collect", stages=stages, **options)


def ends(log: Log) -> dict[str, float]:
    """Map each item to the time its last attempt ended."""
    return {name.split()[1]: t for t, name in log if name.startswith("end")}


OWN_ENDS = {str(i): 1 + i / 8 for i in range(10) if i not in FAILING} | {
    "3": 2.5,
    "7": 2.5,
}
"""When each item of :func:`ten_items` ends on its own (failing ones: retried)."""


async def test_collect_keeps_the_items_that_succeeded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two items fail after their retries: None at their positions, nothing cancelled."""
    log: Log = []
    result = await execute(pipeline(collecting(ten_items(log))), list(range(10)))
    assert result.status is PipelineStatus.SUCCEEDED
    assert result.outputs == {
        "each": [0, 10, 20, None, 40, 50, 60, None, 80, 90],
    }
    stage = result.stage_results["each"]
    assert stage.status is StageStatus.SUCCEEDED
    assert stage.item_errors == {3: "ValueError: bad 3", 7: "ValueError: bad 7"}
    assert stage.partial is True
    assert stage.attempts == 12
    assert stage.error is None
    # Every item ran to its own end: the failures cancelled nothing.
    assert not [name for _, name in log if name.startswith("cancelled")]
    assert ends(log) == OWN_ENDS
    assert stage.profile is not None
    assert stage.profile.finished_at_ms == 2500.0
    assert result.total_duration_ms == 2500.0


async def test_min_successes_above_what_succeeded_fails_the_stage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """min_successes=9 with 8 successes: a failure naming the count and the errors."""
    log: Log = []
    result = await execute(
        pipeline(collecting(ten_items(log), min_successes=9)), list(range(10))
    )
    assert result.status is PipelineStatus.FAILED
    stage = result.stage_results["each"]
    assert stage.status is StageStatus.FAILED
    assert stage.error == (
        "2 of 10 items failed, 8 succeeded (min_successes=9): "
        "item 3: ValueError: bad 3; item 7: ValueError: bad 7"
    )
    assert isinstance(stage.exception, ValueError)
    assert str(stage.exception) == "bad 3"
    assert stage.item_errors == {3: "ValueError: bad 3", 7: "ValueError: bad 7"}
    assert stage.partial is True
    assert stage.output is None
    assert stage.metadata == {"partial": [0, 10, 20, None, 40, 50, 60, None, 80, 90]}
    assert not [name for _, name in log if name.startswith("cancelled")]
    assert ends(log) == OWN_ENDS
    assert result.total_duration_ms == 2500.0


async def test_min_successes_zero_succeeds_with_every_item_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """min_successes=0: every item failing still succeeds, with all None."""
    log: Log = []
    result = await execute(
        pipeline(collecting(ten_items(log, set(range(4))), min_successes=0)),
        list(range(4)),
    )
    assert result.status is PipelineStatus.SUCCEEDED
    assert result.outputs == {"each": [None, None, None, None]}
    stage = result.stage_results["each"]
    assert stage.item_errors == {i: f"ValueError: bad {i}" for i in range(4)}
    assert stage.partial is True
    assert result.total_duration_ms == 2500.0


async def test_default_needs_one_success(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With no min_successes, every item failing fails; the error lists three, then counts."""
    log: Log = []
    result = await execute(
        pipeline(collecting(ten_items(log, set(range(5))))), list(range(5))
    )
    stage = result.stage_results["each"]
    assert stage.status is StageStatus.FAILED
    assert stage.error == (
        "5 of 5 items failed, 0 succeeded (min_successes=1): "
        "item 0: ValueError: bad 0; item 1: ValueError: bad 1; "
        "item 2: ValueError: bad 2; and 2 more"
    )
    assert sorted(stage.item_errors) == [0, 1, 2, 3, 4]
    assert stage.metadata == {"partial": [None] * 5}


async def test_default_accepts_an_empty_input(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With no min_successes, an empty input succeeds with [] and nothing partial."""
    log: Log = []
    result = await execute(pipeline(collecting(ten_items(log))), [])
    stage = result.stage_results["each"]
    assert stage.status is StageStatus.SUCCEEDED
    assert result.outputs == {"each": []}
    assert stage.item_errors == {}
    assert stage.partial is False
    assert log == []


async def test_min_successes_above_the_item_count_fails_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """min_successes larger than the input fails at once, saying so; no item runs."""
    log: Log = []
    result = await execute(
        pipeline(collecting(ten_items(log), min_successes=5)), [0, 1, 2]
    )
    stage = result.stage_results["each"]
    assert stage.status is StageStatus.FAILED
    assert stage.error == "min_successes=5 but only 3 items arrived"
    assert stage.attempts == 0
    assert stage.item_errors == {}
    assert stage.partial is False
    assert log == []
    assert result.total_duration_ms == 0.0


async def test_a_failed_item_frees_its_slot_for_the_next_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Under max_concurrency, a collected failure goes on to the next item."""
    items = per_item(
        {
            0: raises(ValueError("bad 0"), after=1),
            **{i: returns(10 * i, after=1 + i / 8) for i in (1, 2, 3)},
        }
    )
    definition = pipeline(
        StageDefinition(
            "each",
            items,
            pattern=ExecutionPattern.FAN_OUT,
            item_failures="collect",
            max_concurrency=2,
        )
    )
    done = await arun(definition, [0, 1, 2, 3])
    # 0 fails at 1 and its worker takes 2; 1 ends at 1.125 and takes 3.
    assert [(c.item, c.started, c.ended) for c in done.calls] == [
        (0, 0, 1),
        (1, 0, 1.125),
        (2, 1, 2.25),
        (3, 1.125, 2.5),
    ]
    assert_timeline(
        done,
        """
        0     each started items=4
        0     each[0] started
        0     each[1] started
        1     each[0] failed attempt=1 ValueError: bad 0
        1     each[2] started
        1.125 each[1] succeeded
        1.125 each[3] started
        2.25  each[2] succeeded
        2.5   each[3] succeeded
        2.5   each succeeded
        2.5   pipeline succeeded
        """,
    )
    assert done.result.outputs == {"each": [None, 10, 20, 30]}
    assert done.result.total_duration_ms == 2500.0


async def test_a_collected_failure_cancels_nothing_under_fail_fast(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Fail-fast: a collected item failure is no stage failure, so a sibling runs on."""
    log: Log = []
    result = await execute(
        pipeline(
            collecting(ten_items(log)),
            StageDefinition("slow", sleeper(5)),
            fail_fast=True,
        ),
        list(range(10)),
    )
    assert result.status is PipelineStatus.SUCCEEDED
    assert result.stage_results["slow"].status is StageStatus.SUCCEEDED
    assert result.total_duration_ms == 5000.0


async def test_downstream_reads_the_failed_positions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ctx.upstream_result gives a downstream stage the upstream's item_errors."""
    log: Log = []
    seen: list[Any] = []

    async def report(outputs: list[int | None], ctx: PipelineContext[Any]) -> str:
        upstream = ctx.upstream_result("each")
        assert upstream is not None
        seen.append((upstream.item_errors, ctx.upstream_result("nope")))
        kept = [x for x in outputs if x is not None]
        return f"{len(kept)} kept, failed at {sorted(upstream.item_errors)}"

    result = await execute(
        pipeline(
            collecting(ten_items(log)),
            StageDefinition("report", report, inputs=["each"]),
        ),
        list(range(10)),
    )
    assert result.outputs["report"] == "8 kept, failed at [3, 7]"
    assert seen == [({3: "ValueError: bad 3", 7: "ValueError: bad 7"}, None)]


async def test_upstream_result_is_none_before_the_stage_finished_and_outside(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage still running has no result yet; outside a run there is none."""
    context: PipelineContext[None] = PipelineContext()
    seen: list[Any] = []

    async def peek(value: Any, ctx: PipelineContext[Any]) -> None:
        seen.append((ctx.upstream_result("slow"), ctx.upstream_result("peek")))

    result = await execute(
        pipeline(StageDefinition("slow", sleeper(1)), StageDefinition("peek", peek)),
        None,
        context,
    )
    assert result.success
    assert seen == [(None, None)]
    assert context.upstream_result("slow") is None


async def test_two_runs_sharing_one_context_see_their_own_results(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Concurrent runs of one context each read their own upstream results."""
    context: PipelineContext[None] = PipelineContext()
    seen: dict[str, Any] = {}

    async def first(value: str, ctx: PipelineContext[Any]) -> str:
        await trio.sleep(1 if value == "a" else 2)
        return value

    async def second(value: str, ctx: PipelineContext[Any]) -> None:
        upstream = ctx.upstream_result("first")
        assert upstream is not None
        seen[value] = upstream.output

    definition = pipeline(
        StageDefinition("first", first),
        StageDefinition("second", second, inputs=["first"]),
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(execute, definition, "a", context)
        nursery.start_soon(execute, definition, "b", context)
    assert seen == {"a": "a", "b": "b"}


class Finishes(Observer):
    """Keeps every stage_finished event."""

    def __init__(self) -> None:
        self.events: list[StageFinished] = []

    def stage_finished(self, event: StageFinished) -> None:
        """Keep the event."""
        self.events.append(event)


async def test_finish_event_and_log_line_count_the_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The finish event and the log line say 'succeeded (8 of 10 items; 2 failed)'."""
    log: Log = []
    observer = Finishes()
    with structlog.testing.capture_logs() as logs:
        await PipelineExecutor(observers=[observer]).execute(
            pipeline(collecting(ten_items(log))), list(range(10))
        )
    assert [e.summary for e in observer.events] == [
        "succeeded (8 of 10 items; 2 failed)"
    ]
    [line] = [e for e in logs if e["event"] == "stage_succeeded"]
    assert {
        k: line[k]
        for k in ("items", "items_succeeded", "items_failed", "failed_items", "summary")
    } == {
        "items": 10,
        "items_succeeded": 8,
        "items_failed": 2,
        "failed_items": [3, 7],
        "summary": "succeeded (8 of 10 items; 2 failed)",
    }


async def test_a_failed_collect_stage_says_so_in_its_summary(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A collect fan-out that missed min_successes: 'failed (8 of 10 items; 2 failed)'."""
    log: Log = []
    observer = Finishes()
    with structlog.testing.capture_logs() as logs:
        await PipelineExecutor(observers=[observer]).execute(
            pipeline(collecting(ten_items(log), min_successes=10)), list(range(10))
        )
    assert [e.summary for e in observer.events] == ["failed (8 of 10 items; 2 failed)"]
    [line] = [e for e in logs if e["event"] == "stage_failed"]
    assert line["summary"] == "failed (8 of 10 items; 2 failed)"
    assert line["error_type"] == "ValueError"


async def test_fail_is_unchanged_and_its_log_line_has_no_counts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The default policy still cancels siblings; the result has no item_errors."""
    log: Log = []
    observer = Finishes()
    with structlog.testing.capture_logs() as logs:
        result = await PipelineExecutor(observers=[observer]).execute(
            pipeline(
                StageDefinition(
                    "each",
                    ten_items(log, {3}, fail_after=0.5),
                    pattern=ExecutionPattern.FAN_OUT,
                )
            ),
            list(range(10)),
        )
    stage = result.stage_results["each"]
    assert stage.error == "item 3: ValueError: bad 3"
    assert stage.item_errors == {}
    assert stage.partial is False
    assert sorted((t, name) for t, name in log if name.startswith("cancelled")) == [
        (0.5, f"cancelled {i}") for i in range(10) if i != 3
    ]
    assert [e.summary for e in observer.events] == ["failed"]
    [line] = [e for e in logs if e["event"] == "stage_failed"]
    assert "summary" not in line


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"item_failures": "collect"},
            r"stage 'x': item_failures applies only to FAN_OUT stages",
        ),
        (
            {"pattern": ExecutionPattern.FAN_OUT, "min_successes": 2},
            r"stage 'x': min_successes needs item_failures='collect' "
            r"\(with 'fail', every item must succeed\)",
        ),
        (
            {
                "pattern": ExecutionPattern.FAN_OUT,
                "item_failures": "collect",
                "min_successes": -1,
            },
            r"stage 'x': min_successes must be >= 0, got -1",
        ),
    ],
)
def test_bad_item_failure_settings_are_refused(
    options: dict[str, Any], message: str
) -> None:
    """item_failures only on FAN_OUT; min_successes only with collect, never negative."""
    definition = pipeline(StageDefinition("x", sleeper(1), **options))
    errors = definition.validate_pipeline()
    assert len(errors) == 1
    assert re.fullmatch(message, errors[0]), errors
    with pytest.raises(PipelineValidationError, match=message):
        trio.run(execute, definition)


def test_item_failures_takes_only_the_two_policies() -> None:
    """Anything but 'fail' or 'collect' is refused when the stage is declared."""
    with pytest.raises(ValueError, match="item_failures"):
        StageDefinition(
            "x",
            sleeper(1),
            pattern=ExecutionPattern.FAN_OUT,
            item_failures="keep",  # type: ignore[arg-type]  # the mistake under test
        )


def test_stage_result_defaults_have_no_item_errors() -> None:
    """A StageResult built by hand has no item errors and is not partial."""
    result = StageResult[int](success=True, output=1)
    assert (result.item_errors, result.partial) == ({}, False)


async def test_the_cli_summary_counts_collected_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The summary's status reads ``succeeded (8 of 10 items; 2 failed)``."""
    from actors._cli._progress import summary_rows

    async def item(value: int, ctx: Any) -> int:
        await trio.sleep(1)
        if value in (3, 7):
            raise ValueError(f"bad {value}")
        return value

    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "each",
                item,
                pattern=ExecutionPattern.FAN_OUT,
                item_failures="collect",
            )
        ],
    )
    result = await PipelineExecutor().execute(pipeline, list(range(10)))
    (row,) = summary_rows(result)
    assert row[:2] == ("each", "succeeded (8 of 10 items; 2 failed)")

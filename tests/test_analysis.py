"""Log analysis: loading JSON lines into runs, rendering, and the round trip."""

from __future__ import annotations

import inspect
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
import trio.testing
from stages import StageFn, failing, sleeper

import actors.analysis
import actors.logging
from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    PipelineStatus,
    RetryConfig,
    StageDefinition,
    StageStatus,
)
from actors.analysis import (
    LogReport,
    RetryRecord,
    RunRecord,
    parse_log,
    read_log,
    render_critical_path,
    render_summary,
    render_timeline,
)


def flaky(failures: int, seconds: float = 0.5) -> StageFn:
    """Return a stage that fails *failures* times with ConnectionError, then works."""
    calls = 0

    async def stage(value: Any, context: PipelineContext[Any]) -> Any:
        nonlocal calls
        calls += 1
        await trio.sleep(seconds)
        if calls <= failures:
            raise ConnectionError(f"try {calls}")
        return [0.5, 1.5, 1, 0.25]

    return stage


async def sleep_item(value: float, context: PipelineContext[Any]) -> float:
    """A fan-out item that sleeps *value* seconds."""
    await trio.sleep(value)
    return value


def etl() -> PipelineDefinition:
    """Retries, a fan-out with a slot limit, a skip and a join."""
    return PipelineDefinition(
        name="etl",
        stages=[
            StageDefinition(
                "fetch",
                flaky(2),
                retry_config=RetryConfig(max_attempts=3, initial_delay_ms=100),
            ),
            StageDefinition(
                "each",
                sleep_item,
                inputs=["fetch"],
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=2,
            ),
            StageDefinition("side", sleeper(0.5)),
            StageDefinition(
                "maybe",
                sleeper(1),
                inputs=["side"],
                pattern=ExecutionPattern.CONDITIONAL,
                condition=lambda context: False,
            ),
            StageDefinition("store", sleeper(0.25), inputs=["each", "maybe"]),
        ],
    )


def fail_fast() -> PipelineDefinition:
    """One failure cancels a running stage and one that never started."""
    return PipelineDefinition(
        name="ff",
        stages=[
            StageDefinition("a", failing(0.3, "bad row")),
            StageDefinition("b", sleeper(2)),
            StageDefinition("c", sleeper(1), inputs=["a"]),
        ],
    )


def keep_going() -> PipelineDefinition:
    """fail_fast=False: a non-critical failure, an upstream failure, a survivor."""
    return PipelineDefinition(
        name="keep-going",
        fail_fast=False,
        stages=[
            StageDefinition("a", failing(1)),
            StageDefinition("b", sleeper(1), inputs=["a"]),
            StageDefinition("optional", failing(0.5, "meh"), critical=False),
            StageDefinition("x", sleeper(3), inputs=["optional"]),
        ],
    )


def timed_out() -> PipelineDefinition:
    """The pipeline's own timeout cuts a stage in backoff."""
    return PipelineDefinition(
        name="slow",
        timeout_ms=1200,
        stages=[
            StageDefinition(
                "s",
                failing(0.5),
                retry_config=RetryConfig(max_attempts=5, initial_delay_ms=400),
            )
        ],
    )


async def run_all(executor: PipelineExecutor) -> list[PipelineResult]:
    """Run every example pipeline, two of them concurrently, and one cancelled."""
    results = [await executor.execute(etl())]
    results.append(await executor.execute(fail_fast()))
    concurrent: list[PipelineResult] = []

    async def collect(definition: PipelineDefinition) -> None:
        concurrent.append(await executor.execute(definition))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, keep_going())
        nursery.start_soon(collect, timed_out())
    results += sorted(concurrent, key=lambda r: r.pipeline)
    token = trio.Event()

    async def cancel_later() -> None:
        await trio.sleep(0.75)
        token.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancel_later)
        results.append(
            await executor.execute(etl(), None, PipelineContext(cancel_token=token))
        )
    return results


def assert_agrees(run: RunRecord, result: PipelineResult) -> None:
    """Every figure the log gives for *run* equals the run's PipelineResult."""
    assert run.complete
    assert (run.run_id, run.pipeline) == (result.run_id, result.pipeline)
    assert (run.status, run.success) == (result.status, result.success)
    assert run.duration_ms == result.total_duration_ms
    assert run.failed_stages == result.failed_stages
    assert run.critical_path == result.critical_path()
    assert list(run.stages) == list(result.stage_results)
    for stage_id, expected in result.stage_results.items():
        stage = run.stages[stage_id]
        profile = expected.profile
        assert profile is not None
        assert stage.inputs == result.dependencies[stage_id]
        assert (stage.status, stage.attempts, stage.duration_ms) == (
            expected.status,
            expected.attempts,
            expected.duration_ms,
        ), stage_id
        assert stage.error == expected.error, stage_id
        assert (
            stage.ready_at_ms,
            stage.started_at_ms,
            stage.finished_at_ms,
            stage.queued_ms,
            stage.attempt_ms,
            stage.running_ms,
            stage.backoff_ms,
        ) == (
            profile.ready_at_ms,
            profile.started_at_ms,
            profile.finished_at_ms,
            profile.queued_ms,
            profile.attempt_ms,
            profile.running_ms,
            profile.backoff_ms,
        ), stage_id
        assert (
            stage.items,
            stage.item_p50_ms,
            stage.item_p95_ms,
            stage.item_max_ms,
        ) == (
            profile.items,
            profile.item_p50_ms,
            profile.item_p95_ms,
            profile.item_max_ms,
        ), stage_id


@pytest.mark.usefixtures("restore_structlog")
@pytest.mark.parametrize("level", ["debug", "info"])
async def test_round_trip_log_agrees_with_the_results(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, level: str
) -> None:
    """Analysing the JSON log of several runs gives back their results exactly."""
    path = tmp_path / "runs.jsonl"
    actors.logging.configure_json(path, level=level)
    app = structlog.get_logger("app")
    app.info("app_started", version="1.0")
    results = await run_all(PipelineExecutor())
    app.info("app_stopped")
    with path.open("a", encoding="utf-8") as log:
        log.write("Traceback (most recent call last): not json\n")
    report = read_log(path)
    assert report.source == str(path)
    assert (report.other, report.malformed) == (2, 1)
    assert report.malformed_lines == (report.lines,)
    assert report.incomplete == []
    ids = [run.run_id for run in report.runs]
    assert ids[:2] == [results[0].run_id, results[1].run_id]
    # The two concurrent runs start in the same tick, in either order.
    assert sorted(ids[2:4]) == sorted(r.run_id for r in results[2:4])
    assert ids[4:] == [results[4].run_id]
    by_id = {run.run_id: run for run in report.runs}
    assert len(by_id) == len(results) == 5
    for result in results:
        assert_agrees(by_id[result.run_id], result)
    statuses = [by_id[r.run_id].status for r in results]
    assert statuses == [
        PipelineStatus.SUCCEEDED,
        PipelineStatus.FAILED,
        PipelineStatus.FAILED,
        PipelineStatus.TIMED_OUT,
        PipelineStatus.CANCELLED,
    ]


@pytest.mark.usefixtures("restore_structlog")
async def test_round_trip_figures_of_the_etl_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The analysed etl run has the exact times its schedule implies."""
    stream = io.StringIO()
    actors.logging.configure_json(stream, level="debug")
    await PipelineExecutor().execute(etl())
    (run,) = parse_log(stream.getvalue().splitlines()).runs
    fetch, each, store = run.stages["fetch"], run.stages["each"], run.stages["store"]
    assert fetch.retries == (
        RetryRecord(
            attempt=1,
            delay_ms=100.0,
            error="ConnectionError: try 1",
            error_type="ConnectionError",
            at_ms=500.0,
        ),
        RetryRecord(
            attempt=2,
            delay_ms=200.0,
            error="ConnectionError: try 2",
            error_type="ConnectionError",
            at_ms=1100.0,
        ),
    )
    assert (fetch.running_ms, fetch.backoff_ms, fetch.duration_ms) == (
        1500.0,
        300.0,
        1800.0,
    )
    # Items of 0.5, 1.5, 1 and 0.25 s in two slots: item 2 waits 0.5 s for
    # a slot, item 3 1.5 s; the last ends 1.75 s after the fan-out began.
    assert (each.wait_ms, each.queued_ms, each.running_ms, each.duration_ms) == (
        1800.0,
        2000.0,
        3250.0,
        1750.0,
    )
    assert (each.items, each.item_p50_ms, each.item_max_ms) == (4, 0.5e3, 1.5e3)
    assert run.stages["maybe"].reason == "condition returned False"
    assert (store.wait_ms, store.finished_at_ms) == (3550.0, 3800.0)
    assert run.critical_path == ["fetch", "each", "store"]
    assert run.duration_ms == 3800.0


# --- parsing ---------------------------------------------------------------------


def line(event: str, run_id: str = "r1", **fields: Any) -> str:
    """One JSON log line of the library's shape."""
    return json.dumps({"event": event, "run_id": run_id, "pipeline": "p", **fields})


def test_malformed_lines_are_skipped_and_counted_by_number() -> None:
    """Non-JSON, non-object and badly typed event lines are malformed; blanks ignored."""
    report = parse_log(
        [
            line("pipeline_started", stages=["a"], dependencies={"a": []}, at_ms=0),
            "",
            "plain text",
            "[1, 2]",
            '{"event": "stage_started", "run_id": "r1"',
            line("stage_started", stage_id="a", attempt="first", at_ms=0),
            json.dumps({"event": "user_login", "user": "ann"}),
            json.dumps({"event": "stage_started", "stage_id": "no run id"}),
            "   ",
        ]
    )
    assert (report.lines, report.events, report.other, report.malformed) == (
        7,
        1,
        2,
        4,
    )
    assert report.malformed_lines == (3, 4, 5, 6)
    assert [run.run_id for run in report.runs] == ["r1"]


def test_a_run_without_pipeline_finished_is_incomplete() -> None:
    """The run is reported incomplete, with its running and pending stages."""
    report = parse_log(
        [
            line(
                "pipeline_started",
                stages=["a", "b", "c"],
                dependencies={"a": [], "b": ["a"], "c": ["b"]},
                fail_fast=True,
                at_ms=0.0,
                timestamp="2026-01-01T00:00:00Z",
            ),
            line("stage_started", stage_id="a", attempt=1, at_ms=0.0),
            line(
                "stage_succeeded",
                stage_id="a",
                status="succeeded",
                attempts=1,
                duration_ms=1000.0,
                ready_at_ms=0.0,
                started_at_ms=0.0,
                finished_at_ms=1000.0,
                attempt_ms=[1000.0],
                at_ms=1000.0,
            ),
            line("stage_started", stage_id="b", attempt=1, at_ms=1000.0),
            line(
                "stage_retrying",
                stage_id="b",
                attempt=1,
                delay_ms=50.0,
                error="OSError: disk",
                error_type="OSError",
                at_ms=1200.0,
            ),
            line("stage_started", stage_id="b", attempt=2, at_ms=1250.0),
        ]
    )
    (run,) = report.runs
    assert report.incomplete == [run]
    assert (run.complete, run.status, run.success, run.duration_ms) == (
        False,
        None,
        None,
        None,
    )
    assert (run.state, run.last_event_ms, run.timestamp) == (
        "incomplete",
        1250.0,
        "2026-01-01T00:00:00Z",
    )
    assert {s: r.state for s, r in run.stages.items()} == {
        "a": "succeeded",
        "b": "running",
        "c": "pending",
    }
    assert (run.stages["b"].attempts, run.stages["b"].started_at_ms) == (2, 1000.0)
    assert run.stages["c"].inputs == ("b",)
    assert run.critical_path == ["a"]
    assert run.counts == {
        "succeeded": 1,
        "failed": 0,
        "skipped": 0,
        "cancelled": 0,
        "upstream_failed": 0,
        "running": 1,
        "pending": 1,
    }


def test_events_of_a_run_whose_start_is_not_in_the_log_are_kept() -> None:
    """A log cut at the front still yields the run, its stages in order of appearance."""
    report = parse_log(
        [
            line("stage_started", stage_id="z", attempt=1, at_ms=5.0),
            line(
                "stage_failed",
                stage_id="z",
                status="failed",
                attempts=1,
                duration_ms=1.0,
                error="KeyError: 'k'",
                error_type="KeyError",
                started_at_ms=5.0,
                finished_at_ms=6.0,
                at_ms=6.0,
            ),
            line(
                "pipeline_finished",
                status="failed",
                success=False,
                duration_ms=6.0,
                at_ms=6.0,
            ),
        ]
    )
    (run,) = report.runs
    assert run.complete
    assert run.fail_fast is None
    assert run.failed_stages == ["z"]
    assert run.stages["z"].error_type == "KeyError"
    assert run.critical_path == ["z"]


def test_interleaved_runs_are_separated_by_run_id() -> None:
    """Lines of two runs mixed together give two runs, in order of first appearance."""
    start = {"stages": ["a"], "dependencies": {"a": []}, "at_ms": 0.0}
    report = parse_log(
        [
            line("pipeline_started", "r2", **start),
            line("pipeline_started", "r1", **start),
            line("stage_started", "r1", stage_id="a", attempt=1, at_ms=0.0),
            line("stage_started", "r2", stage_id="a", attempt=1, at_ms=0.0),
            line("stage_started", "r2", stage_id="a", attempt=2, at_ms=3.0),
        ]
    )
    assert [(r.run_id, r.stages["a"].attempts) for r in report.runs] == [
        ("r2", 2),
        ("r1", 1),
    ]


def test_run_lookup_by_id_or_unique_prefix() -> None:
    """run() takes a full id or a unique prefix, and names the runs when it fails."""
    start = {"stages": [], "dependencies": {}, "at_ms": 0.0}
    report = parse_log(
        [
            line("pipeline_started", "abc1", **start),
            line("pipeline_started", "abc2", **start),
            line("pipeline_started", "abc", **start),
        ]
    )
    assert report.run("abc1").run_id == "abc1"
    assert report.run("abc").run_id == "abc"
    assert report.run("abc2"[:4]).run_id == "abc2"
    with pytest.raises(LookupError, match=r"^no run 'x' in the log; runs: abc1, "):
        report.run("x")
    report2 = report.model_copy(update={"runs": report.runs[:2]})
    with pytest.raises(LookupError, match=r"^run id 'ab' is ambiguous: it starts 2"):
        report2.run("ab")


def test_read_log_survives_undecodable_bytes(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 make a malformed line, never an exception."""
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'\xff\xfe{"event": 1}\n' + line("observer_failed").encode())
    report = read_log(path)
    assert (report.lines, report.malformed, report.events) == (2, 1, 1)
    assert report.runs[0].observer_failures == 1


def test_read_log_from_a_stream() -> None:
    """read_log accepts an open text stream."""
    stream = io.StringIO(line("pipeline_started", stages=[], dependencies={}) + "\n")
    assert [r.run_id for r in read_log(stream).runs] == ["r1"]


# --- rendering -------------------------------------------------------------------


@pytest.fixture
def etl_report(restore_structlog: None) -> LogReport:
    """The etl and fail-fast runs, logged at debug, with fixed run ids."""
    stream = io.StringIO()
    actors.logging.configure_json(stream, level="debug")

    async def both() -> tuple[PipelineResult, PipelineResult]:
        executor = PipelineExecutor()
        return await executor.execute(etl()), await executor.execute(fail_fast())

    clock = trio.testing.MockClock(autojump_threshold=0)
    first, second = trio.run(both, clock=clock)
    text = stream.getvalue()
    text = text.replace(first.run_id, "run-etl").replace(second.run_id, "run-ff")
    text = re.sub(r'"timestamp": "[^"]*"', '"timestamp": "T"', text)
    return parse_log(text.splitlines())


# Where failing() raises: the traceback shows the stage's own frame only.
_SOURCE, _START = inspect.getsourcelines(failing(0, "").__code__)
RAISES = (
    inspect.getsourcefile(failing),
    _START + next(n for n, text in enumerate(_SOURCE) if "raise" in text),
)


def test_summary_renders_a_table_per_run(etl_report: LogReport) -> None:
    """The summary shows counts, a stage table, a fan-out's items, retries per stage,
    errors with their traceback, and the path.

    ``each`` ran 4 items two at a time: its queue, run and backoff are sums
    over items, so the table shows none and the items line tells the story.
    """
    assert render_summary(etl_report) == (
        "log: 2 runs; 30 lines: 30 run events, 0 other, 0 malformed\n"
        "\n"
        "run run-etl  pipeline 'etl'  succeeded in 3.8 s  T\n"
        "  5 stages: 4 succeeded, 1 skipped\n"
        "  stage  status     attempts    wait  queue     run  backoff  duration\n"
        "  fetch  succeeded         3    0 ms   0 ms   1.5 s   300 ms     1.8 s\n"
        "  each   succeeded         4   1.8 s      -       -        -    1.75 s\n"
        "  side   succeeded         1    0 ms   0 ms  500 ms     0 ms    500 ms\n"
        "  maybe  skipped           0  500 ms   0 ms    0 ms     0 ms      0 ms\n"
        "  store  succeeded         1  3.55 s   0 ms  250 ms     0 ms    250 ms\n"
        "  items: each: 4 items, median 500 ms, p95 1.5 s, max 1.5 s, 1.86 at a time on average, 2 at most\n"
        "  slowest: fetch 1.8 s, each 1.75 s, side 500 ms\n"
        "  retries: fetch: 2 retries; top errors: ConnectionError x 2\n"
        "  critical path: fetch -> each -> store\n"
        "\n"
        "run run-ff  pipeline 'ff'  failed in 300 ms  T\n"
        "  3 stages: 1 failed, 2 cancelled\n"
        "  stage  status     attempts  wait  queue     run  backoff  duration\n"
        "  a      failed            1  0 ms   0 ms  300 ms     0 ms    300 ms\n"
        "  b      cancelled         1  0 ms   0 ms  300 ms     0 ms    300 ms\n"
        "  c      cancelled         0     -   0 ms    0 ms     0 ms      0 ms\n"
        "  slowest: a 300 ms, b 300 ms\n"
        "  error: a: ValueError: bad row\n"
        "    Traceback (most recent call last):\n"
        f'      File "{RAISES[0]}", line {RAISES[1]}, in stage\n'
        "    ValueError: bad row\n"
        "  cancelled: b, c (cancelled: stage 'a' failed)\n"
        "  critical path: a\n"
    )


def test_timeline_text_draws_each_stage_on_one_scale(etl_report: LogReport) -> None:
    """Running, backoff, skip and critical-path marks sit at their times.

    40 columns for 3800 ms: 95 ms a column; an interval fills every column
    it touches (fetch's 100 ms backoff from 500 ms touches columns 5 and 6).
    """
    text = render_timeline(etl_report.run("run-etl"), width=40)
    assert text.splitlines() == [
        "run run-etl  pipeline 'etl'  succeeded in 3.8 s  T",
        "       0 ms                                 3.8 s",
        "fetch  |#####~~####~~~#####                     | succeeded 0 ms to 1.8 s (3 attempts) *",
        "each   |                  ####################  | succeeded 1.8 s to 3.55 s (4 attempts) *",
        "side   |######                                  | succeeded 0 ms to 500 ms",
        "maybe  |     o                                  | skipped",
        "store  |                                     ###| succeeded 3.55 s to 3.8 s *",
        "legend: # running  ~ backoff  . queued  o skipped  x never ran  > still running (log ends)  * critical path",
    ]


def test_timeline_mermaid_is_a_gantt_chart(etl_report: LogReport) -> None:
    """Mermaid output uses ms timestamps, marks the critical path and milestones."""
    assert render_timeline(etl_report.run("run-ff"), "mermaid") == (
        "gantt\n"
        "    title pipeline ff, run run-ff, failed in 300 ms\n"
        "    dateFormat x\n"
        "    axisFormat %M:%S.%L\n"
        "    section ff\n"
        "    1. a (failed) :crit, s0, 0, 300\n"
        "    2. b (cancelled) :s1, 0, 300\n"
        "    3. c (cancelled) :milestone, s2, 300, 300\n"
    )


def test_timeline_mermaid_escapes_names() -> None:
    """Colons, semicolons and hashes in ids cannot break the Mermaid syntax."""
    report = parse_log(
        [
            line("pipeline_started", stages=["a:b;#c"], dependencies={"a:b;#c": []}),
            line("stage_started", stage_id="a:b;#c", attempt=1, at_ms=0.0),
        ]
    )
    chart = render_timeline(report.runs[0], "mermaid")
    # Nothing has a time beyond 0 yet: the chart spans 1 ms.
    assert chart.splitlines()[-1] == "    1. a b c (running) :active, s0, 0, 1"


def test_timeline_html_is_a_self_contained_page(etl_report: LogReport) -> None:
    """The HTML page has inline style and script only, a bar per stage."""
    page = render_timeline(etl_report.run("run-etl"), "html")
    assert page.startswith("<!DOCTYPE html>\n")
    assert page.endswith("</html>\n")
    assert not re.search(r"<link\b|\bsrc=|https?://|\burl\(", page)
    assert page.count('<div class="label">') == 5
    assert '<div class="bar succeeded crit" style="left:0.000%;width:47.368%"' in page
    assert '<div class="mark skipped" style="left:13.158%"' in page
    assert "critical path: fetch &rarr; each &rarr; store" in page


def test_timeline_rejects_an_unknown_format(etl_report: LogReport) -> None:
    """An unknown format is a ValueError naming the valid ones."""
    with pytest.raises(ValueError, match=r"^unknown timeline format 'svg'; use "):
        render_timeline(etl_report.runs[0], "svg")  # type: ignore[arg-type]  # on purpose


def test_critical_path_lists_each_stage_and_the_makespan(
    etl_report: LogReport,
) -> None:
    """Each run's path is a table of its stages, then the path and makespan."""
    assert render_critical_path(etl_report) == (
        "run run-etl  pipeline 'etl'  succeeded in 3.8 s  T\n"
        "  stage  status      start     end  duration\n"
        "  fetch  succeeded    0 ms   1.8 s     1.8 s\n"
        "  each   succeeded   1.8 s  3.55 s    1.75 s\n"
        "  store  succeeded  3.55 s   3.8 s    250 ms\n"
        "  path: fetch -> each -> store; makespan 3.8 s\n"
        "\n"
        "run run-ff  pipeline 'ff'  failed in 300 ms  T\n"
        "  stage  status  start     end  duration\n"
        "  a      failed   0 ms  300 ms    300 ms\n"
        "  path: a; makespan 300 ms\n"
    )


def test_rendering_an_empty_log() -> None:
    """A log with no runs renders as such, without errors."""
    report = parse_log([])
    assert render_summary(report) == (
        "log: 0 runs; 0 lines: 0 run events, 0 other, 0 malformed\n"
    )
    assert render_critical_path(report) == "no pipeline runs in the log\n"


def test_stage_status_values_are_the_event_suffixes() -> None:
    """Every StageStatus has a stage_<status> event the analysis understands."""
    for status in StageStatus:
        report = parse_log(
            [
                line(
                    f"stage_{status.value}",
                    stage_id="s",
                    status=status.value,
                    attempts=0,
                    duration_ms=0.0,
                    at_ms=1.0,
                )
            ]
        )
        assert report.runs[0].stages["s"].status is status


@pytest.mark.parametrize("module", [actors.analysis, actors.logging])
def test_public_modules_export_what_they_list(module: Any) -> None:
    """Every name in __all__ exists and says it lives in the public module."""
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, type) or inspect.isfunction(obj):  # not type aliases
            assert obj.__module__ == module.__name__, name

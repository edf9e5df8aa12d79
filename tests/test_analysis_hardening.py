"""Log analysis and diagrams on crafted input: no hang, crash, escape or injection."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from actors import PipelineDefinition, StageDefinition, render_diagram
from actors._analysis._records import MAX_LINE_CHARS
from actors._cli._logs import main_logs
from actors.analysis import parse_log, read_log, render_summary, render_timeline


def line(event: str, run_id: str = "r1", **fields: Any) -> str:
    """One JSON log line of the library's shape."""
    return json.dumps({"event": event, "run_id": run_id, "pipeline": "p", **fields})


def succeeded(stage_id: str, start: float, end: float, **extra: Any) -> str:
    """A stage_succeeded line for a stage that ran from *start* to *end*."""
    fields: dict[str, Any] = {
        "stage_id": stage_id,
        "status": "succeeded",
        "attempts": 1,
        "duration_ms": end - start,
        "ready_at_ms": start,
        "started_at_ms": start,
        "finished_at_ms": end,
        "attempt_ms": [end - start],
        "at_ms": end,
    }
    return line("stage_succeeded", **{**fields, **extra})


@pytest.mark.timeout(10)
def test_a_dependency_cycle_is_a_problem_of_the_run_not_a_hang() -> None:
    """``{"a": ["a"]}`` plus one finished stage: parsed, with the cycle reported."""
    report = parse_log(
        [
            line("pipeline_started", stages=["a"], dependencies={"a": ["a"]}),
            succeeded("a", 0, 10),
        ]
    )
    (run,) = report.runs
    assert run.problems == ["dependencies form a cycle: a -> a"]
    assert run.critical_path == ["a"]
    assert "  problem: dependencies form a cycle: a -> a\n" in render_summary(report)


@pytest.mark.timeout(10)
def test_a_longer_cycle_is_reported_as_a_path() -> None:
    """A cycle through three stages is named once, in data-flow order."""
    deps = {"a": ["c"], "b": ["a"], "c": ["b"]}
    report = parse_log(
        [
            line("pipeline_started", stages=["a", "b", "c"], dependencies=deps),
            succeeded("a", 0, 10),
            succeeded("b", 10, 20),
            succeeded("c", 20, 30),
        ]
    )
    (run,) = report.runs
    assert run.problems == ["dependencies form a cycle: a -> b -> c -> a"]
    # The edge that closed the cycle (b's input a) is not walked.
    assert run.critical_path == ["b", "c"]


@pytest.mark.parametrize(
    "bad",
    [
        "[" * 2400,
        '{"event": "stage_started", "run_id": "r1", "x": '
        + "[" * 3000
        + "]" * 3000
        + "}",
        line("stage_started", stage_id="a", attempt=1, at_ms=float("nan")),
        line("stage_started", stage_id="a", attempt=1, at_ms=float("inf")),
        line("stage_started", stage_id="a", attempt=1, at_ms=1e308),
        succeeded("a", 0, 1e308),
        line("stage_started", stage_id="a", attempt=1, at_ms=-float("inf")),
    ],
    ids=["brackets", "deep-field", "nan", "infinity", "1e308", "huge-end", "-inf"],
)
def test_crafted_lines_are_counted_as_malformed(bad: str) -> None:
    """Deep nesting, NaN, Infinity and absurd times: one malformed line each."""
    report = parse_log([line("pipeline_started", stages=["a"], dependencies={}), bad])
    assert (report.events, report.malformed, report.malformed_lines) == (1, 1, (2,))
    run = report.runs[0]
    for fmt in ("text", "mermaid", "html"):
        render_timeline(run, fmt)
    render_summary(report)


def test_undecodable_bytes_are_malformed_from_a_path_and_from_stdin(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A line with bytes that are not UTF-8 is malformed, wherever it is read from."""
    good = line("pipeline_started", stages=["a"], dependencies={}).encode()
    bad = b'{"event": "stage_started", "run_id": "r1", "stage_id": "\xff\xfe"}'
    path = tmp_path / "log.jsonl"
    path.write_bytes(good + b"\n" + bad + b"\n")
    report = read_log(path)
    assert (report.events, report.malformed, report.malformed_lines) == (1, 1, (2,))
    stdin = io.TextIOWrapper(io.BytesIO(good + b"\n" + bad + b"\n"))
    monkeypatch.setattr("sys.stdin", stdin)
    assert main_logs(["logs", "summary", "-"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "log: 1 run, 1 incomplete; 2 lines: 1 run events, 0 other, 1 malformed "
        "(skipped: line 2)\n"
    )


def test_an_overlong_line_is_skipped_without_holding_it(tmp_path: Path) -> None:
    """A line past the limit is one malformed line, and the summary says why."""
    path = tmp_path / "log.jsonl"
    with path.open("w") as stream:
        stream.write(line("pipeline_started", stages=["a"], dependencies={}) + "\n")
        stream.write('{"event": "x", "pad": "' + "y" * (3 * MAX_LINE_CHARS) + '"}\n')
        stream.write(succeeded("a", 0, 5) + "\n")
    report = read_log(path)
    assert (report.lines, report.events, report.malformed, report.long_lines) == (
        3,
        2,
        1,
        1,
    )
    assert report.malformed_lines == (2,)
    assert (
        render_summary(report)
        .splitlines()[0]
        .endswith("; 1 line over 1,000,000 characters skipped unread")
    )


def test_timeline_width_is_capped_and_the_command_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--width 200000000`` draws 1,000 columns and says so on stderr."""
    path = tmp_path / "log.jsonl"
    path.write_text(
        line("pipeline_started", stages=["a"], dependencies={})
        + "\n"
        + succeeded("a", 0, 5)
        + "\n"
    )
    assert main_logs(["logs", "timeline", str(path), "--width", "200000000"]) == 0
    out, err = capsys.readouterr()
    assert err == (
        "actors logs: --width 200000000 is more than any screen: drawing 1000\n"
    )
    bar = out.splitlines()[2]
    assert bar.startswith("a      |")
    assert len(bar.split("|")[1]) == 1000


def test_terminal_escapes_from_a_log_are_shown_not_sent(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Stage ids, pipeline names and errors with ESC / OSC 52 are escaped."""
    evil = "x\x1b]52;c;ZXZpbA==\x07\x1b[31m\x9b"
    lines = [
        line(
            "pipeline_started",
            run_id=evil,
            stages=[evil],
            dependencies={evil: []},
        ).replace('"pipeline": "p"', f'"pipeline": {json.dumps(evil)}'),
        line(
            "stage_failed",
            run_id=evil,
            stage_id=evil,
            status="failed",
            attempts=1,
            duration_ms=1.0,
            at_ms=1.0,
            error=f"ValueError: {evil}",
            started_at_ms=0.0,
            finished_at_ms=1.0,
        ).replace('"pipeline": "p"', f'"pipeline": {json.dumps(evil)}'),
    ]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    for command in ("summary", "timeline", "critical-path"):
        assert main_logs(["logs", command, str(path)]) == 0
        out, err = capsys.readouterr()
        for text in (out, err):
            assert not any(c in text for c in "\x1b\x07\x9b"), (command, text)
        assert "x\\x1b]52;c;ZXZpbA==\\x07\\x1b[31m\\x9b" in out
    assert main_logs(["logs", "summary", str(path), "--run", "nope"]) == 2
    assert "\x1b" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "stage_id",
    [
        "title",
        "section",
        "dateFormat YYYY",
        "excludes weekends",
        "click s0 call eval(alert(1))",
        "a: b; c # d %% e",
        "two\nlines",
        "todayMarker off",
    ],
)
def test_gantt_task_names_cannot_form_statements(stage_id: str) -> None:
    """Every task line is ``N. label :tags, sN, start, end`` whatever the id."""
    report = parse_log(
        [
            line("pipeline_started", stages=[stage_id, "b"], dependencies={}),
            succeeded(stage_id, 0, 10),
            succeeded("b", 0, 20),
        ]
    )
    chart = render_timeline(report.runs[0], "mermaid")
    lines = chart.splitlines()
    assert lines[:4] == [
        "gantt",
        lines[1],
        "    dateFormat x",
        "    axisFormat %M:%S.%L",
    ]
    assert lines[1].startswith("    title pipeline p, run r1, ")
    assert lines[4] == "    section p"
    tasks = lines[5:]
    assert len(tasks) == 2
    for n, task in enumerate(tasks):
        assert re.fullmatch(
            rf"    {n + 1}\. [\w .,()\[\]{{}}+\-/=@!?'*|~^$]+ :(crit, )?(done, )?s{n}, \d+, \d+",
            task,
        ), task


def test_flowchart_survives_a_newline_in_the_pipeline_name() -> None:
    """A newline in the pipeline's name (or a stage's) stays inside its line."""
    pipeline = PipelineDefinition(
        name="etl\nflowchart TB\nclick s0 call alert()",
        stages=[StageDefinition("a\nb", _noop, description="one\ntwo")],
    )
    text = render_diagram(pipeline, "mermaid")
    assert text.splitlines() == [
        "%% pipeline: etl flowchart TB click s0 call alert()",
        "flowchart LR",
        '    s0["<b>a b</b><br/>one two"]',
    ]


async def _noop(value: object, context: object) -> None:
    return None

"""The ``actors logs`` command: output, run selection and exit codes."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from actors._cli._logs import main_logs, register

START = {"stages": ["a", "b"], "dependencies": {"a": [], "b": ["a"]}, "at_ms": 0.0}


def line(event: str, run_id: str, **fields: Any) -> str:
    """One JSON log line of the library's shape."""
    return json.dumps({"event": event, "run_id": run_id, "pipeline": "p", **fields})


def ended(run_id: str, stage_id: str, start: float, end: float) -> str:
    """A stage_succeeded line for a stage that ran from *start* to *end*."""
    return line(
        "stage_succeeded",
        run_id,
        stage_id=stage_id,
        status="succeeded",
        attempts=1,
        duration_ms=end - start,
        ready_at_ms=start,
        started_at_ms=start,
        finished_at_ms=end,
        attempt_ms=[end - start],
        at_ms=end,
    )


def run_lines(run_id: str) -> list[str]:
    """A complete two-stage run: a from 0 to 100 ms, b from 100 to 300 ms."""
    return [
        line("pipeline_started", run_id, **START),
        ended(run_id, "a", 0.0, 100.0),
        ended(run_id, "b", 100.0, 300.0),
        line(
            "pipeline_finished",
            run_id,
            status="succeeded",
            success=True,
            duration_ms=300.0,
            at_ms=300.0,
        ),
    ]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """A log of two runs with an application line and a malformed one."""
    path = tmp_path / "runs.jsonl"
    lines = [
        *run_lines("aaaa1111"),
        json.dumps({"event": "request", "path": "/"}),
        "garbage",
        *run_lines("bbbb2222"),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_summary_prints_every_run_and_exits_0(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """summary reads the file, counts the malformed line, and describes each run."""
    assert main_logs(["logs", "summary", str(log)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(
        f"log {log}: 2 runs; 10 lines: 8 run events, 1 other, 1 malformed "
        "(skipped: line 6)\n"
    )
    assert "run aaaa1111  pipeline 'p'  succeeded in 300 ms\n" in out
    assert "run bbbb2222  pipeline 'p'  succeeded in 300 ms\n" in out
    assert "  critical path: a -> b\n" in out
    assert err == ""


def test_summary_of_one_run_by_prefix(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--run takes a unique prefix and limits the summary to that run."""
    assert main_logs(["logs", "summary", str(log), "--run", "bbbb"]) == 0
    out = capsys.readouterr().out
    assert "run bbbb2222" in out
    assert "aaaa1111" not in out


def test_timeline_defaults_to_the_last_run_and_says_so(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --run, the last run is drawn and stderr names it."""
    assert main_logs(["logs", "timeline", str(log), "--width", "10"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[:4] == [
        "run bbbb2222  pipeline 'p'  succeeded in 300 ms",
        "       0 ms  300 ms",
        "a      |####      | succeeded 0 ms to 100 ms *",
        "b      |   #######| succeeded 100 ms to 300 ms *",
    ]
    assert err == (
        "actors logs: drawing the last of 2 runs (bbbb2222); choose another with --run\n"
    )


@pytest.mark.parametrize(
    ("fmt", "start"),
    [("mermaid", "gantt\n    title pipeline p, run aaaa1111,"), ("html", "<!DOCTYPE")],
)
def test_timeline_formats(
    log: Path, capsys: pytest.CaptureFixture[str], fmt: str, start: str
) -> None:
    """--format mermaid and html print the chart of the chosen run."""
    assert main_logs(["logs", "timeline", str(log), "--run", "a", "--format", fmt]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(start)
    assert err == ""


def test_critical_path_of_each_run(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """critical-path prints each run's path and makespan."""
    assert main_logs(["logs", "critical-path", str(log)]) == 0
    out = capsys.readouterr().out
    assert out.count("  path: a -> b; makespan 300 ms\n") == 2


def test_standard_input_is_read_for_dash(
    log: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FILE '-' reads the log from standard input."""
    monkeypatch.setattr("sys.stdin", io.StringIO(log.read_text("utf-8")))
    assert main_logs(["logs", "critical-path", "-", "--run", "aaaa1111"]) == 0
    assert capsys.readouterr().out.startswith("run aaaa1111")


@pytest.mark.parametrize("command", ["summary", "timeline", "critical-path"])
def test_missing_file_exits_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """An unreadable file is exit status 2 and one line on stderr naming it."""
    missing = tmp_path / "nope.jsonl"
    assert main_logs(["logs", command, str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"actors logs: error: cannot read {missing}: No such file or directory\n"
    )


def test_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory is not a log: exit status 2."""
    assert main_logs(["logs", "summary", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"actors logs: error: cannot read {tmp_path}: Is a directory\n"
    )


def test_unknown_run_exits_2_and_lists_the_runs(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--run matching nothing is exit status 2; the message lists the runs."""
    assert main_logs(["logs", "timeline", str(log), "--run", "zz"]) == 2
    assert capsys.readouterr().err == (
        "actors logs: error: no run 'zz' in the log; runs: aaaa1111, bbbb2222\n"
    )


def test_timeline_of_a_log_without_runs_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no run to draw, timeline exits 2; summary still reports the log."""
    path = tmp_path / "app.jsonl"
    path.write_text('{"event": "hello"}\n', encoding="utf-8")
    assert main_logs(["logs", "timeline", str(path)]) == 2
    assert (
        capsys.readouterr().err == f"actors logs: error: no pipeline runs in {path}\n"
    )
    assert main_logs(["logs", "summary", str(path)]) == 0
    assert capsys.readouterr().out == (
        f"log {path}: 0 runs; 1 line: 0 run events, 1 other, 0 malformed\n"
    )


def test_incomplete_run_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run cut short is flagged incomplete in the summary; still exit 0."""
    path = tmp_path / "crash.jsonl"
    path.write_text("\n".join(run_lines("cccc")[:2]) + "\n", encoding="utf-8")
    assert main_logs(["logs", "summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "run cccc  pipeline 'p'  INCOMPLETE: no pipeline_finished "
        "(crashed or still running); log ends at 100 ms\n"
    ) in out
    assert "  2 stages: 1 succeeded, 1 pending\n" in out


def test_bad_format_is_a_usage_error(log: Path) -> None:
    """argparse rejects an unknown --format with exit status 2."""
    with pytest.raises(SystemExit) as exc_info:
        main_logs(["logs", "timeline", str(log), "--format", "svg"])
    assert exc_info.value.code == 2


def test_register_adds_logs_to_any_parser(log: Path) -> None:
    """register() plugs the command into another CLI; each subcommand sets handler."""
    parser = argparse.ArgumentParser(prog="other")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["logs", "critical-path", str(log)])
    assert callable(args.handler)
    assert (args.command, args.logs_command, args.file) == (
        "logs",
        "critical-path",
        str(log),
    )


def test_main_cli_runs_the_logs_command(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The installed ``actors`` entry point dispatches ``logs`` here."""
    from actors._cli import main

    assert main(["logs", "critical-path", str(log), "--run", "aaaa"]) == 0
    assert capsys.readouterr().out.startswith("run aaaa1111")


def _failed_line(run_id: str, **extra: Any) -> str:
    return line(
        "stage_failed",
        run_id,
        stage_id="b",
        status="failed",
        attempts=1,
        duration_ms=5.0,
        at_ms=105.0,
        error="KeyError: 'x'",
        error_type="KeyError",
        started_at_ms=100.0,
        finished_at_ms=105.0,
        **extra,
    )


STRUCTURED = [
    {
        "exc_type": "KeyError",
        "exc_value": "'x'",
        "is_cause": False,
        "frames": [
            {"filename": "/app/etl.py", "lineno": 12, "name": "load"},
            {"filename": "/app/etl.py", "lineno": 4, "name": "lookup"},
        ],
    },
    {
        "exc_type": "OSError",
        "exc_value": "disk",
        "is_cause": True,
        "frames": [{"filename": "/app/etl.py", "lineno": 9, "name": "read"}],
    },
]


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (
            STRUCTURED,
            [
                "  error: b: KeyError: 'x'",
                "    Traceback (most recent call last):",
                '      File "/app/etl.py", line 9, in read',
                "    OSError: disk",
                "    ",
                "    The above exception was the direct cause of the following "
                "exception:",
                "    ",
                "    Traceback (most recent call last):",
                '      File "/app/etl.py", line 12, in load',
                '      File "/app/etl.py", line 4, in lookup',
                "    KeyError: 'x'",
            ],
        ),
        (
            'Traceback (most recent call last):\n  File "/app/etl.py", line 4\n'
            "KeyError: 'x'\n",
            [
                "  error: b: KeyError: 'x'",
                "    Traceback (most recent call last):",
                '      File "/app/etl.py", line 4',
                "    KeyError: 'x'",
            ],
        ),
        (None, ["  error: b: KeyError: 'x'"]),
        ({"not": "a traceback"}, ["  error: b: KeyError: 'x'"]),
    ],
    ids=["structured", "text", "absent", "unknown-shape"],
)
def test_summary_prints_a_failed_stages_traceback_when_logged(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    exception: Any,
    expected: list[str],
) -> None:
    """configure_json's structured ``exception`` or a text one; absent: no trace."""
    extra = {} if exception is None else {"exception": exception}
    path = tmp_path / "log.jsonl"
    path.write_text(
        "\n".join(
            [
                line("pipeline_started", "r1", **START),
                ended("r1", "a", 0.0, 100.0),
                _failed_line("r1", **extra),
            ]
        )
        + "\n"
    )
    assert main_logs(["logs", "summary", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    start = out.index("  error: b: KeyError: 'x'")
    assert out[start : start + len(expected)] == expected
    assert out[start + len(expected)] == "  critical path: a -> b"


def _retry(run_id: str, item: int, error_type: str, at_ms: float) -> str:
    return line(
        "stage_retrying",
        run_id,
        stage_id="a",
        attempt=1,
        delay_ms=10.0,
        error=f"{error_type}: slow down",
        error_type=error_type,
        item_index=item,
        at_ms=at_ms,
    )


def test_summary_aggregates_retries_and_lists_them_with_verbose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """196 retries on 180 items are one line; ``--verbose`` adds one per retry."""
    retries = [_retry("r1", n % 180, "RateLimitError", n) for n in range(190)]
    retries += [_retry("r1", n, "TimeoutError", 200 + n) for n in range(6)]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join([line("pipeline_started", "r1", **START), *retries]))
    assert main_logs(["logs", "summary", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [text for text in out if text.startswith("  retr")] == [
        "  retries: a: 196 retries on 180 items; top errors: RateLimitError x 190, "
        "TimeoutError x 6"
    ]
    assert main_logs(["logs", "summary", str(path), "--verbose"]) == 0
    out = capsys.readouterr().out.splitlines()
    detail = [text for text in out if text.startswith("    item ")]
    assert len(detail) == 196
    assert (
        detail[0]
        == "    item 0 attempt 1 at 0 ms, next after 10 ms: RateLimitError: slow down"
    )

"""The ``actors`` command line: exit codes, target loading, output, logging."""

from __future__ import annotations

import inspect
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio.testing

from actors import PipelineExecutor
from actors._cli import main
from actors._cli._progress import ProgressTracker, live_table, rich_summary
from actors._cli._target import split_target

ROOT = Path(__file__).parent.parent
TARGETS = "tests/cli_targets.py"
GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(autouse=True)
def _isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run from the repository root; forget modules and paths a test imported."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr("actors._cli._target._loaded", {})
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if not name.startswith(("rich", "pygments", "markdown_it", "mdurl")):
            del sys.modules[name]


def cli(*argv: str) -> int:
    """Run the command line in-process under a mock clock that jumps ahead."""
    return main(list(argv), clock=trio.testing.MockClock(autojump_threshold=0))


def test_run_prints_progress_lines_and_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Outside a terminal, ``run`` prints one line per stage event, then the summary."""
    assert cli("run", f"{TARGETS}:ok", "--input", "1") == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "   0.000s  first   started",
        "   1.000s  first   succeeded in 1 s, 1 attempt",
        "   1.000s  second  started",
        "   1.500s  second  attempt 1 failed (ConnectionError: reset); "
        "retrying in 250 ms",
        "   1.750s  second  started (attempt 2)",
        "   2.250s  second  succeeded in 1.25 s, 2 attempts",
        "stage   status     attempts  duration  note",
        "first   succeeded  1         1 s",
        "second  succeeded  2         1.25 s",
        "pipeline 'ok' succeeded in 2.25 s; critical path: first -> second",
    ]
    assert err == ""


def test_fan_out_progress_shows_items_done_out_of_total(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A fan-out stage reports its item count when it starts and when it ends."""
    assert cli("run", f"{TARGETS}:fans") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:4] == [
        "   0.000s  each   started (3 items)",
        "   2.000s  each   succeeded 3/3 in 2 s, 3 attempts",
    ]


def test_failed_run_exits_1_and_names_the_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A failed pipeline exits with 1; the summary shows each stage's status,
    after the failed stage's traceback: its own frames, none of the library's."""
    assert cli("run", f"{TARGETS}:failing", "--input", "1", "--no-progress") == 1
    source, start = inspect.getsourcelines(cli_targets_module().boom)
    raises = start + next(n for n, text in enumerate(source) if "raise" in text)
    assert capsys.readouterr().out.splitlines() == [
        "traceback of stage 'broken':",
        "  Traceback (most recent call last):",
        f'    File "{ROOT / TARGETS}", line {raises}, in boom',
        '      raise RuntimeError("boom")',
        "  RuntimeError: boom",
        "",
        "stage   status     attempts  duration  note",
        "first   succeeded  1         1 s",
        "broken  failed     1         250 ms    RuntimeError: boom",
        "after   cancelled  0         -         cancelled: stage 'broken' failed",
        "pipeline 'failing' failed in 1.25 s; critical path: first -> broken",
    ]


def cli_targets_module() -> Any:
    """The targets module as the command line loaded it (by its path)."""
    return next(
        module
        for module in sys.modules.values()
        if getattr(module, "__file__", None) == str(ROOT / TARGETS)
    )


def test_timeout_bounds_the_run_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--timeout`` ends a run that would never finish, as a timed-out failure."""
    assert cli("run", f"{TARGETS}:slow", "--timeout", "3", "--no-progress") == 1
    assert (
        capsys.readouterr().out.splitlines()[-1] == "pipeline 'slow' timed_out in 3 s"
    )


@pytest.mark.parametrize("value", ["0", "-1", "nan", "soon"])
def test_timeout_must_be_a_positive_number(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A timeout that is not a positive number is a usage error (exit 2)."""
    assert cli("run", f"{TARGETS}:ok", "--timeout", value) == 2
    assert "--timeout" in capsys.readouterr().err


def test_ctrl_c_cancels_cleanly_and_exits_130(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The first Ctrl-C cancels the run: stages say "interrupted", then exit 130."""
    assert cli("run", f"{TARGETS}:interrupted", "--no-progress") == 130
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "stage  status     attempts  duration  note",
        "press  cancelled  1         2 s       cancelled: interrupted",
        "pipeline 'interrupted' cancelled in 2 s",
    ]
    assert err == "interrupted: cancelling the run (press Ctrl-C again to abort)\n"


def test_second_ctrl_c_aborts_with_130(capsys: pytest.CaptureFixture[str]) -> None:
    """A second Ctrl-C stops waiting for the summary and exits with 130."""
    assert cli("run", f"{TARGETS}:stubborn", "--no-progress") == 130
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "interrupted: cancelling the run (press Ctrl-C again to abort)",
        "aborted",
    ]


def test_sys_exit_in_a_stage_exits_with_its_code() -> None:
    """SystemExit from a stage leaves the command as itself, not in a group."""
    with pytest.raises(SystemExit) as exc_info:
        cli("run", f"{TARGETS}:exits")
    assert exc_info.value.code == 3


def test_input_is_json_from_the_option_or_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--input`` and ``--input-file`` both give the first stage its JSON input."""
    data = tmp_path / "input.json"
    data.write_text("[1, 2]")
    assert cli("run", f"{TARGETS}:fans", "--input-file", str(data)) == 0
    assert cli("run", f"{TARGETS}:fans", "--input", '{"a": 1}') == 0
    assert cli("run", f"{TARGETS}:ok", "--input", "{oops") == 2
    err = capsys.readouterr().err
    assert re.search(r"^error: --input is not valid JSON: ", err, re.MULTILINE)
    assert cli("run", f"{TARGETS}:ok", "--input-file", str(tmp_path / "none")) == 2
    assert "error: --input-file" in capsys.readouterr().err


def test_input_file_dash_reads_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--input-file -`` reads the JSON input from standard input."""
    monkeypatch.setattr("sys.stdin", io.StringIO("[4, 5, 6]"))
    assert cli("run", f"{TARGETS}:fans", "--input-file", "-") == 0
    assert "each   started (3 items)" in capsys.readouterr().out


def test_timeout_keeps_the_stricter_bound(capsys: pytest.CaptureFixture[str]) -> None:
    """A ``--timeout`` longer than the pipeline's own ``timeout_ms`` does not extend it."""
    from actors import PipelineDefinition
    from actors._cli._run import _with_timeout

    pipeline = PipelineDefinition(name="p", stages=[], timeout_ms=1500)
    assert _with_timeout(pipeline, 3).timeout_ms == 1500
    assert _with_timeout(pipeline, 1).timeout_ms == 1000
    assert pipeline.timeout_ms == 1500


def test_input_and_input_file_are_exclusive(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Giving both inputs is a usage error."""
    assert cli("run", f"{TARGETS}:ok", "--input", "1", "--input-file", "x") == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    "context", [":make_context", f"{TARGETS}:make_context", "cli_targets:make_context"]
)
def test_context_factory_is_used(
    context: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--context`` names a factory, in the target's module (``:attr``) or any."""
    assert cli("run", f"{TARGETS}:ok", "--input", "1", "--context", context) == 0
    assert "second  succeeded" in capsys.readouterr().out


def test_context_instance_is_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    """``--context`` may also name a ready-made PipelineContext."""
    assert (
        cli("run", f"{TARGETS}:ok", "--input", "1", "--context", ":shared_context") == 0
    )


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (
            ":bad_context",
            r"^error: :bad_context: the function returned str, expected a PipelineContext$",
        ),
        (
            ":nothing",
            r"^error: :nothing: no attribute 'nothing'; context factories defined there: ",
        ),
        (
            ":ok",
            r"^error: :ok: expected a PipelineContext or a function returning one, got PipelineDefinition$",
        ),
    ],
)
def test_bad_context_exits_2(
    context: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A context that cannot be loaded or is of the wrong type is a usage error."""
    assert cli("run", f"{TARGETS}:ok", "--context", context) == 2
    assert re.search(message, capsys.readouterr().err, re.MULTILINE)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nowhere.py:x", r"^error: no such file: nowhere.py$"),
        (
            "no_such_module:x",
            r"^error: no module named 'no_such_module' \(a TARGET is module:attr or path/to/file.py:attr\)$",
        ),
        (
            f"{TARGETS}:missing",
            r"^error: tests/cli_targets.py:missing: no attribute 'missing'; pipelines defined there: exits, failing, fans, interrupted, invalid, noisy, ok, slow, slow_to_stop, stubborn, terminated, terminated_twice$",
        ),
        (
            f"{TARGETS}:not_a_pipeline",
            r"^error: tests/cli_targets.py:not_a_pipeline: expected a PipelineDefinition or a function returning one, got str$",
        ),
        (
            f"{TARGETS}:needs_args",
            r"^error: tests/cli_targets.py:needs_args: expected a PipelineDefinition or a function taking no arguments that returns one; it needs arguments$",
        ),
        (
            f"{TARGETS}:returns_number",
            r"^error: tests/cli_targets.py:returns_number: the function returned int, expected a PipelineDefinition$",
        ),
        (
            f"{TARGETS}:raises",
            r"^error: tests/cli_targets.py:raises: calling it raised LookupError: no config found$",
        ),
    ],
)
@pytest.mark.parametrize("command", ["run", "validate", "graph"])
def test_target_loading_errors_exit_2(
    command: str, target: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every way a TARGET can be wrong is reported in one line, with exit code 2."""
    assert cli(command, target) == 2
    out, err = capsys.readouterr()
    assert re.fullmatch(message, err.rstrip("\n"))
    assert out == ""


def test_import_error_in_the_target_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target module that raises on import is reported with the exception."""
    broken = tmp_path / "cli_broken.py"
    broken.write_text("raise ImportError('missing dependency: audio')\n")
    assert cli("validate", f"{broken}:pipeline") == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"error: importing {broken} failed: ImportError: missing dependency: audio\n"
    )


def test_factory_and_module_forms_load_the_same_pipeline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A zero-argument factory and ``module:attr`` both work as TARGETs."""
    assert cli("validate", f"{TARGETS}:make_ok") == 0
    assert cli("validate", "cli_targets:ok") == 0
    assert capsys.readouterr().out == (
        "ok: pipeline 'ok', 2 stages\nok: pipeline 'ok', 2 stages\n"
    )


def test_attribute_defaults_to_pipeline() -> None:
    """A TARGET without ``:attr`` names the attribute ``pipeline``."""
    assert split_target("examples/fan_out.py") == ("examples/fan_out.py", "pipeline")
    assert split_target("pkg.mod:build") == ("pkg.mod", "build")
    assert split_target("C:\\work\\p.py") == ("C:\\work\\p.py", "pipeline")
    assert split_target("C:\\work\\p.py:x") == ("C:\\work\\p.py", "x")


def test_validate_prints_every_problem_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``validate`` lists every problem of an invalid definition."""
    assert cli("validate", f"{TARGETS}:invalid") == 2
    assert capsys.readouterr().out.splitlines() == [
        "pipeline 'invalid': 3 problems",
        "  - stage 'd' depends on unknown stage 'nowhere'; "
        "known stages: 'a', 'b', 'c', 'd', 'e'",
        "  - stage 'e': CONDITIONAL needs a condition(context) -> bool",
        "  - dependency cycle: b -> c -> a -> b",
    ]


@pytest.mark.parametrize("command", ["run", "graph"])
def test_invalid_definition_is_refused_before_running(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run`` and ``graph`` print every problem to stderr and exit 2."""
    assert cli(command, f"{TARGETS}:invalid") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[0] == "pipeline 'invalid' is invalid (3 problems):"
    assert len(err.splitlines()) == 4


@pytest.mark.parametrize(("fmt", "suffix"), [("mermaid", "mmd"), ("dot", "dot")])
def test_graph_of_the_main_example_matches_golden_file(
    fmt: str, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``actors graph`` prints the main example as the golden diagram."""
    assert cli("graph", "examples/audio_sequencer.py", "--format", fmt) == 0
    expected = (GOLDEN / f"audio_sequencer.{suffix}").read_text(encoding="utf-8")
    assert capsys.readouterr().out == expected


def test_graph_output_format_follows_the_suffix(tmp_path: Path) -> None:
    """``--output x.dot`` writes DOT unless ``--format`` says otherwise."""
    target = "examples/audio_sequencer.py"
    assert cli("graph", target, "--output", str(tmp_path / "a.dot")) == 0
    assert cli("graph", target, "--output", str(tmp_path / "a.mmd")) == 0
    assert (
        cli("graph", target, "--format", "mermaid", "--output", str(tmp_path / "b.gv"))
        == 0
    )
    assert (tmp_path / "a.dot").read_text() == (
        GOLDEN / "audio_sequencer.dot"
    ).read_text()
    assert (tmp_path / "a.mmd").read_text() == (
        GOLDEN / "audio_sequencer.mmd"
    ).read_text()
    assert (tmp_path / "b.gv").read_text() == (
        GOLDEN / "audio_sequencer.mmd"
    ).read_text()


def test_run_writes_the_diagram_coloured_by_status(tmp_path: Path) -> None:
    """``run --graph`` writes the diagram with each stage's final status colour."""
    graph = tmp_path / "run.dot"
    assert (
        cli(
            "run",
            f"{TARGETS}:failing",
            "--input",
            "1",
            "--no-progress",
            "--graph",
            str(graph),
        )
        == 1
    )
    lines = graph.read_text().splitlines()
    assert (
        '    "first" [label="first", fillcolor="#c8e6c9", color="#2e7d32", tooltip="succeeded"];'
        in lines
    )
    assert (
        '    "broken" [label="broken", fillcolor="#ffcdd2", color="#c62828", tooltip="failed"];'
        in lines
    )
    assert (
        '    "after" [label="after", fillcolor="#ffe0b2", color="#ef6c00", tooltip="cancelled"];'
        in lines
    )


def test_log_file_gets_json_lines_and_logging_is_restored(tmp_path: Path) -> None:
    """``--log-file`` appends JSON events; structlog's configuration is put back."""
    log = tmp_path / "run.jsonl"
    before = structlog.get_config()
    assert (
        cli(
            "run",
            f"{TARGETS}:ok",
            "--input",
            "1",
            "--no-progress",
            "--log-file",
            str(log),
        )
        == 0
    )
    assert structlog.get_config() == before
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in events] == [
        "pipeline_started",
        "stage_started",
        "stage_succeeded",
        "stage_started",
        "stage_retrying",
        "stage_started",
        "stage_succeeded",
        "pipeline_finished",
    ]
    assert {e["run_id"] for e in events} == {events[0]["run_id"]}
    assert events[-1]["duration_ms"] == 2250.0


def test_log_format_console_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """``--log-format console`` streams readable events to stderr, not stdout."""
    assert (
        cli(
            "run",
            f"{TARGETS}:ok",
            "--input",
            "1",
            "--no-progress",
            "--log-format",
            "console",
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert "pipeline_finished" in err
    assert "pipeline_finished" not in out


def test_log_format_json_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """``--log-format json`` streams one JSON object per line to stderr."""
    assert (
        cli(
            "run",
            f"{TARGETS}:fans",
            "--no-progress",
            "--log-format",
            "json",
            "--log-level",
            "debug",
        )
        == 0
    )
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert events[0]["event"] == "pipeline_started"
    assert events[-1]["event"] == "pipeline_finished"
    assert sum(e["event"] == "item_succeeded" for e in events) == 3


def test_warnings_reach_stderr_even_without_logging_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without log options, a stage's own warnings go to stderr; info is dropped."""
    assert cli("run", f"{TARGETS}:noisy", "--no-progress") == 0
    out, err = capsys.readouterr()
    assert "disk_almost_full" in err
    assert "free_mb=12" in err
    assert "cache_warmed" not in err + out
    assert out.startswith("stage  status")


def test_rich_output_renders_live_progress_and_a_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With rich output chosen, the run redraws a live table and ends with a table."""
    monkeypatch.setattr("actors._cli._run._use_rich", lambda: True)
    assert cli("run", f"{TARGETS}:ok", "--input", "1") == 0
    out = capsys.readouterr().out
    assert re.search(r"│ second\s+│ succeeded │\s+2 │\s+1.25 s │", out)
    assert "pipeline 'ok' succeeded in 2.25 s" in out


async def test_live_table_shows_each_stage_state(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The live table has one row per stage with its state, items and time."""
    import cli_targets  # tests/ is on sys.path (pytest's rootdir insertion)
    from rich.console import Console

    tracker = ProgressTracker(cli_targets.failing)
    result = await PipelineExecutor(log_events=False).execute(
        cli_targets.failing, 1, observers=[tracker]
    )
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(live_table(tracker))
    console.print(rich_summary(result))
    text = console.file.getvalue()  # type: ignore[attr-defined]  # a StringIO
    assert re.search(r"^first\s+sequential\s+succeeded\s+1 s\s*$", text, re.MULTILINE)
    assert re.search(
        r"^broken\s+sequential\s+failed\s+250 ms\s+RuntimeError: boom",
        text,
        re.MULTILINE,
    )
    assert re.search(
        r"│ after\s+│ cancelled │\s+0 │\s+- │ cancelled: stage 'broken' failed", text
    )


def test_version_help_and_missing_command() -> None:
    """``--version`` and ``--help`` exit 0; no command at all is a usage error."""
    assert main(["--version"]) == 0
    assert main(["--help"]) == 0
    assert main([]) == 2
    assert main(["logs", "--help"]) == 0


def test_python_m_actors_runs_without_rich() -> None:
    """``python -m actors`` works, even where rich (the ``cli`` extra) is missing."""
    done = subprocess.run(
        [sys.executable, "-m", "actors", "validate", "examples/fan_out.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "ok: pipeline 'fan_out', 3 stages\n")
    # structlog imports rich when it can, so hide rich to prove we never need it.
    code = (
        "import sys; sys.modules['rich'] = None\n"
        "import actors._cli\n"
        "sys.exit(actors._cli.main(['run', 'examples/fan_out.py', '--no-progress']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("stage       status     attempts  duration  note\n")


async def test_model_copy_of_a_pipeline_does_not_reuse_its_compiled_graph(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A copy with other stages runs those stages, not the original's cached graph."""
    from actors import PipelineDefinition, StageDefinition

    async def one(value: object, context: object) -> int:
        return 1

    async def two(value: object, context: object) -> int:
        return 2

    original = PipelineDefinition(name="p", stages=[StageDefinition("s", one)])
    executor = PipelineExecutor(log_events=False)
    assert (await executor.execute(original)).outputs == {"s": 1}
    copy = original.model_copy(update={"stages": (StageDefinition("s", two),)})
    assert (await executor.execute(copy)).outputs == {"s": 2}
    assert (await executor.execute(original)).outputs == {"s": 1}


def test_a_file_already_imported_is_not_imported_twice() -> None:
    """A TARGET file already imported under its own name is reused, not re-run."""
    import cli_targets

    from actors._cli._target import load_module

    assert load_module(TARGETS) is cli_targets
    assert load_module("cli_targets") is cli_targets


async def test_live_table_cuts_long_notes_to_the_terminal_width(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """On a narrow terminal each stage stays on one line; the note is cut."""
    import cli_targets
    from rich.console import Console

    tracker = ProgressTracker(cli_targets.failing)
    await PipelineExecutor(log_events=False).execute(
        cli_targets.failing, 1, observers=[tracker]
    )
    console = Console(file=io.StringIO(), width=60, color_system=None)
    console.print(live_table(tracker, width=60))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]  # a StringIO
    assert len(lines) == 4
    assert lines[3].startswith("after   sequential  cancelled")
    assert lines[3].endswith("…")
    assert all(len(line) <= 60 for line in lines)


def test_run_log_file_feeds_actors_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The log ``actors run --log-file`` writes is what ``actors logs`` reads."""
    log = tmp_path / "runs.jsonl"
    argv = ["run", f"{TARGETS}:ok", "--input", "1", "--no-progress"]
    assert cli(*argv, "--log-file", str(log)) == 0
    capsys.readouterr()
    assert main(["logs", "critical-path", str(log)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "  path: first -> second; makespan 2.25 s"


def test_summary_shows_a_fan_outs_items_not_sums(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Three 1 s items two at a time: 3 s of item time in 2 s, 1.5 at a time."""
    assert cli("run", f"{TARGETS}:fans", "--no-progress") == 0
    assert capsys.readouterr().out.splitlines() == [
        "stage  status     attempts  duration  note",
        "split  succeeded  1         0 ms",
        "each   succeeded  3         2 s       "
        "3 items, median 1 s, p95 1 s, 1.5 at a time on average",
        "pipeline 'fans' succeeded in 2 s; critical path: split -> each",
    ]

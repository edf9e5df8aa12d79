"""The command line under signals, hostile input and failing writes."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio.testing

from actors import PipelineDefinition, PipelineExecutor, StageDefinition
from actors._cli import main
from actors._cli._progress import PlainProgress, plain_summary, rich_summary

ROOT = Path(__file__).parent.parent
TARGETS = "tests/cli_targets.py"


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


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    """Wait (real time, a subprocess is involved) until *path* has content."""
    deadline = time.monotonic() + 20
    while not (path.exists() and path.read_text()):
        if process.poll() is not None or time.monotonic() > deadline:
            _, err = process.communicate()
            pytest.fail(f"never got to {path.name}: rc={process.returncode} {err}")
        time.sleep(0.02)


# --- SIGTERM and SIGINT ----------------------------------------------------------


def test_sigterm_stops_the_run_like_ctrl_c_and_exits_143(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The first SIGTERM cancels the run; the summary is printed; exit 143."""
    assert cli("run", f"{TARGETS}:terminated", "--no-progress") == 143
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "stage  status     attempts  duration  note",
        "term   cancelled  1         2 s       cancelled: terminated",
        "pipeline 'terminated' cancelled in 2 s",
    ]
    assert err == "terminated: cancelling the run (send SIGTERM again to abort)\n"


def test_second_sigterm_aborts_with_143(capsys: pytest.CaptureFixture[str]) -> None:
    """A second SIGTERM stops waiting for a slow clean-up: one line, exit 143."""
    assert cli("run", f"{TARGETS}:terminated_twice", "--no-progress") == 143
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "terminated: cancelling the run (send SIGTERM again to abort)",
        "aborted",
    ]


def test_sigterm_while_the_run_starts_still_stops_it_cleanly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGTERM before trio listens for it is held, then stops the run cleanly."""
    code = cli(
        "run",
        f"{TARGETS}:slow",
        "--no-progress",
        "--context",
        ":sigterm_while_starting",
    )
    assert code == 143
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "stage  status     attempts  duration  note",
        "wait   cancelled  0         -         cancelled: terminated before the run",
        "pipeline 'slow' cancelled in 0 ms",
    ]
    assert err == "terminated: cancelling the run (send SIGTERM again to abort)\n"


def test_sigterm_kills_a_stage_child_process_and_completes_the_log(
    tmp_path: Path,
) -> None:
    """A real ``actors run`` stopped by SIGTERM ends its stage's child process.

    The stage runs ``trio.run_process``; the child writes its pid and sleeps.
    After SIGTERM the command exits 143 with a summary, the child is gone and
    the log ends with ``pipeline_finished``.
    """
    pid_file = tmp_path / "child.pid"
    target = tmp_path / "spawner.py"
    target.write_text(
        textwrap.dedent(
            f"""
            import sys
            import trio
            from actors import PipelineDefinition, StageDefinition

            CHILD = (
                "import os, time, pathlib; "
                "pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
                "time.sleep(60)"
            )

            async def spawn(value, context):
                await trio.run_process([sys.executable, "-c", CHILD])

            pipeline = PipelineDefinition(
                name="spawner", stages=[StageDefinition("spawn", spawn)]
            )
            """
        )
    )
    log = tmp_path / "run.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "actors", "run", str(target), "--log-file", str(log)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(pid_file, process)
    child = int(pid_file.read_text())
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 143, err
    assert err == "terminated: cancelling the run (send SIGTERM again to abort)\n"
    assert (
        out.splitlines()[-1]
        == "pipeline 'spawner' cancelled in "
        + (out.splitlines()[-1].rsplit(" in ", 1)[1])
    )
    assert "spawn  cancelled  1" in out
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events[-1] == "pipeline_finished"


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
)
def test_a_signal_while_loading_the_target_is_one_line(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    """Ctrl-C or SIGTERM while the target imports: one line, exit 130 / 143."""
    marker = tmp_path / "importing"
    target = tmp_path / "slow_import.py"
    target.write_text(
        f"import pathlib, time\npathlib.Path({str(marker)!r}).write_text('x')\n"
        "time.sleep(30)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "actors", "run", str(target)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(marker, process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=20)
    assert (process.returncode, out, err) == (code, "", "aborted\n")


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
)
def test_a_signal_while_the_script_imports_actors_is_one_line(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    """Ctrl-C or SIGTERM while the ``actors`` script imports the library itself.

    A finder installed by ``sitecustomize`` stalls the import of
    ``actors._core`` (half-way through ``import actors``), so the signal
    lands there every time, before the command line's handlers exist.
    """
    script = Path(sys.executable).with_name("actors")
    assert script.exists(), (
        f"the console script is not installed next to {sys.executable}"
    )
    marker = tmp_path / "importing"
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.abc, pathlib, sys, time\n"
        "class Stall(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'actors._core':\n"
        f"            pathlib.Path({str(marker)!r}).write_text('x')\n"
        "            time.sleep(30)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Stall())\n"
    )
    process = subprocess.Popen(
        [str(script), "validate", "whatever.py:pipeline"],
        env={**_env(), "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(marker, process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=20)
    assert (process.returncode, out, err) == (code, "", "aborted\n")


def test_progress_shows_stopping_and_unresponsive_stages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After Ctrl-C a stage slow to stop is reported unresponsive, then cancelled.

    ``press`` sends SIGINT at 2 s; ``linger`` takes 3 s (shielded) to clean
    up, past the 1 s grace period, so it is named unresponsive at 3 s and
    cancelled at 5 s.
    """
    assert cli("run", f"{TARGETS}:slow_to_stop") == 130
    lines = capsys.readouterr().out.splitlines()
    # Both start at 0 in either order; trio does not promise one.
    assert sorted(lines[:2]) == [
        "   0.000s  linger  started",
        "   0.000s  press   started",
    ]
    # The kernel words the cancel reason; here only who ended how, and when.
    assert [line.split(" - ")[0] for line in lines[2:5]] == [
        "   2.000s  press   cancelled",
        "   3.000s  linger  unresponsive",
        "   5.000s  linger  cancelled",
    ]
    assert lines[3].endswith(
        " - did not stop within the grace period after cancellation"
    )


async def test_a_stopped_stage_is_never_shown_running() -> None:
    """Once the run is asked to stop, running stages show as stopping.

    A stage that starts or retries after that (an item of a fan-out, say)
    does not go back to running.
    """
    pipeline = PipelineDefinition(
        name="p", stages=[StageDefinition("a", _noop), StageDefinition("b", _noop)]
    )
    tracker = PlainProgress(pipeline, io.StringIO())
    tracker.views["a"].state = "running"
    tracker.stopping()
    assert [v.state for v in tracker.views.values()] == ["stopping", "waiting"]


async def _noop(value: object, context: object) -> None:
    return None


# --- the command line's own errors -------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "1" * 5000,
            "error: --input is not valid JSON: Exceeds the limit (4300 "
            "digits) for integer string conversion: value has 5000 digits\n",
        ),
        (
            "[" * 100_000 + "]" * 100_000,
            "error: --input is nested too deeply to read\n",
        ),
    ],
    ids=["huge-int", "deep-nesting"],
)
def test_input_json_python_cannot_hold_is_one_line(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 5,000-digit integer or deep nesting: one line and exit 2."""
    assert cli("run", f"{TARGETS}:ok", "--input", value) == 2
    assert capsys.readouterr().err == message


def test_input_file_with_invalid_utf8_is_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Invalid UTF-8 in ``--input-file`` (a path or stdin): one line, exit 2."""
    data = tmp_path / "input.json"
    data.write_bytes(b'"\xff"')
    assert cli("run", f"{TARGETS}:ok", "--input-file", str(data)) == 2
    assert capsys.readouterr().err == (
        f"error: --input-file {data} is not UTF-8: byte 1 cannot be decoded\n"
    )
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'"\xff"')))
    assert cli("run", f"{TARGETS}:ok", "--input-file", "-") == 2
    assert capsys.readouterr().err == (
        "error: --input-file - is not UTF-8: byte 1 cannot be decoded\n"
    )


@pytest.mark.parametrize("option", ["--log-file", "--graph"])
def test_unusable_output_paths_are_refused_before_the_run(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path in a missing directory, or a directory: one line, exit 2, no run."""
    missing = tmp_path / "no" / "such" / "file"
    assert cli("run", f"{TARGETS}:ok", option, str(missing)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {option} {missing}: ")
    assert err.count("\n") == 1
    assert cli("run", f"{TARGETS}:ok", option, str(tmp_path)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"error: {option} {tmp_path}: is a directory\n"


def test_a_failing_graph_write_keeps_the_summary_and_the_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--graph /dev/full``: the summary is printed, one error line, exit 0."""
    assert (
        cli(
            "run",
            f"{TARGETS}:ok",
            "--input",
            "1",
            "--no-progress",
            "--graph",
            "/dev/full",
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == (
        "pipeline 'ok' succeeded in 2.25 s; critical path: first -> second"
    )
    assert err == ("error: writing --graph /dev/full failed: No space left on device\n")


def test_a_full_disk_under_the_log_keeps_the_summary_and_the_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--log-file /dev/full``: the summary is printed, one error line, exit 1."""
    assert (
        cli(
            "run",
            f"{TARGETS}:failing",
            "--input",
            "1",
            "--no-progress",
            "--log-file",
            "/dev/full",
        )
        == 1
    )
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == (
        "pipeline 'failing' failed in 1.25 s; critical path: first -> broken"
    )
    assert err == (
        "error: writing the log to /dev/full failed: No space left on device\n"
    )


# --- what is printed ---------------------------------------------------------------


async def test_rich_title_and_caption_are_text_not_markup(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``[prod]`` in a pipeline name is shown, and ``[/]`` does not crash."""
    from rich.console import Console

    for name in ("etl [prod] v2", "bad [/] name"):
        pipeline = PipelineDefinition(name=name, stages=[StageDefinition("a", _noop)])
        result = await PipelineExecutor(log_events=False).execute(pipeline)
        console = Console(file=io.StringIO(), width=100, color_system=None)
        console.print(rich_summary(result))
        text = console.file.getvalue()  # type: ignore[attr-defined]  # a StringIO
        assert f"pipeline {name}" in text
        assert f"pipeline {name!r} succeeded in 0 ms" in text


async def test_terminal_escapes_in_ids_and_errors_are_shown_not_sent() -> None:
    """ESC, BEL and other control characters never reach the terminal raw."""
    evil = "a\x1b]52;c;ZXZpbA==\x07\x1b[2J"

    async def fail(value: object, context: object) -> None:
        raise RuntimeError(evil)

    pipeline = PipelineDefinition(name=evil, stages=[StageDefinition(evil, fail)])
    stream = io.StringIO()
    result = await PipelineExecutor(log_events=False).execute(
        pipeline, observers=[PlainProgress(pipeline, stream)]
    )
    shown = "a\\x1b]52;c;ZXZpbA==\\x07\\x1b[2J"
    for text in (stream.getvalue(), plain_summary(result)):
        assert "\x1b" not in text
        assert "\x07" not in text
        assert shown in text
    assert f"RuntimeError: {shown}" in plain_summary(result)


def test_a_context_typo_lists_the_context_factories(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--context`` with a typo lists contexts and factories, not pipelines."""
    assert cli("run", f"{TARGETS}:ok", "--context", ":make_contxt") == 2
    assert capsys.readouterr().err == (
        "error: :make_contxt: no attribute 'make_contxt'; context factories "
        "defined there: make_context, shared_context, sigterm_while_starting\n"
    )


def test_validate_and_graph_show_control_characters_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stage id with ESC sequences is printed escaped by validate and graph."""
    target = tmp_path / "evil.py"
    target.write_text(
        "from actors import PipelineDefinition, StageDefinition\n"
        "async def noop(value, context):\n    return None\n"
        "pipeline = PipelineDefinition(name='p\\x1b[2J', stages=[\n"
        "    StageDefinition('a\\x1b]52;c;eA==\\x07', noop)])\n"
    )
    assert cli("validate", str(target)) == 0
    assert cli("graph", str(target)) == 0
    assert cli("graph", str(target), "--format", "dot") == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\x07" not in out
    assert out.count("a\\x1b]52;c;eA==\\x07") == 3  # the mermaid label, DOT twice

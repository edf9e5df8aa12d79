"""Every example in examples/ runs, as a script's ``main`` and through the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import trio
import trio.testing

from actors import PipelineStatus, StageStatus
from actors._cli import main
from actors._cli._target import load_module

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
NAMES = [
    "audio_sequencer",
    "cpu_fan_out",
    "embedded_app",
    "fan_out",
    "llm_quota",
    "retries_and_timeouts",
    "streaming_tokens",
]


def example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` the way the command line does."""
    return load_module(str(EXAMPLES / f"{name}.py"))


def test_every_example_is_tested() -> None:
    """A new example must be added here (and so gets run by these tests)."""
    found = sorted(p.stem for p in EXAMPLES.glob("*.py"))
    assert [name for name in found if name != "log_analysis"] == NAMES


async def test_audio_sequencer_plans_every_group(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """The main example succeeds, retries rate limits and counts tokens exactly."""
    result = await example("audio_sequencer").main()
    assert result.success
    assert result.total_duration_ms == 1620.0
    attempts = {k: (r.status, r.attempts) for k, r in result.stage_results.items()}
    assert attempts == {
        "audio": (StageStatus.SUCCEEDED, 1),
        "profile": (StageStatus.SUCCEEDED, 1),
        "lyrics": (StageStatus.SUCCEEDED, 1),
        "macro": (StageStatus.SUCCEEDED, 2),
        "group_contexts": (StageStatus.SUCCEEDED, 1),
        "groups": (StageStatus.SUCCEEDED, 11),
    }
    assert result.metadata == {
        "audio_duration_ms": 184000,
        "llm_calls": 10,
        "tokens_used": 3667,
    }
    assert [plan["group"] for plan in result.outputs["groups"]] == [
        "roof",
        "windows",
        "tree",
        "arch",
        "chorus-lights",
        "garage",
        "path",
        "star",
    ]
    assert result.critical_path() == [
        "audio",
        "lyrics",
        "macro",
        "group_contexts",
        "groups",
    ]
    assert "success=True tokens=3667" in capsys.readouterr().out


async def test_audio_sequencer_skips_lyrics_for_an_instrumental(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without vocals the conditional lyrics stage is skipped and macro gets None."""
    result = await example("audio_sequencer").main("instrumental.wav")
    assert result.success
    assert result.stage_results["lyrics"].status is StageStatus.SKIPPED
    assert result.outputs["macro"]["sings_along"] is False
    assert result.total_duration_ms == 1500.0


async def test_audio_sequencer_survives_a_lyrics_failure(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lyrics is non-critical: when it fails, the show is planned without it."""
    module = example("audio_sequencer")

    async def broken(audio: object, context: object) -> None:
        raise RuntimeError("speech model unavailable")

    stages = [
        s.model_copy(update={"stage": broken}) if s.id == "lyrics" else s
        for s in module.pipeline.stages
    ]
    pipeline = module.pipeline.model_copy(update={"stages": tuple(stages)})
    from actors import PipelineExecutor

    result = await PipelineExecutor(log_events=False).execute(
        pipeline, None, module.make_context()
    )
    assert result.success
    assert result.failed_stages == ["lyrics"]
    assert result.outputs["macro"]["sings_along"] is False


async def test_fan_out_keeps_input_order(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ten pages, four at a time: outputs in page order, exact item percentiles."""
    result = await example("fan_out").main()
    assert result.outputs["thumbnails"] == [f"thumb-{n:02}.png" for n in range(1, 11)]
    profile = result.stage_results["thumbnails"].profile
    assert profile is not None
    assert (profile.items, profile.item_p50_ms, profile.item_p95_ms) == (10, 50, 80)
    assert result.total_duration_ms == 180.0


async def test_streaming_tokens_prints_tokens_and_answers_as_they_come(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both taps, with the executor's defaults: every token in time order, exactly."""
    result = await example("streaming_tokens").main()
    assert result.success
    assert result.total_duration_ms == 1240.0
    lines = capsys.readouterr().out.splitlines()
    # Each answer's progress lines grow a word at a time, then it is done.
    answers = result.outputs["answers"]
    for index, text in enumerate(answers):
        words = text.split()
        progress = [line for line in lines if line.startswith(f"  [{index}] ")]
        assert progress == [
            f"  [{index}] {' '.join(words[: n + 1])} ..." for n in range(len(words))
        ]
        done = lines.index(f"[{index}] done: {text}")
        assert lines.index(progress[-1]) < done
    # Items finish in order here (0 at 0.52 s, 1 at 0.87 s, 2 at 1.24 s), and
    # the tokens interleave by their times.
    assert [line for line in lines if "done:" in line] == [
        f"[{i}] done: {text}" for i, text in enumerate(answers)
    ]
    assert lines[:8] == [
        "  [0] no ...",
        "  [0] no task ...",
        "  [0] no task outlives ...",
        "  [1] each ...",
        "  [0] no task outlives its ...",
        "  [1] each item ...",
        "  [0] no task outlives its nursery ...",
        "[0] done: no task outlives its nursery",
    ]
    assert lines[-1] == "3 answers, 20 words"
    assert len(lines) == 20 + 3 + 1


async def test_llm_quota_has_no_429_with_the_limit(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shared limit paces every call: many 429s without it, none with it."""
    found = await example("llm_quota").main()
    assert found == {
        "without a limit": (40, 410, 31.0),
        "with the limit": (40, 0, 30.5),
    }
    assert capsys.readouterr().out == (
        "without a limit  40 answers, 410 x 429,  31.0 s\n"
        "with the limit   40 answers,   0 x 429,  30.5 s\n"
    )


def test_llm_quota_prints_only_its_own_output() -> None:
    """Run as a script with default logging: its two lines, nothing on stderr."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "llm_quota.py")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert (done.stdout.count("\n"), done.stderr) == (2, "")
    assert "0 x 429" in done.stdout.splitlines()[1]


async def test_retries_and_timeouts_follow_the_schedule(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Backoff doubles, a timed-out attempt is retried, a ValueError is not."""
    result = await example("retries_and_timeouts").main()
    assert result.success
    assert result.total_duration_ms == 750.0
    stages = result.stage_results
    assert (stages["quote"].attempts, stages["quote"].duration_ms) == (3, 450.0)
    assert stages["quote"].profile is not None
    assert stages["quote"].profile.backoff_ms == 300.0
    assert (stages["render"].attempts, stages["render"].duration_ms) == (2, 300.0)
    assert stages["translate"].status is StageStatus.FAILED
    assert stages["translate"].attempts == 1
    assert result.failed_stages == ["translate"]


async def test_embedded_app_runs_two_pipelines_and_meets_the_deadline(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ingest succeeds while the report is cancelled by its deadline token."""
    results = await example("embedded_app").main()
    assert results["ingest"].status is PipelineStatus.SUCCEEDED
    assert results["ingest"].total_duration_ms == 300.0
    assert results["ingest"].outputs["store"] == 6
    assert results["report"].status is PipelineStatus.CANCELLED
    assert results["report"].total_duration_ms == 500.0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "stages finished: {'ingest': 3, 'report': 1}; heartbeats: 6"
    )


async def test_embedded_app_stops_on_sigint(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGINT sets the application's stop event, which cancels both runs."""
    module = example("embedded_app")
    results = {}

    async def app() -> None:
        results.update(await module.main(report_deadline_s=10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(app)
        await trio.sleep(0.15)
        os.kill(os.getpid(), signal.SIGINT)
    assert results["ingest"].status is PipelineStatus.CANCELLED
    assert results["ingest"].total_duration_ms == 150.0
    assert results["report"].status is PipelineStatus.CANCELLED
    assert results["report"].total_duration_ms == 150.0
    assert "received SIGINT: stopping" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "summary"),
    [
        (
            [
                "examples/audio_sequencer.py:pipeline",
                "--context",
                "examples/audio_sequencer.py:make_context",
            ],
            "pipeline 'audio_sequencer' succeeded in 1.62 s; critical path: "
            "audio -> lyrics -> macro -> group_contexts -> groups",
        ),
        (
            ["examples/embedded_app.py"],
            "pipeline 'ingest' succeeded in 300 ms; critical path: "
            "fetch -> parse -> store",
        ),
        (
            ["examples/fan_out.py"],
            # album ends in the same instant as thumbnails: ties go to the
            # stage listed first, so the path stops at thumbnails.
            "pipeline 'fan_out' succeeded in 180 ms; critical path: "
            "pages -> thumbnails",
        ),
        (
            ["examples/retries_and_timeouts.py", "--input", '"ACME"'],
            "pipeline 'retries_and_timeouts' succeeded in 750 ms; critical path: "
            "quote -> render",
        ),
    ],
)
def test_each_example_runs_through_the_cli(
    argv: list[str], summary: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``actors run`` runs every example to success, with its exact makespan."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    assert main(["run", *argv, "--no-progress"], clock=clock) == 0
    assert capsys.readouterr().out.splitlines()[-1] == summary


def test_main_example_runs_as_the_readme_says() -> None:
    """The README's example command (through ``python -m actors``) succeeds."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "actors",
            "run",
            "examples/audio_sequencer.py:pipeline",
            "--context",
            "examples/audio_sequencer.py:make_context",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "pipeline 'audio_sequencer' succeeded" in done.stdout
    assert done.stderr == ""


def test_cpu_fan_out_runs_on_every_backend() -> None:
    """The CPU fan-out example runs inline, in threads, in processes and on Dask.

    As a script, so its worker processes can import its functions.
    """
    done = subprocess.run(
        [sys.executable, "examples/cpu_fan_out.py", "4", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "4 items of ~2 ms of pure-Python CPU work:"
    assert [line.split()[0] for line in lines[1:]] == [
        "inline",
        "thread",
        "process",
        "dask",
    ]
    assert lines[1].endswith(" 1.00x inline")


def test_readme_example_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's Python example runs as written (under a mock clock)."""
    import actors

    def run_on_mock_clock(
        pipeline: actors.PipelineDefinition, initial_input: object = None
    ) -> actors.PipelineResult:
        executor = actors.PipelineExecutor()
        clock = trio.testing.MockClock(autojump_threshold=0)
        return trio.run(executor.execute, pipeline, initial_input, clock=clock)

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.splitlines()) <= 40  # short enough to read at a glance
    monkeypatch.setattr(actors, "run", run_on_mock_clock)
    exec(compile(code, "README.md", "exec"), {})
    pages = [f"HTTPS://EXAMPLE.ORG/{n}" for n in range(5)]
    assert capsys.readouterr().out == f"True {pages}\n"


def test_cli_docs_show_the_real_output(capsys: pytest.CaptureFixture[str]) -> None:
    """The sample output in docs/cli.md is what ``actors run`` prints, line for line."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    argv = ["run", "examples/audio_sequencer.py", "--context", ":make_context"]
    assert main(argv, clock=clock) == 0
    printed = capsys.readouterr().out.splitlines()
    docs = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8").splitlines()
    progress = docs[docs.index("   0.000s  audio           started") :]
    progress = progress[: progress.index("   ...")]
    # Stages starting in the same instant may print in either order (trio
    # does not promise an order among tasks woken together); every line
    # carries its time, so comparing sorted lines still checks the timeline.
    assert sorted(printed[: len(progress)]) == sorted(progress)
    summary = docs[docs.index("stage           status     attempts  duration  note") :]
    summary = summary[: summary.index("```")]
    assert printed[-len(summary) :] == summary

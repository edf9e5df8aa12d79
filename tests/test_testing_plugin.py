"""The pytest plugin's fixtures, in a pytest of their own, with and without pytest-trio."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import actors

PLAIN = """
from actors import PipelineContext, PipelineDefinition, StageDefinition
from actors.testing import Recorder, returns, script


def pipeline():
    return PipelineDefinition(
        name="p", stages=[StageDefinition("a", script(returns(1, after=2)))]
    )


def test_actors_run(actors_run):
    done = actors_run(pipeline())
    assert done.timeline[-1] == "2.00 pipeline succeeded"
    assert actors_run.runs == [done]


def test_recorder(recorder):
    assert isinstance(recorder, Recorder)
    assert recorder.events == []


def test_fake_llm(actors_run, fake_llm):
    async def ask(value, context):
        return (await context.provider.complete("hello")).text

    fake_llm.reply("hello", "hi there")
    definition = PipelineDefinition(name="llm", stages=[StageDefinition("ask", ask)])
    done = actors_run(definition, context=PipelineContext(provider=fake_llm))
    assert done.result.outputs == {"ask": "hi there"}
    assert done.result.metadata["llm_calls"] == 1
"""

TRIO = """
import trio

from test_plain import pipeline


async def test_arun(actors_run, autojump_clock):
    done = await actors_run.arun(pipeline())
    assert trio.current_time() == 2
    assert done.result.success
"""


def _pytest(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(actors.__file__).parent.parent)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            # No "-p actors.testing._plugin": the installed package's pytest11
            # entry point loads it, as it does for users.
            *options,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("trio_plugin", [True, False], ids=["pytest-trio", "plain"])
def test_fixtures_work_with_and_without_pytest_trio(
    tmp_path: Path, trio_plugin: bool
) -> None:
    """actors_run, recorder and fake_llm work in plain tests, arun in trio tests."""
    (tmp_path / "test_plain.py").write_text(PLAIN, encoding="utf-8")
    ini = "[pytest]\nfilterwarnings = error\n"
    if trio_plugin:
        (tmp_path / "test_trio.py").write_text(TRIO, encoding="utf-8")
        ini += "trio_mode = true\n"
    (tmp_path / "pytest.ini").write_text(ini, encoding="utf-8")
    options = () if trio_plugin else ("-p", "no:trio")
    out = _pytest(tmp_path, *options)
    expected = "4 passed" if trio_plugin else "3 passed"
    assert expected in out.stdout, out.stdout + out.stderr
    assert out.returncode == 0

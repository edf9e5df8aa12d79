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
from actors.checkpoint import MemoryStore, RunInfo
from actors.testing import Recorder, faults, returns, returns_input, script


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


def chain():
    return PipelineDefinition(
        name="chain",
        stages=[
            StageDefinition("a", script(returns(1, after=1))),
            StageDefinition("b", script(returns_input(after=2)), inputs=["a"]),
        ],
    )


def test_memory_store_crash_and_resume(actors_run, memory_store):
    assert isinstance(memory_store, MemoryStore)
    assert memory_store.list_runs() == []
    crashed = actors_run(chain(), store=memory_store, faults=[faults.crash_at(2)])
    assert crashed.crashed_at == 2
    assert memory_store.get_run(crashed.run_id).status == "running"
    resumed = actors_run(chain(), store=memory_store, resume="latest")
    assert [c.stage for c in resumed.calls] == ["b"]
    assert resumed.timeline[-1] == "2.00 pipeline succeeded"


def test_memory_store_is_fresh_per_test(memory_store):
    assert memory_store.list_runs() == []
    memory_store.begin_run(RunInfo("r1", "chain", 0.0))
"""

TRIO = """
import trio

from test_plain import pipeline


async def test_arun(actors_run, autojump_clock):
    done = await actors_run.arun(pipeline())
    assert trio.current_time() == 2
    assert done.result.success


async def test_arun_with_memory_store(actors_run, memory_store, autojump_clock):
    first = await actors_run.arun(pipeline(), store=memory_store)
    again = await actors_run.arun(pipeline(), store=memory_store, resume=first.run_id)
    assert trio.current_time() == 2  # the resume restored a: no time passed
    assert again.calls == []
    assert again.result.outputs == {"a": 1}
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
    """actors_run, recorder, fake_llm and memory_store work in plain and trio tests."""
    (tmp_path / "test_plain.py").write_text(PLAIN, encoding="utf-8")
    ini = "[pytest]\nfilterwarnings = error\n"
    if trio_plugin:
        (tmp_path / "test_trio.py").write_text(TRIO, encoding="utf-8")
        ini += "trio_mode = true\n"
    (tmp_path / "pytest.ini").write_text(ini, encoding="utf-8")
    options = () if trio_plugin else ("-p", "no:trio")
    out = _pytest(tmp_path, *options)
    expected = "7 passed" if trio_plugin else "5 passed"
    assert expected in out.stdout, out.stdout + out.stderr
    assert out.returncode == 0

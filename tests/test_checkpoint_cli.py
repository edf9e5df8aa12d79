"""``actors runs list/show`` and ``actors store prune`` on a real store."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
)
from actors._checkpoint import RunInfo
from actors._cli._runs import main_runs, open_store, parse_duration
from actors.checkpoint import FileStore, SQLiteStore


def _pipeline(version: str) -> PipelineDefinition:
    async def load(value: int, context: PipelineContext) -> list[int]:
        return list(range(value))

    async def square(item: int, context: PipelineContext) -> int:
        return item * item

    return PipelineDefinition(
        name="cli",
        stages=[
            StageDefinition("load", load),
            StageDefinition(
                "square",
                square,
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["load"],
                version=version,
            ),
        ],
    )


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    code = main_runs(argv, out)
    return code, out.getvalue()


async def test_list_and_show_explain_what_ran_and_why(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """show names, per stage, what was restored and why the rest ran."""
    executor = PipelineExecutor(store=FileStore(tmp_path), log_events=False)
    first = await executor.execute(_pipeline("1"), 3)
    second = await executor.execute(_pipeline("2"), 4, resume="latest")
    code, text = _run(["runs", "list", "--store", str(tmp_path)])
    assert code == 0
    lines = text.splitlines()
    assert lines[0].split() == [
        "RUN",
        "PIPELINE",
        "STARTED",
        "(UTC)",
        "STATUS",
        "RESTORED",
        "RAN",
    ]
    assert [line.split()[0] for line in lines[1:]] == [first.run_id, second.run_id]
    # After the date and time: status, restored, ran (load and every item).
    assert [line.split()[-3:] for line in lines[1:]] == [
        ["succeeded", "0", "4"],
        ["succeeded", "0", "5"],
    ]
    code, text = _run(["runs", "show", "latest", "--store", str(tmp_path)])
    assert code == 0
    rows = [re.split(r"\s{2,}", line) for line in text.splitlines()]
    assert re.fullmatch(
        rf"run {second.run_id} of 'cli', started \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d "
        rf"UTC, succeeded, resumed from {first.run_id}",
        text.splitlines()[0],
    )
    assert rows[1:] == [
        ["STAGE", "RESTORED", "RAN", "WHY IT RAN"],
        ["load", "0", "1", "its input changed"],
        ["square", "0", "4", "the stage's version changed; no recorded success"],
    ]


def test_show_unknown_run_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown run id exits 2 with the error on stderr."""
    code, text = _run(["runs", "show", "nope", "--store", str(tmp_path)])
    assert (code, text) == (2, "")
    assert capsys.readouterr().err.startswith("error: no readable run 'nope'")


def test_prune_deletes_old_runs_only(tmp_path: Path) -> None:
    """store prune --older-than deletes what started earlier than that."""
    store = SQLiteStore(tmp_path / "s.db")
    store.begin_run(RunInfo("old", "p", 0.0))
    store.begin_run(RunInfo("new", "p", time.time()))
    code, text = _run(
        ["store", "prune", "--store", str(tmp_path / "s.db"), "--older-than", "7d"]
    )
    assert (code, text) == (0, "deleted 1 run(s)\n")
    assert [r.run_id for r in store.list_runs()] == ["new"]
    code, _ = _run(["store", "prune", "--store", str(tmp_path), "--older-than", "7x"])
    assert code == 2


def test_durations_and_store_kinds(tmp_path: Path) -> None:
    """Durations take s, m, h, d, w; .db files are SQLite, directories files."""
    assert [parse_duration(t) for t in ("90s", "30m", "12h", "7d", "2w", "1.5h")] == [
        90,
        1800,
        43200,
        604800,
        1209600,
        5400,
    ]
    with pytest.raises(ValueError, match=r"^invalid duration '7'; use a number"):
        parse_duration("7")
    assert isinstance(open_store(tmp_path / "x.db"), SQLiteStore)
    assert isinstance(open_store(tmp_path), FileStore)

"""``actors run --store/--resume``: a run journaled, then resumed, from the shell."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio.testing

from actors._cli import main

TARGETS = "tests/cli_targets.py"


def cli(*argv: str) -> int:
    return main(list(argv), clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_run_is_journaled_and_resumed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "store")
    assert (
        cli("run", f"{TARGETS}:ok", "--input", "1", "--no-progress", "--store", store)
        == 0
    )
    first = capsys.readouterr().out.splitlines()
    assert first[-1].startswith("pipeline 'ok' succeeded")
    assert cli("runs", "list", "--store", store) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 2  # the header and the one run
    assert (
        cli(
            "run",
            f"{TARGETS}:ok",
            "--input",
            "1",
            "--no-progress",
            "--store",
            store,
            "--resume",
            "latest",
        )
        == 0
    )
    resumed = capsys.readouterr().out.splitlines()
    # Every stage restored: none ran an attempt.
    rows = [line.split() for line in resumed[1:-1]]
    assert [row[0] for row in rows] == ["first", "second"]
    assert all(row[1] == "succeeded" and row[2] == "0" for row in rows)


def test_resume_needs_a_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("run", f"{TARGETS}:ok", "--no-progress", "--resume", "latest") == 2
    assert capsys.readouterr().err == (
        "error: --resume needs --store (where the run was journaled)\n"
    )


def test_an_unknown_run_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "store")
    code = cli(
        "run", f"{TARGETS}:ok", "--no-progress", "--store", store, "--resume", "x"
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no readable run 'x' in FileStore(")
    assert err.count("\n") == 1

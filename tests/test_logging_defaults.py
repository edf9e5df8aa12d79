"""A good guest: with nothing configured the library prints nothing unasked.

These tests run as a new user's program does: structlog unconfigured (the
suite's capturing fixture is undone), or in a fresh interpreter.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
import trio.testing

import actors._core._attempts
import actors.logging
from actors import (
    ExecutionPattern,
    LoggingObserver,
    PipelineDefinition,
    PipelineExecutor,
    RetryConfig,
    StageDefinition,
)

ROOT = Path(__file__).parent.parent


@pytest.fixture
def unconfigured() -> Iterator[None]:
    """structlog as a program that never configured it has it."""
    saved = structlog.get_config()
    contents = list(saved["processors"])
    structlog.reset_defaults()
    assert not structlog.is_configured()
    yield
    saved["processors"][:] = contents
    structlog.configure(**saved)


class Records(logging.Handler):
    """Keeps every record of the ``actors`` logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self) -> list[str]:
        return [record.actors["event"] for record in self.records]  # type: ignore[attr-defined]  # our documented attribute


@pytest.fixture
def records() -> Iterator[Records]:
    logger = logging.getLogger("actors")
    handler = Records()
    saved = logger.level
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(saved)


async def _ok(value: Any, ctx: Any) -> Any:
    await trio.sleep(1)
    return value


async def _boom(value: Any, ctx: Any) -> Any:
    await trio.sleep(1)
    missing: Any = None
    return "a" in missing  # the stage's own bug


def _pipeline() -> PipelineDefinition:
    return PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("a", _ok),
            StageDefinition(
                "items",
                _ok,
                inputs=["a"],
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=2,
            ),
        ],
    )


SCRIPT = """
import trio
from actors import ExecutionPattern, PipelineDefinition, StageDefinition, run

async def ok(x, ctx):
    await trio.sleep(0)
    return x

async def boom(x, ctx):
    return "a" in None

print(run(PipelineDefinition(name="p", stages=[
    StageDefinition("a", ok),
    StageDefinition("b", ok, inputs=["a"], pattern=ExecutionPattern.FAN_OUT),
]), [1, 2, 3]).outputs["b"])
print(run(PipelineDefinition(name="q", stages=[StageDefinition("c", boom)])).success)
"""


def test_a_new_users_script_prints_only_its_own_output() -> None:
    """Nothing on stdout but the script's; only the failure, with its traceback, on stderr."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    assert done.stdout == "[1, 2, 3]\nFalse\n"
    err = done.stderr.splitlines()
    assert err[0].startswith("stage_failed stage_id='c' status='failed' attempts=1")
    assert "error=\"TypeError: argument of type 'NoneType' is not iterable\"" in err[0]
    assert err[1] == "Traceback (most recent call last):"
    assert "line 10, in boom" in done.stderr  # the stage's own frame
    assert "_attempts.py" not in done.stderr  # the library's frames trimmed
    assert err[-1].startswith("pipeline_finished status='failed' success=False")
    assert not any("stage_started" in line or "succeeded" in line for line in err)


def test_basic_config_decides_as_in_the_original_framework() -> None:
    """``logging.basicConfig(level=INFO)`` shows info events, on its own handler."""
    script = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout, "
        "format='%(levelname)s %(name)s %(message)s')\n" + SCRIPT
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    lines = done.stdout.splitlines()
    assert lines[0].startswith("INFO actors pipeline_started stages=['a', 'b']")
    assert "INFO actors stage_succeeded stage_id='a'" in done.stdout
    assert "item_started" not in done.stdout  # debug, and INFO is the level
    assert "ERROR actors stage_failed stage_id='c'" in done.stdout
    assert done.stderr == ""


@pytest.mark.usefixtures("unconfigured")
async def test_stdlib_records_carry_the_fields(
    autojump_clock: trio.testing.MockClock, records: Records
) -> None:
    logging.getLogger("actors").setLevel(logging.DEBUG)
    result = await PipelineExecutor().execute(_pipeline(), [1, 2])
    assert result.success
    assert records.events() == [
        "pipeline_started",
        "stage_started",
        "stage_succeeded",
        "stage_started",
        "item_started",
        "item_started",
        "item_succeeded",
        "item_succeeded",
        "stage_succeeded",
        "pipeline_finished",
    ]
    finished = records.records[2]
    assert finished.levelno == logging.INFO
    assert finished.actors["stage_id"] == "a"  # type: ignore[attr-defined]
    assert finished.actors["duration_ms"] == 1000.0  # type: ignore[attr-defined]
    assert finished.getMessage().startswith("stage_succeeded stage_id='a'")


@pytest.mark.usefixtures("unconfigured")
async def test_set_level_filters_the_library(
    autojump_clock: trio.testing.MockClock, records: Records
) -> None:
    logging.getLogger("actors").setLevel(logging.ERROR)
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "a",
                _boom,
                retry_config=RetryConfig(max_attempts=2, initial_delay_ms=10),
            )
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    assert not result.success
    # The retry (a warning) is filtered; the failure and the run's end are not.
    assert records.events() == ["stage_failed", "pipeline_finished"]
    failed = records.records[0]
    assert failed.exc_info is not None
    assert failed.exc_info[0] is TypeError


@pytest.mark.usefixtures("unconfigured")
async def test_an_event_nobody_reads_is_never_built(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At the default WARNING level no start event is built, not even for items."""
    built = 0
    real = actors.StageStarted

    def counting(**fields: Any) -> Any:
        nonlocal built
        built += 1
        return real(**fields)

    monkeypatch.setattr(actors._core._attempts, "StageStarted", counting)
    logging.getLogger("actors").setLevel(logging.NOTSET)
    assert (await PipelineExecutor().execute(_pipeline(), list(range(100)))).success
    assert built == 0
    logging.getLogger("actors").setLevel(logging.DEBUG)
    await PipelineExecutor().execute(_pipeline(), list(range(100)))
    assert built == 1 + 100  # stage a, then every item attempt


@pytest.mark.usefixtures("unconfigured")
def test_subscriptions_follow_the_enabled_levels() -> None:
    logger = logging.getLogger("actors")
    saved = logger.level
    try:
        logger.setLevel(logging.WARNING)
        assert LoggingObserver()._actors_subscribe() == {
            "stage_retrying",
            "stage_finished",
            "stage_unresponsive",
            "limit_paused",
            "offload_orphaned",
            "pipeline_finished",
            "checkpoint_skipped",
            "checkpoint_corrupt",
            "checkpoint_failed",
        }
        logger.setLevel(logging.CRITICAL)
        assert LoggingObserver()._actors_subscribe() == set()
    finally:
        logger.setLevel(saved)


def test_structlog_filtering_is_respected(restore_structlog: None) -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    assert LoggingObserver()._actors_subscribe() == {
        "stage_retrying",
        "stage_finished",
        "stage_unresponsive",
        "limit_paused",
        "offload_orphaned",
        "pipeline_finished",
        "checkpoint_skipped",
        "checkpoint_corrupt",
        "checkpoint_failed",
    }


async def test_configure_json_renders_a_failure_as_a_structured_exception(
    autojump_clock: trio.testing.MockClock, restore_structlog: None
) -> None:
    out = io.StringIO()
    actors.logging.configure_json(out)
    pipeline = PipelineDefinition(name="p", stages=[StageDefinition("a", _boom)])
    await PipelineExecutor().execute(pipeline)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    (failed,) = [line for line in lines if line["event"] == "stage_failed"]
    (frames,) = [e["frames"] for e in failed["exception"]]
    assert frames[0]["name"] == "_boom"  # the stage's own frame first
    assert failed["exception"][0]["exc_type"] == "TypeError"

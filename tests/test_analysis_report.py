"""The HTML report, rendered by a real browser (Debian's headless chromium).

The page's own script checks its layout and writes what it found into
``<body data-check=...>``; ``--dump-dom`` shows the page after the script
ran. chromium is a test dependency (``.ci/run`` installs it): without it
these tests fail, they are not skipped.
"""

from __future__ import annotations

import html
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
import trio.testing

import actors.logging
from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    RetryConfig,
    StageDefinition,
)
from actors._analysis._html import nice_step
from actors.analysis import RunRecord, parse_log, render_timeline

CHROMIUM = Path("/usr/bin/chromium")


class _Flaky:
    """Fails its first call with a ConnectionError."""

    def __init__(self) -> None:
        self.failed = False

    async def __call__(self, value: Any, context: PipelineContext[Any]) -> list[int]:
        await trio.sleep(0.2)
        if not self.failed:
            self.failed = True
            raise ConnectionError("connection reset by peer")
        return [120, 80, 200, 90, 150, 60, 110, 70]


async def _parse(size: int, context: PipelineContext[Any]) -> int:
    await trio.sleep(size / 1000)
    if size == 60:
        raise ValueError(f"page of {size} KB: unclosed <form> tag")
    return size


async def _quick(value: Any, context: PipelineContext[Any]) -> str:
    await trio.sleep(0.15)
    return "ok"


def crawl_report() -> RunRecord:
    """A logged run with a retry, a fan-out of 8 items 3 at a time, a failed
    item (so a traceback), a skipped and a cancelled stage."""
    pipeline = PipelineDefinition(
        name="crawler",
        stages=[
            StageDefinition(
                "fetch",
                _Flaky(),
                retry_config=RetryConfig(max_attempts=2, initial_delay_ms=100),
            ),
            StageDefinition(
                "parse",
                _parse,
                inputs=["fetch"],
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=3,
            ),
            StageDefinition("robots", _quick),
            StageDefinition(
                "thumbnails", _quick, inputs=["robots"], condition=lambda _: False
            ),
            StageDefinition("index", _quick, inputs=["parse", "robots"]),
        ],
    )
    stream = io.StringIO()
    saved = structlog.get_config()
    actors.logging.configure_json(stream, level="debug")
    try:
        trio.run(
            PipelineExecutor().execute,
            pipeline,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
    finally:
        structlog.configure(**saved)
    return parse_log(stream.getvalue().splitlines()).runs[0]


def _chromium(*args: str) -> str:
    assert CHROMIUM.exists(), (
        "the HTML report is checked in Debian's chromium: apt-get install chromium"
    )
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def test_the_report_renders_in_a_browser_without_script_errors(
    tmp_path: Path,
) -> None:
    """Every bar sits inside its track with hover details; axis, legend, items
    at once, the failure's traceback and one title are on the page."""
    run = crawl_report()
    page = tmp_path / "report.html"
    page.write_text(render_timeline(run, "html"), encoding="utf-8")
    dom = _chromium("--dump-dom", page.as_uri())
    assert not re.search(r"<html[^>]* data-errors=", dom)
    found = re.search(r'<body data-check="([^"]*)"', dom)
    assert found is not None, dom[:2000]
    started = sum(1 for s in run.stages.values() if s.started_at_ms is not None)
    assert run.duration_ms is not None
    ticks = int(run.duration_ms // nice_step(run.duration_ms)) + 1
    assert json.loads(html.unescape(found.group(1))) == {
        "bars": started,
        "laid_out": started,
        "tips": started,
        "ticks": ticks,
        "ticks_ordered": True,
        "legend": 10,
        "concurrency": 1,
        "failures": 1,
        "titles": 1,
    }


def test_a_script_error_would_be_seen(tmp_path: Path) -> None:
    """The check above can fail: a page whose script throws says so in the DOM."""
    page = tmp_path / "broken.html"
    report = render_timeline(crawl_report(), "html")
    page.write_text(
        report.replace("(function () {", "(function () { null.boom;", 1),
        encoding="utf-8",
    )
    dom = _chromium("--dump-dom", page.as_uri())
    assert re.search(r'<html lang="en" data-errors="[^"]*TypeError', dom)
    assert "<body data-check=" not in dom


def test_the_report_is_one_self_contained_file() -> None:
    """No network: nothing is linked or loaded, the script and style are inline."""
    report = render_timeline(crawl_report(), "html")
    assert not re.search(
        r"<(link|img|iframe)\b|\bsrc=|\burl\(|https?://|@import", report
    )
    assert report.count("<h1>") == 1


def test_the_failed_stage_shows_its_error_and_traceback() -> None:
    """The failure section names the stage and error, then its own frames."""
    report = render_timeline(crawl_report(), "html")
    assert (
        '<div class="failure"><h2>parse failed: item 5: ValueError: page of 60 KB: '
        "unclosed &lt;form&gt; tag</h2><pre>Traceback (most recent call last):\n"
    ) in report
    assert ", in _parse\nValueError: page of 60 KB" in report


@pytest.mark.parametrize("extent", [1.0, 7.0, 530.0, 3800.0, 61_000.0, 1e9])
def test_ticks_are_round_numbers(extent: float) -> None:
    """Between 4 and 9 ticks at 1, 2 or 5 times a power of ten."""
    step = nice_step(extent)
    assert 4 <= extent // step + 1 <= 9
    mantissa = step / 10 ** int(f"{step:e}".split("e")[1])
    assert round(mantissa, 9) in (1.0, 2.0, 5.0)

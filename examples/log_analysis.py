"""From a run's JSON log to a summary and a timeline.

An application logs its pipeline runs as JSON lines (one call to
:func:`actors.logging.configure_json` at start-up); later, someone asks what
happened. This example runs a small crawler pipeline twice, once cleanly and
once with a page that cannot be parsed, then reads the log back with
:mod:`actors.analysis` and prints a summary of both runs and the timeline of
the first::

    fetch (retried) -> parse (fan-out, 2 at a time) -> index
    robots ----------> thumbnails (skipped: disabled) -/

The same reports come from the command line::

    actors logs summary runs.jsonl
    actors logs timeline runs.jsonl --run <RUN_ID> --format html > run.html

Run it with ``python examples/log_analysis.py`` (about one second).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import structlog
import trio

import actors.logging
from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    RetryConfig,
    StageDefinition,
)
from actors.analysis import LogReport, read_log, render_summary, render_timeline

PAGES = ["/", "/about", "/blog", "/contact"]


class FlakyNetwork:
    """Fails the first *failures* fetches with a ConnectionError."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def fetch(self, pages: list[str], context: PipelineContext[Any]) -> list[str]:
        """Download every page (simulated: 100 ms)."""
        await trio.sleep(0.1)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("connection reset by peer")
        return [f"<html>{page}</html>" for page in pages]


async def parse(html: str, context: PipelineContext[Any]) -> str:
    """Parse one page (simulated: 50 ms per 10 characters)."""
    await trio.sleep(len(html) / 200)
    if "contact" in html and context.get_state("broken_contact_page"):
        raise ValueError("unclosed <form> tag")
    return html.removeprefix("<html>").removesuffix("</html>")


async def robots(value: Any, context: PipelineContext[Any]) -> bool:
    """Read robots.txt (simulated: 30 ms)."""
    await trio.sleep(0.03)
    return True


async def thumbnails(allowed: bool, context: PipelineContext[Any]) -> list[str]:
    """Render thumbnails; disabled in this example, so never called."""
    raise NotImplementedError


async def index(inputs: dict[str, Any], context: PipelineContext[Any]) -> int:
    """Index the parsed pages (simulated: 80 ms)."""
    await trio.sleep(0.08)
    return len(inputs["parse"])


def crawler(network: FlakyNetwork) -> PipelineDefinition:
    """The crawler pipeline, fetching through *network*."""
    return PipelineDefinition(
        name="crawler",
        stages=[
            StageDefinition(
                "fetch",
                network.fetch,
                retry_config=RetryConfig(max_attempts=3, initial_delay_ms=50),
            ),
            StageDefinition(
                "parse",
                parse,
                inputs=["fetch"],
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=2,
            ),
            StageDefinition("robots", robots),
            StageDefinition(
                "thumbnails",
                thumbnails,
                inputs=["robots"],
                pattern=ExecutionPattern.CONDITIONAL,
                condition=lambda context: bool(context.get_state("thumbnails")),
            ),
            StageDefinition("index", index, inputs=["parse", "thumbnails"]),
        ],
    )


async def crawl_twice(log_path: Path) -> None:
    """Run the crawler twice with JSON logging to *log_path*."""
    actors.logging.configure_json(log_path, level="debug")
    log = structlog.get_logger("crawler-app")
    log.info("app_started", pages=len(PAGES))  # the application's own event
    executor = PipelineExecutor()
    await executor.execute(crawler(FlakyNetwork(failures=1)), PAGES)
    broken = PipelineContext[None](state={"broken_contact_page": True})
    await executor.execute(crawler(FlakyNetwork(failures=0)), PAGES, broken)
    log.info("app_stopped")
    actors.logging.configure_console()  # closes the log file


async def main() -> LogReport:
    """Crawl twice, then print the summary and the first run's timeline."""
    with tempfile.TemporaryDirectory() as directory:
        log_path = Path(directory) / "runs.jsonl"
        await crawl_twice(log_path)
        report = read_log(log_path)
    print(render_summary(report.model_copy(update={"source": "runs.jsonl"})))
    print(render_timeline(report.runs[0], width=50), end="")
    return report


if __name__ == "__main__":
    trio.run(main)

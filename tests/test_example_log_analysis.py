"""examples/log_analysis.py runs, and tells the story of its two runs exactly."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import trio
import trio.testing

from actors import PipelineStatus, StageStatus

EXAMPLE = Path(__file__).parent.parent / "examples" / "log_analysis.py"


def load_example() -> ModuleType:
    """Import the example from its file."""
    spec = importlib.util.spec_from_file_location("log_analysis_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("restore_structlog")
async def test_example_prints_the_summary_and_timeline(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example's report and printout match the simulated schedule exactly.

    Run 1: fetch fails once (100 ms), backs off 50 ms, succeeds at 250 ms;
    parse runs items of 70, 95, 90 and 105 ms two at a time (items 2 and 3
    wait 70 and 95 ms for a slot) until 450 ms; index runs until 530 ms.
    Run 2: the fourth page fails to parse at 300 ms; index is cancelled.
    """
    report = await load_example().main()
    first, second = report.runs
    assert (report.other, report.malformed, report.incomplete) == (2, 0, [])
    assert (first.status, first.duration_ms) == (PipelineStatus.SUCCEEDED, 530.0)
    assert (second.status, second.duration_ms) == (PipelineStatus.FAILED, 300.0)
    parse = first.stages["parse"]
    assert (parse.queued_ms, parse.running_ms, parse.duration_ms) == (
        165.0,
        360.0,
        200.0,
    )
    assert second.stages["parse"].error == "item 3: ValueError: unclosed <form> tag"
    assert second.stages["index"].status is StageStatus.CANCELLED
    assert (first.critical_path, second.critical_path) == (
        ["fetch", "parse", "index"],
        ["fetch", "parse"],
    )

    out = capsys.readouterr().out
    out = out.replace(first.run_id, "RUN1").replace(second.run_id, "RUN2")
    out = re.sub(r"  \d{4}-\d\d-\d\dT[\d:.]+Z$", "  TIME", out, flags=re.MULTILINE)
    # The traceback names the example's own frame, where it raises.
    source = EXAMPLE.read_text().splitlines()
    RAISES = 1 + next(n for n, text in enumerate(source) if "raise ValueError" in text)
    assert out.splitlines() == [
        "log runs.jsonl: 2 runs; 41 lines: 39 run events, 2 other, 0 malformed",
        "",
        "run RUN1  pipeline 'crawler'  succeeded in 530 ms  TIME",
        "  5 stages: 4 succeeded, 1 skipped",
        "  stage       status     attempts    wait  queue     run  backoff  duration",
        "  fetch       succeeded         2    0 ms   0 ms  200 ms    50 ms    250 ms",
        "  parse       succeeded         4  250 ms      -       -        -    200 ms",
        "  robots      succeeded         1    0 ms   0 ms   30 ms     0 ms     30 ms",
        "  thumbnails  skipped           0   30 ms   0 ms    0 ms     0 ms      0 ms",
        "  index       succeeded         1  450 ms   0 ms   80 ms     0 ms     80 ms",
        "  items: parse: 4 items, median 90 ms, p95 105 ms, max 105 ms, 1.8 at a time on average, 2 at most",
        "  slowest: fetch 250 ms, parse 200 ms, index 80 ms",
        "  retries: fetch: 1 retry; top errors: ConnectionError x 1",
        "  critical path: fetch -> parse -> index",
        "",
        "run RUN2  pipeline 'crawler'  failed in 300 ms  TIME",
        "  5 stages: 2 succeeded, 1 failed, 1 skipped, 1 cancelled",
        "  stage       status     attempts    wait  queue     run  backoff  duration",
        "  fetch       succeeded         1    0 ms   0 ms  100 ms     0 ms    100 ms",
        "  parse       failed            4  100 ms      -       -        -    200 ms",
        "  robots      succeeded         1    0 ms   0 ms   30 ms     0 ms     30 ms",
        "  thumbnails  skipped           0   30 ms   0 ms    0 ms     0 ms      0 ms",
        "  index       cancelled         0       -   0 ms    0 ms     0 ms      0 ms",
        "  items: parse: 4 items, median 90 ms, p95 105 ms, max 105 ms, 1.8 at a time on average, 2 at most",
        "  slowest: parse 200 ms, fetch 100 ms, robots 30 ms",
        "  error: parse: item 3: ValueError: unclosed <form> tag",
        "    Traceback (most recent call last):",
        f'      File "{EXAMPLE}", line {RAISES}, in parse',
        "    ValueError: unclosed <form> tag",
        "  cancelled: index (cancelled: stage 'parse' failed)",
        "  critical path: fetch -> parse",
        "",
        "run RUN1  pipeline 'crawler'  succeeded in 530 ms  TIME",
        "            0 ms                                          530 ms",
        "fetch       |#########~~~~~~#########                          | succeeded 0 ms to 250 ms (2 attempts) *",
        "parse       |                       ####################       | succeeded 250 ms to 450 ms (4 attempts) *",
        "robots      |###                                               | succeeded 0 ms to 30 ms",
        "thumbnails  |  o                                               | skipped",
        "index       |                                          ########| succeeded 450 ms to 530 ms *",
        "legend: # running  ~ backoff  . queued  o skipped  x never ran  > still running (log ends)  * critical path",
    ]

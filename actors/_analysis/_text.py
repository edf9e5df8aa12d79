"""Runs as plain text: the summary, the critical path and the text timeline."""

from __future__ import annotations

import math
from collections.abc import Iterable

from .._results import StageStatus
from .._util import format_ms, plain_table
from ._records import LogReport, RunRecord, StageRecord

_LEGEND = (
    "legend: # running  ~ backoff  . queued  o skipped  x never ran  "
    "> still running (log ends)"
)


def render_summary(report: LogReport) -> str:
    """Return a plain-text summary of every run in *report*.

    One block per run: its status and makespan, a table of stages (status,
    attempts, and wait / queue / run / backoff / duration), the slowest
    stages, every retry and error, and the critical path.
    """
    lines = [_overview(report)]
    for run in report.runs:
        lines += ["", *_run_summary(run)]
    return "\n".join(lines) + "\n"


def render_critical_path(runs: LogReport | Iterable[RunRecord]) -> str:
    """Return the critical path of each run: its stages, their times, the total."""
    if isinstance(runs, LogReport):
        runs = runs.runs
    blocks: list[str] = []
    for run in runs:
        block = [_heading(run)]
        stages = [run.stages[s] for s in run.critical_path]
        rows = [
            [
                stage.stage_id,
                stage.state,
                format_ms(stage.started_at_ms),
                format_ms(stage.finished_at_ms),
                format_ms(stage.duration_ms),
            ]
            for stage in stages
        ]
        headers = ["stage", "status", "start", "end", "duration"]
        block += plain_table(headers, rows, right=range(2, 5), indent="  ")
        path = " -> ".join(run.critical_path) or "(no stage finished)"
        extent = run.duration_ms if run.complete else run.last_event_ms
        note = "" if run.complete else " (incomplete: what finished so far)"
        block.append(f"  path: {path}; makespan {format_ms(extent)}{note}")
        blocks.append("\n".join(block))
    return "\n\n".join(blocks) + "\n" if blocks else "no pipeline runs in the log\n"


# --- summary -------------------------------------------------------------------


def _overview(report: LogReport) -> str:
    source = f"log {report.source}: " if report.source else "log: "
    incomplete = len(report.incomplete)
    text = (
        f"{source}{_plural(len(report.runs), 'run')}"
        f"{f', {incomplete} incomplete' if incomplete else ''}; "
        f"{_plural(report.lines, 'line')}: {report.events} run events, "
        f"{report.other} other, {report.malformed} malformed"
    )
    if report.malformed:
        shown = ", ".join(str(n) for n in report.malformed_lines[:10])
        more = ", ..." if report.malformed > 10 else ""
        noun = "line" if report.malformed == 1 else "lines"
        text += f" (skipped: {noun} {shown}{more})"
    return text


def _heading(run: RunRecord) -> str:
    if run.complete:
        how = f"{run.state} in {format_ms(run.duration_ms)}"
    else:
        how = (
            f"INCOMPLETE: no pipeline_finished (crashed or still running); "
            f"log ends at {format_ms(run.last_event_ms)}"
        )
    when = f"  {run.timestamp}" if run.timestamp else ""
    return f"run {run.run_id}  pipeline {run.pipeline!r}  {how}{when}"


def _run_summary(run: RunRecord) -> list[str]:
    lines = [_heading(run)]
    counts = ", ".join(f"{n} {state}" for state, n in run.counts.items() if n)
    lines.append(f"  {_plural(len(run.stages), 'stage')}: {counts or 'none'}")
    rows = [
        [
            s.stage_id,
            s.state,
            str(s.attempts),
            format_ms(s.wait_ms),
            format_ms(s.queued_ms if s.status else None),
            format_ms(s.running_ms if s.status else None),
            format_ms(s.backoff_ms if s.status else None),
            format_ms(s.duration_ms if s.status else None),
            "" if s.items is None else _items(s),
        ]
        for s in run.stages.values()
    ]
    headers = ["stage", "status", "attempts", "wait", "queue", "run", "backoff"]
    headers += ["duration", "items (p50/p95/max)"]
    lines += plain_table(headers, rows, right=range(2, 8), indent="  ")
    slowest = run.slowest()
    if slowest:
        text = ", ".join(f"{s.stage_id} {format_ms(s.duration_ms)}" for s in slowest)
        lines.append(f"  slowest: {text}")
    for stage in run.stages.values():
        for retry in stage.retries:
            item = "" if retry.item_index is None else f" item {retry.item_index}"
            lines.append(
                f"  retry: {stage.stage_id}{item} attempt {retry.attempt} at "
                f"{format_ms(retry.at_ms)}, next after {format_ms(retry.delay_ms)}: "
                f"{retry.error}"
            )
    for stage in run.stages.values():
        if stage.error is not None and stage.status is StageStatus.FAILED:
            lines.append(f"  error: {stage.stage_id}: {stage.error}")
    cancelled = [
        s.stage_id for s in run.stages.values() if s.status is StageStatus.CANCELLED
    ]
    if cancelled:
        first = run.stages[cancelled[0]].error
        lines.append(f"  cancelled: {', '.join(cancelled)} ({first})")
    if run.unresponsive:
        lines.append(f"  unresponsive after cancel: {', '.join(run.unresponsive)}")
    if run.observer_failures:
        lines.append(f"  observers disabled after raising: {run.observer_failures}")
    path = " -> ".join(run.critical_path) or "(no stage finished)"
    lines.append(f"  critical path: {path}")
    return lines


def _items(stage: StageRecord) -> str:
    figures = (stage.item_p50_ms, stage.item_p95_ms, stage.item_max_ms)
    if figures[0] is None:
        return str(stage.items)
    return f"{stage.items} ({'/'.join(format_ms(f) for f in figures)})"


# --- timeline: text ------------------------------------------------------------


def run_extent(run: RunRecord) -> float:
    """Return the span a chart of *run* covers, in ms (never 0)."""
    extent = run.duration_ms if run.duration_ms is not None else run.last_event_ms
    return extent or 1.0


def timeline_text(run: RunRecord, width: int) -> str:
    extent = run_extent(run)

    def col(ms: float) -> int:
        """The cell holding the instant *ms*."""
        return min(width - 1, max(0, int(ms / extent * width)))

    def cells(begin: float, stop: float) -> range:
        """The cells an interval touches (at least one)."""
        first = col(begin)
        last = math.ceil(round(stop / extent * width, 9))
        return range(first, min(width, max(first + 1, last)))

    label = max([5, *(len(s) for s in run.stages)])
    end_label = f"{format_ms(extent)}"
    lines = [
        _heading(run),
        f"{'':{label}}  0 ms{end_label:>{width - 2}}",
    ]
    for stage in run.stages.values():
        bar = [" "] * width
        start, end = stage.started_at_ms, stage.finished_at_ms
        if start is not None:
            stop = end if end is not None else extent
            for c in cells(start, stop):
                bar[c] = "#"
            ready = stage.ready_at_ms
            if ready is not None:
                # Only the cells before the start: a sub-cell wait shows nothing.
                for c in range(col(ready), col(start)):
                    bar[c] = "."
            for retry in stage.retries:
                if retry.item_index is None:
                    for c in cells(retry.at_ms, retry.at_ms + retry.delay_ms):
                        bar[c] = "~"
            if end is None:
                bar[col(stop)] = ">"
        elif end is not None:
            bar[col(end)] = "o" if stage.status is StageStatus.SKIPPED else "x"
        span = (
            f"{format_ms(start)} to {format_ms(end)}"
            if start is not None and end is not None
            else ""
        )
        detail = " ".join(
            part
            for part in (
                stage.state,
                span,
                f"({stage.attempts} attempts)" if stage.attempts > 1 else "",
                "*" if stage.stage_id in run.critical_path else "",
            )
            if part
        )
        lines.append(f"{stage.stage_id:{label}}  |{''.join(bar)}| {detail}")
    lines.append(f"{_LEGEND}  * critical path")
    return "\n".join(lines) + "\n"


def run_title(run: RunRecord) -> str:
    """Return one line naming the run and how it ended (charts' title)."""
    if run.complete:
        how = f"{run.state} in {format_ms(run.duration_ms)}"
    else:
        how = f"incomplete, log ends at {format_ms(run.last_event_ms)}"
    return f"pipeline {run.pipeline}, run {run.run_id[:12]}, {how}"


# --- helpers -------------------------------------------------------------------


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"

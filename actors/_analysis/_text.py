"""Runs as plain text: the summary, the critical path and the text timeline."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from .._results import StageStatus
from .._util import format_ms, plain_table, printable
from ._records import MAX_LINE_CHARS, LogReport, RunRecord, StageRecord

_LEGEND = (
    "legend: # running  ~ backoff  . queued  o skipped  x never ran  "
    "> still running (log ends)"
)


MAX_WIDTH = 1000
"""The widest text timeline drawn; a wider one is drawn this wide."""


def render_summary(report: LogReport, *, verbose: bool = False) -> str:
    """Return a plain-text summary of every run in *report*.

    One block per run: its status and makespan, a table of stages (status,
    attempts, wait / queue / run / backoff / duration), each fan-out's items
    (count, median and p95 time, how many ran at a time), the slowest
    stages, retries (aggregated per stage: how many, on how many items, the
    commonest errors; every one with *verbose*), each failure with its
    traceback when the log carries one, and the critical path. Control
    characters from the log are shown escaped, never sent to a terminal.
    """
    lines = [_overview(report)]
    for run in report.runs:
        lines += ["", *_run_summary(run, verbose=verbose)]
    return _visible(lines)


def render_critical_path(runs: LogReport | Iterable[RunRecord]) -> str:
    """Return the critical path of each run: its stages, their times, the total."""
    if isinstance(runs, LogReport):
        runs = runs.runs
    lines: list[str] = []
    for run in runs:
        if lines:
            lines.append("")
        lines.append(_heading(run))
        stages = [run.stages[s] for s in run.critical_path]
        rows = [
            [
                printable(stage.stage_id),
                stage.state,
                format_ms(stage.started_at_ms),
                format_ms(stage.finished_at_ms),
                format_ms(stage.duration_ms),
            ]
            for stage in stages
        ]
        headers = ["stage", "status", "start", "end", "duration"]
        lines += plain_table(headers, rows, right=range(2, 5), indent="  ")
        path = " -> ".join(run.critical_path) or "(no stage finished)"
        extent = run.duration_ms if run.complete else run.last_event_ms
        note = "" if run.complete else " (incomplete: what finished so far)"
        lines.append(f"  path: {path}; makespan {format_ms(extent)}{note}")
    return _visible(lines) if lines else "no pipeline runs in the log\n"


def _visible(lines: list[str]) -> str:
    # Each line on its own: a newline inside a field is shown as \n, and
    # escapes never reach the terminal.
    return "\n".join(printable(line) for line in lines) + "\n"


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
    if report.long_lines:
        text += (
            f"; {_plural(report.long_lines, 'line')} over "
            f"{MAX_LINE_CHARS:,} characters skipped unread"
        )
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


def _run_summary(run: RunRecord, *, verbose: bool) -> list[str]:
    lines = [_heading(run)]
    lines += (f"  problem: {problem}" for problem in run.problems)
    counts = ", ".join(f"{n} {state}" for state, n in run.counts.items() if n)
    lines.append(f"  {_plural(len(run.stages), 'stage')}: {counts or 'none'}")
    rows = []
    for s in run.stages.values():
        # A fan-out's queue, run and backoff are sums over items, which can
        # exceed the run; its items line tells the story instead.
        per_stage = s.status is not None and s.items is None
        rows.append(
            [
                printable(s.stage_id),
                s.state,
                str(s.attempts),
                format_ms(s.wait_ms),
                format_ms(s.queued_ms if per_stage else None),
                format_ms(s.running_ms if per_stage else None),
                format_ms(s.backoff_ms if per_stage else None),
                format_ms(s.duration_ms if s.status else None),
            ]
        )
    headers = ["stage", "status", "attempts", "wait", "queue", "run", "backoff"]
    lines += plain_table([*headers, "duration"], rows, right=range(2, 8), indent="  ")
    for stage in run.stages.values():
        if stage.items is not None:
            lines.append(f"  items: {stage.stage_id}: {items_text(stage)}")
    slowest = run.slowest()
    if slowest:
        text = ", ".join(f"{s.stage_id} {format_ms(s.duration_ms)}" for s in slowest)
        lines.append(f"  slowest: {text}")
    throttled = [s for s in run.stages.values() if s.throttle_ms]
    if throttled:
        text = ", ".join(
            f"{s.stage_id} {format_ms(s.throttle_ms or 0.0)}" for s in throttled
        )
        lines.append(f"  throttled by limits: {text}")
    for pause in run.pauses:
        lines.append(
            f"  pause: limit {printable(pause.limit)!r} by "
            f"{printable(pause.stage_id)} at {format_ms(pause.at_ms)} for "
            f"{format_ms(pause.pause_ms)} (Retry-After)"
        )
    for stage in run.stages.values():
        if stage.retries:
            lines += _retries(stage, verbose=verbose)
    for stage in run.stages.values():
        if stage.error is not None and stage.status is StageStatus.FAILED:
            lines.append(f"  error: {stage.stage_id}: {stage.error}")
            if stage.traceback:
                lines += (f"    {line}" for line in stage.traceback.splitlines())
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


def items_text(stage: StageRecord) -> str:
    """Return a fan-out's items for people: count, median, p95, concurrency."""
    parts = [_plural(stage.items or 0, "item")]
    if stage.item_p50_ms is not None:
        parts.append(f"median {format_ms(stage.item_p50_ms)}")
    if stage.item_p95_ms is not None:
        parts.append(f"p95 {format_ms(stage.item_p95_ms)}")
    if stage.item_max_ms is not None:
        parts.append(f"max {format_ms(stage.item_max_ms)}")
    concurrency = stage.concurrency
    if concurrency is not None:
        peak = stage.peak_concurrency
        at_once = f"{concurrency:.3g} at a time on average"
        parts.append(at_once if peak is None else f"{at_once}, {peak} at most")
    return ", ".join(parts)


_TOP_ERRORS = 3


def _retries(stage: StageRecord, *, verbose: bool) -> list[str]:
    """One line per stage (how many, on how many items, the commonest errors)."""
    retries = stage.retries
    text = f"  retries: {stage.stage_id}: {_plural(len(retries), 'retry', 'retries')}"
    items = {r.item_index for r in retries if r.item_index is not None}
    if items:
        text += f" on {_plural(len(items), 'item')}"
    kinds = Counter(r.error_type or r.error.split(":")[0] for r in retries)
    top = ", ".join(f"{kind} x {n}" for kind, n in kinds.most_common(_TOP_ERRORS))
    more = len(kinds) - _TOP_ERRORS
    text += f"; top errors: {top}" + (f" (+{more} more kinds)" if more > 0 else "")
    lines = [text]
    if verbose:
        for retry in retries:
            item = "" if retry.item_index is None else f"item {retry.item_index} "
            lines.append(
                f"    {item}attempt {retry.attempt} at {format_ms(retry.at_ms)}, "
                f"next after {format_ms(retry.delay_ms)}: {retry.error}"
            )
    return lines


# --- timeline: text ------------------------------------------------------------


def run_extent(run: RunRecord) -> float:
    """Return the span a chart of *run* covers, in ms (never 0)."""
    extent = run.duration_ms if run.duration_ms is not None else run.last_event_ms
    return extent or 1.0


def timeline_text(run: RunRecord, width: int) -> str:
    """Return *run* as a fixed-width chart, *width* (at most MAX_WIDTH) columns."""
    width = max(10, min(width, MAX_WIDTH))
    extent = run_extent(run)

    def col(ms: float) -> int:
        """The cell holding the instant *ms*."""
        return min(width - 1, max(0, int(ms / extent * width)))

    def cells(begin: float, stop: float) -> range:
        """The cells an interval touches (at least one)."""
        first = col(begin)
        last = math.ceil(round(stop / extent * width, 9))
        return range(first, min(width, max(first + 1, last)))

    label = max([5, *(len(printable(s)) for s in run.stages)])
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
        name = printable(stage.stage_id)
        lines.append(f"{name:{label}}  |{''.join(bar)}| {detail}")
    lines.append(f"{_LEGEND}  * critical path")
    return _visible(lines)


def run_title(run: RunRecord) -> str:
    """Return one line naming the run and how it ended (charts' title)."""
    if run.complete:
        how = f"{run.state} in {format_ms(run.duration_ms)}"
    else:
        how = f"incomplete, log ends at {format_ms(run.last_event_ms)}"
    return f"pipeline {run.pipeline}, run {run.run_id[:12]}, {how}"


# --- helpers -------------------------------------------------------------------


def _plural(count: int, noun: str, nouns: str | None = None) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {nouns or noun + 's'}"

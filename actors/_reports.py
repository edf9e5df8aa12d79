"""Turning analysed runs into text, Mermaid ``gantt`` charts and HTML pages."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from typing import Literal, TypeAlias

from ._analysis import LogReport, RunRecord, StageRecord
from ._results import StageStatus

__all__ = [
    "TimelineFormat",
    "render_critical_path",
    "render_summary",
    "render_timeline",
]

TimelineFormat: TypeAlias = Literal["text", "mermaid", "html"]
"""The formats :func:`render_timeline` can produce."""

_LEGEND = (
    "legend: # running  ~ backoff  . queued  o skipped  x never ran  "
    "> still running (log ends)"
)


def render_summary(report: LogReport) -> str:
    """Return a plain-text summary of every run in *report*.

    One block per run: its status and makespan, a table of stages (status,
    attempts, and wait / queue / run / backoff / duration in ms), the slowest
    stages, every retry and error, and the critical path.
    """
    lines = [_overview(report)]
    for run in report.runs:
        lines += ["", *_run_summary(run)]
    return "\n".join(lines) + "\n"


def render_timeline(
    run: RunRecord, format: TimelineFormat = "text", *, width: int = 60
) -> str:
    """Return the timeline (a Gantt chart) of *run*.

    Args:
        run: The run to draw.
        format: ``"text"`` (fixed-width characters), ``"mermaid"`` (a Mermaid
            ``gantt`` diagram) or ``"html"`` (a self-contained page).
        width: Columns of the chart, for the text format.

    Raises:
        ValueError: Unknown *format*.
    """
    if format == "text":
        return _timeline_text(run, width)
    if format == "mermaid":
        return _timeline_mermaid(run)
    if format == "html":
        return _timeline_html(run)
    raise ValueError(
        f"unknown timeline format {format!r}; use 'text', 'mermaid' or 'html'"
    )


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
                _ms(stage.started_at_ms),
                _ms(stage.finished_at_ms),
                _ms(stage.duration_ms),
            ]
            for stage in stages
        ]
        headers = ["stage", "status", "start", "end", "duration"]
        block += _table(headers, rows, right=range(2, 5))
        path = " -> ".join(run.critical_path) or "(no stage finished)"
        extent = run.duration_ms if run.complete else run.last_event_ms
        note = "" if run.complete else " (incomplete: what finished so far)"
        block.append(f"  path: {path}; makespan {_ms(extent)} ms{note}")
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
        how = f"{run.state} in {_ms(run.duration_ms)} ms"
    else:
        how = (
            f"INCOMPLETE: no pipeline_finished (crashed or still running); "
            f"log ends at {_ms(run.last_event_ms)} ms"
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
            _ms(s.wait_ms),
            _ms(s.queued_ms if s.status else None),
            _ms(s.running_ms if s.status else None),
            _ms(s.backoff_ms if s.status else None),
            _ms(s.duration_ms if s.status else None),
            "" if s.items is None else _items(s),
        ]
        for s in run.stages.values()
    ]
    headers = ["stage", "status", "attempts", "wait", "queue", "run", "backoff"]
    headers += ["duration", "items (p50/p95/max)"]
    lines += _table(headers, rows, right=range(2, 8))
    slowest = run.slowest()
    if slowest:
        text = ", ".join(f"{s.stage_id} {_ms(s.duration_ms)} ms" for s in slowest)
        lines.append(f"  slowest: {text}")
    throttled = [s for s in run.stages.values() if s.throttle_ms]
    if throttled:
        text = ", ".join(f"{s.stage_id} {_ms(s.throttle_ms)} ms" for s in throttled)
        lines.append(f"  throttled by limits: {text}")
    for pause in run.pauses:
        lines.append(
            f"  pause: limit {pause.limit!r} by {pause.stage_id} at "
            f"{_ms(pause.at_ms)} ms for {_ms(pause.pause_ms)} ms (Retry-After)"
        )
    for stage in run.stages.values():
        for retry in stage.retries:
            item = "" if retry.item_index is None else f" item {retry.item_index}"
            lines.append(
                f"  retry: {stage.stage_id}{item} attempt {retry.attempt} at "
                f"{_ms(retry.at_ms)} ms, next after {_ms(retry.delay_ms)} ms: "
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
    return f"{stage.items} ({'/'.join(_ms(f) for f in figures)} ms)"


# --- timeline: text ------------------------------------------------------------


def _extent(run: RunRecord) -> float:
    extent = run.duration_ms if run.duration_ms is not None else run.last_event_ms
    return extent or 1.0


def _timeline_text(run: RunRecord, width: int) -> str:
    extent = _extent(run)

    def col(ms: float) -> int:
        """The cell holding the instant *ms*."""
        return min(width - 1, max(0, int(ms / extent * width)))

    def cells(begin: float, stop: float) -> range:
        """The cells an interval touches (at least one)."""
        first = col(begin)
        last = math.ceil(round(stop / extent * width, 9))
        return range(first, min(width, max(first + 1, last)))

    label = max([5, *(len(s) for s in run.stages)])
    end_label = f"{_ms(extent)} ms"
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
            f"{_ms(start)}-{_ms(end)} ms"
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


# --- timeline: Mermaid ---------------------------------------------------------

_MERMAID_UNSAFE = re.compile(r"[:;#\n\r]")


def _mermaid_text(text: str) -> str:
    # ':' ends a task name and ';' / '#' start syntax; newlines end lines.
    return _MERMAID_UNSAFE.sub(" ", text).strip() or "_"


def _timeline_mermaid(run: RunRecord) -> str:
    lines = [
        "gantt",
        f"    title {_mermaid_text(_title(run))}",
        "    dateFormat x",
        "    axisFormat %M:%S.%L",
        f"    section {_mermaid_text(run.pipeline)}",
    ]
    extent = _extent(run)
    for index, stage in enumerate(run.stages.values()):
        start, end = stage.started_at_ms, stage.finished_at_ms
        tags: list[str] = []
        if stage.stage_id in run.critical_path:
            tags.append("crit")
        if start is None and end is None:
            continue  # pending: nothing to draw yet
        if start is None:
            tags.append("milestone")
            start = end
        if end is None:
            tags.append("active")
            end = extent
        elif stage.status in (StageStatus.SUCCEEDED, StageStatus.SKIPPED):
            tags.append("done")
        name = f"{stage.stage_id} ({stage.state})"
        assert start is not None  # for mypy: set above
        fields = [*tags, f"s{index}", str(round(start)), str(round(end))]
        lines.append(f"    {_mermaid_text(name)} :{', '.join(fields)}")
    return "\n".join(lines) + "\n"


def _title(run: RunRecord) -> str:
    if run.complete:
        how = f"{run.state} in {_ms(run.duration_ms)} ms"
    else:
        how = f"incomplete, log ends at {_ms(run.last_event_ms)} ms"
    return f"pipeline {run.pipeline}, run {run.run_id[:12]}, {how}"


# --- timeline: HTML ------------------------------------------------------------

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.3em; margin-bottom: .2em; }
.meta { color: #555; margin-top: 0; }
.chart { display: grid; grid-template-columns: max-content 1fr max-content;
         gap: 4px 12px; align-items: center; margin: 1.5em 0; }
.label { font-family: ui-monospace, monospace; }
.track { position: relative; height: 18px; background: #f3f3f3; }
.bar, .wait, .backoff, .paused, .mark { position: absolute; top: 0; height: 100%; }
.bar { min-width: 2px; border-radius: 2px; }
.wait { background: repeating-linear-gradient(90deg, #ccc 0 2px, transparent 2px 5px); }
.backoff { background: rgba(255, 255, 255, .6); }
.paused { background:
          repeating-linear-gradient(45deg, #e8a33d 0 4px, transparent 4px 8px); }
.mark { width: 8px; margin-left: -4px; border-radius: 50%; }
.succeeded { background: #4c9a52; } .failed { background: #c9372c; }
.skipped { background: #999; } .cancelled { background: #e0a030; }
.upstream_failed { background: #b57; } .running { background: #3b7dd8; }
.crit { outline: 2px solid #111; }
.info { color: #555; font-size: .9em; }
table { border-collapse: collapse; }
th, td { padding: 2px 10px; text-align: right; border-bottom: 1px solid #eee; }
th:first-child, td:first-child, td:nth-child(2) { text-align: left; }
"""


def _timeline_html(run: RunRecord) -> str:
    extent = _extent(run)

    def pct(ms: float) -> str:
        return f"{max(0.0, min(100.0, ms / extent * 100)):.3f}%"

    def box(css: str, start: float, end: float, title: str = "") -> str:
        width = pct(max(end - start, 0.0))
        tip = f' title="{html.escape(title)}"' if title else ""
        return f'<div class="{css}" style="left:{pct(start)};width:{width}"{tip}></div>'

    rows: list[str] = []
    for stage in run.stages.values():
        start, end = stage.started_at_ms, stage.finished_at_ms
        crit = " crit" if stage.stage_id in run.critical_path else ""
        state = stage.state
        parts: list[str] = []
        if start is not None:
            stop = end if end is not None else extent
            if stage.ready_at_ms is not None and stage.ready_at_ms < start:
                parts.append(box("wait", stage.ready_at_ms, start, "queued"))
            tip = f"{stage.stage_id}: {state}, {_ms(start)}-{_ms(stop)} ms"
            parts.append(box(f"bar {state}{crit}", start, stop, tip))
            for retry in stage.retries:
                if retry.item_index is None:
                    end_ms = retry.at_ms + retry.delay_ms
                    parts.append(box("backoff", retry.at_ms, end_ms, retry.error))
            for pause in run.pauses:
                if pause.stage_id == stage.stage_id:
                    tip = f"limit {pause.limit!r} paused by a Retry-After"
                    parts.append(box("paused", pause.at_ms, pause.until_ms, tip))
        elif end is not None:
            parts.append(
                f'<div class="mark {state}" style="left:{pct(end)}" '
                f'title="{html.escape(f"{stage.stage_id}: {state}")}"></div>'
            )
        info = state if start is None else f"{state}, {_ms(stage.duration_ms)} ms"
        rows.append(
            f'<div class="label">{html.escape(stage.stage_id)}</div>'
            f'<div class="track">{"".join(parts)}</div>'
            f'<div class="info">{html.escape(info)}</div>'
        )
    table_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(cell)}</td>"
            for cell in (
                s.stage_id,
                s.state,
                str(s.attempts),
                _ms(s.wait_ms),
                _ms(s.queued_ms),
                _ms(s.running_ms),
                _ms(s.backoff_ms),
                _ms(s.duration_ms),
                s.error or s.reason or "",
            )
        )
        + "</tr>"
        for s in run.stages.values()
    )
    headers = "".join(
        f"<th>{h}</th>"
        for h in (
            "stage",
            "status",
            "attempts",
            "wait ms",
            "queue ms",
            "run ms",
            "backoff ms",
            "duration ms",
            "error / reason",
        )
    )
    path = " &rarr; ".join(html.escape(s) for s in run.critical_path) or "none"
    title = html.escape(_title(run))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>pipeline {html.escape(run.pipeline)}</h1>\n"
        f'<p class="meta">{title}<br>critical path: {path}</p>\n'
        f'<div class="chart">\n' + "\n".join(rows) + "\n</div>\n"
        f"<table>\n<tr>{headers}</tr>\n{table_rows}\n</table>\n"
        "</body>\n</html>\n"
    )


# --- helpers -------------------------------------------------------------------


def _ms(value: float | None) -> str:
    """Milliseconds without trailing zeros (``1000``, ``12.5``); ``-`` if unknown."""
    if value is None:
        return "-"
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _table(
    headers: list[str], rows: Sequence[list[str]], right: Iterable[int] = ()
) -> list[str]:
    """Align *rows* under *headers*, indented by two spaces."""
    right = set(right)
    widths = [
        max([len(headers[i]), *(len(row[i]) for row in rows)])
        for i in range(len(headers))
    ]

    def line(cells: list[str]) -> str:
        padded = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  " + "  ".join(padded).rstrip()

    return [line(headers), *(line(row) for row in rows)]

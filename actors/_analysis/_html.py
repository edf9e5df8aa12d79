"""A run as a self-contained HTML page: its timeline and a table of stages."""

from __future__ import annotations

import html

from .._util import format_ms
from ._records import RunRecord
from ._text import run_extent, run_title

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.3em; margin-bottom: .2em; }
.meta { color: #555; margin-top: 0; }
.chart { display: grid; grid-template-columns: max-content 1fr max-content;
         gap: 4px 12px; align-items: center; margin: 1.5em 0; }
.label { font-family: ui-monospace, monospace; }
.track { position: relative; height: 18px; background: #f3f3f3; }
.bar, .wait, .backoff, .mark { position: absolute; top: 0; height: 100%; }
.bar { min-width: 2px; border-radius: 2px; }
.wait { background: repeating-linear-gradient(90deg, #ccc 0 2px, transparent 2px 5px); }
.backoff { background: rgba(255, 255, 255, .6); }
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


def timeline_html(run: RunRecord) -> str:
    extent = run_extent(run)

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
            tip = f"{stage.stage_id}: {state}, {format_ms(start)} to {format_ms(stop)}"
            parts.append(box(f"bar {state}{crit}", start, stop, tip))
            for retry in stage.retries:
                if retry.item_index is None:
                    end_ms = retry.at_ms + retry.delay_ms
                    parts.append(box("backoff", retry.at_ms, end_ms, retry.error))
        elif end is not None:
            parts.append(
                f'<div class="mark {state}" style="left:{pct(end)}" '
                f'title="{html.escape(f"{stage.stage_id}: {state}")}"></div>'
            )
        info = state if start is None else f"{state}, {format_ms(stage.duration_ms)}"
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
                format_ms(s.wait_ms),
                format_ms(s.queued_ms),
                format_ms(s.running_ms),
                format_ms(s.backoff_ms),
                format_ms(s.duration_ms),
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
            "wait",
            "queue",
            "run",
            "backoff",
            "duration",
            "error / reason",
        )
    )
    path = " &rarr; ".join(html.escape(s) for s in run.critical_path) or "none"
    heading = html.escape(run_title(run))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{heading}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>pipeline {html.escape(run.pipeline)}</h1>\n"
        f'<p class="meta">{heading}<br>critical path: {path}</p>\n'
        f'<div class="chart">\n' + "\n".join(rows) + "\n</div>\n"
        f"<table>\n<tr>{headers}</tr>\n{table_rows}\n</table>\n"
        "</body>\n</html>\n"
    )

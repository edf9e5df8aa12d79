"""A run as one self-contained HTML page: a timeline with a time axis and a
legend, each fan-out's items at once over time, failures with their
tracebacks, and a table of stages.

Nothing is loaded from anywhere: the style and the small script are inline.
The script only checks the page's own layout and writes what it found into
``<body data-check=...>`` (and any script error into ``data-errors``), so a
headless browser's ``--dump-dom`` can prove the page renders.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

from .._results import StageStatus
from .._util import format_ms, printable
from ._records import RunRecord, StageRecord
from ._text import items_text, run_extent, run_title

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.35em; margin: 0 0 .2em; }
.meta { color: #555; margin: 0 0 1em; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 0 0 1em;
          font-size: .9em; color: #444; }
.key { display: inline-flex; align-items: center; gap: 6px; }
.swatch { display: inline-block; width: 22px; height: 12px; border-radius: 2px;
          position: relative; background: #f3f3f3; }
.chart { display: grid; gap: 4px 12px; align-items: center;
         grid-template-columns: max-content minmax(300px, 1fr) max-content; }
.label { font-family: ui-monospace, monospace; white-space: pre; }
.sub { color: #666; font-size: .85em; padding-left: 1em; }
.track { position: relative; height: 18px; background-color: #f6f6f6;
         background-image: linear-gradient(to right, #e2e2e2 1px, transparent 1px);
         background-size: var(--step) 100%; }
.track.items { height: 36px; }
.track.items svg { position: absolute; inset: 0; width: 100%; height: 100%; }
.track.items polyline { fill: rgba(59, 125, 216, .25); stroke: #3b7dd8;
                        stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.axis { position: relative; height: 22px; }
.tick { position: absolute; top: 0; height: 6px; border-left: 1px solid #888; }
.tick span { position: absolute; top: 6px; left: 0; transform: translateX(-50%);
             font-size: .8em; color: #555; white-space: nowrap; }
.bar, .wait, .backoff, .paused, .mark, .retry { position: absolute; top: 0;
  height: 100%; }
.paused { background:
  repeating-linear-gradient(45deg, #e8a33d 0 4px, transparent 4px 8px); }
.bar { min-width: 2px; border-radius: 2px; box-sizing: border-box; }
.wait { background: repeating-linear-gradient(90deg, #bbb 0 2px, transparent 2px 5px); }
.backoff { background: repeating-linear-gradient(45deg, rgba(255,255,255,.85) 0 3px,
           rgba(0,0,0,.15) 3px 6px); }
.retry { width: 2px; margin-left: -1px; background: #111; }
.mark { width: 10px; margin-left: -5px; border-radius: 50%; }
.succeeded { background: #4c9a52; } .failed { background: #c9372c; }
.skipped { background: #9e9e9e; } .cancelled { background: #e0a030; }
.upstream_failed { background: #b5577f; } .running { background: #3b7dd8; }
.pending { background: #ddd; }
.crit { outline: 2px solid #111; outline-offset: 1px; }
.info { color: #555; font-size: .9em; white-space: nowrap; }
.failure { border-left: 4px solid #c9372c; padding: .2em 1em; margin: 1em 0; }
.failure pre { background: #f8f8f8; padding: .6em; overflow-x: auto; }
table { border-collapse: collapse; margin-top: 1.5em; }
th, td { padding: 2px 10px; text-align: right; border-bottom: 1px solid #eee;
         vertical-align: top; white-space: nowrap; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2),
th:last-child, td:last-child { text-align: left; }
td:last-child { white-space: normal; }
"""

_ERRORS_SCRIPT = """
window.addEventListener("error", function (event) {
  var seen = document.documentElement.getAttribute("data-errors");
  var text = String(event.message || event.type);
  var all = seen ? seen + " | " + text : text;
  document.documentElement.setAttribute("data-errors", all);
});
"""

# Checks that every bar is laid out inside its track, and counts what the
# page shows; a browser's --dump-dom then carries the answer.
_CHECK_SCRIPT = """
(function () {
  function inside(box, track) {
    var b = box.getBoundingClientRect(), t = track.getBoundingClientRect();
    return b.width > 0 && b.height > 0 &&
      b.left >= t.left - 1 && b.right <= t.right + 1;
  }
  var bars = document.querySelectorAll(".chart .bar");
  var laidOut = 0, tips = 0;
  bars.forEach(function (bar) {
    if (inside(bar, bar.parentElement)) { laidOut += 1; }
    if (bar.getAttribute("title")) { tips += 1; }
  });
  var ticks = document.querySelectorAll(".axis .tick");
  var ordered = true, last = -Infinity;
  ticks.forEach(function (tick) {
    var x = tick.getBoundingClientRect().left;
    if (x < last) { ordered = false; }
    last = x;
  });
  document.body.setAttribute("data-check", JSON.stringify({
    bars: bars.length,
    laid_out: laidOut,
    tips: tips,
    ticks: ticks.length,
    ticks_ordered: ordered,
    legend: document.querySelectorAll(".legend .key").length,
    concurrency: document.querySelectorAll(".track.items polyline").length,
    failures: document.querySelectorAll(".failure pre").length,
    titles: document.querySelectorAll("h1").length
  }));
})();
"""

_LEGEND = (
    ("succeeded", "swatch succeeded", ""),
    ("failed", "swatch failed", ""),
    ("cancelled", "swatch cancelled", ""),
    ("skipped", "mark skipped", ""),
    ("upstream failed", "swatch upstream_failed", ""),
    ("still running (log ends)", "swatch running", ""),
    ("critical path", "swatch crit", ""),
    ("queued", "swatch", '<span class="wait" style="left:0;width:100%"></span>'),
    (
        "backoff",
        "swatch succeeded",
        '<span class="backoff" style="left:0;width:100%"></span>',
    ),
    ("retry", "swatch succeeded", '<span class="retry" style="left:50%"></span>'),
)


def _text(text: str) -> str:
    """Escape *text* for HTML, control characters shown, never interpreted."""
    return html.escape(printable(text))


def nice_step(extent: float, target: int = 8) -> float:
    """Return a round tick interval (1, 2 or 5 times a power of ten) for *extent*."""
    raw = max(extent, 1e-9) / target
    power = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if multiple * power >= raw:
            return multiple * power
    return 10 * power  # pragma: no cover  # the loop always returns


@dataclass(frozen=True)
class _Scale:
    """Positions on the time axis, as percentages of the track."""

    extent: float

    def pct(self, ms: float) -> str:
        return f"{max(0.0, min(100.0, ms / self.extent * 100)):.3f}%"

    def box(self, css: str, start: float, end: float, tip: str = "") -> str:
        start = max(0.0, min(start, self.extent))
        end = max(start, min(end, self.extent))
        title = f' title="{_text(tip)}"' if tip else ""
        style = f"left:{self.pct(start)};width:{self.pct(end - start)}"
        return f'<div class="{css}" style="{style}"{title}></div>'


def timeline_html(run: RunRecord) -> str:
    """Return *run* as a self-contained HTML page (see the module docstring)."""
    extent = run_extent(run)
    step = nice_step(extent)
    scale = _Scale(extent)
    pct = scale.pct

    ticks = []
    for n in range(int(extent // step) + 1):
        at = n * step
        label = f"<span>{format_ms(at)}</span>"
        ticks.append(f'<div class="tick" style="left:{pct(at)}">{label}</div>')
    rows = [
        "<div></div>",  # the axis has no label
        f'<div class="axis">{"".join(ticks)}</div>',
        '<div class="info"></div>',
    ]
    for stage in run.stages.values():
        rows += _stage_row(run, stage, scale)
        if stage.item_spans:
            rows += _concurrency_row(stage, extent)
    failures = [
        _failure(stage)
        for stage in run.stages.values()
        if stage.status is StageStatus.FAILED
    ]
    path = " &rarr; ".join(_text(s) for s in run.critical_path) or "none"
    when = f", {_text(run.timestamp)}" if run.timestamp else ""
    title = _text(run_title(run))
    legend = "".join(
        f'<span class="key"><span class="{css}" style="position:relative;'
        f'display:inline-block;width:22px;height:12px">{inner}</span>'
        f"{name}</span>"
        for name, css, inner in _LEGEND
    )
    step_pct = f"{min(100.0, step / extent * 100):.4f}%"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n"
        f"<script>{_ERRORS_SCRIPT}</script>\n</head>\n<body>\n"
        f"<h1>{title}</h1>\n"
        f'<p class="meta">run {_text(run.run_id)}{when}; critical path: {path}</p>\n'
        f'<div class="legend">{legend}</div>\n'
        f'<div class="chart" style="--step:{step_pct}">\n'
        + "\n".join(rows)
        + "\n</div>\n"
        + "".join(failures)
        + _table(run)
        + f"<script>{_CHECK_SCRIPT}</script>\n</body>\n</html>\n"
    )


def _stage_row(run: RunRecord, stage: StageRecord, scale: _Scale) -> list[str]:
    """A stage's label, its bar (wait, run, backoffs, retries) and a note."""
    box, pct = scale.box, scale.pct
    start, end = stage.started_at_ms, stage.finished_at_ms
    crit = " crit" if stage.stage_id in run.critical_path else ""
    state = stage.state
    parts: list[str] = []
    if start is not None:
        stop = end if end is not None else scale.extent
        if stage.ready_at_ms is not None and stage.ready_at_ms < start:
            parts.append(box("wait", stage.ready_at_ms, start, "queued"))
        parts.append(box(f"bar {state}{crit}", start, stop, _tip(stage, stop)))
        for retry in stage.retries:
            if retry.item_index is None:
                back = retry.at_ms + retry.delay_ms
                parts.append(
                    box(
                        "backoff",
                        retry.at_ms,
                        back,
                        f"backoff {format_ms(retry.delay_ms)}",
                    )
                )
                failed = f"attempt {retry.attempt} failed: {retry.error}"
                parts.append(
                    f'<div class="retry" style="left:{pct(retry.at_ms)}" '
                    f'title="{_text(failed)}"></div>'
                )
        for pause in run.pauses:
            if pause.stage_id == stage.stage_id:
                tip = f"limit {pause.limit!r} paused by a Retry-After"
                parts.append(box("paused", pause.at_ms, pause.until_ms, tip))
    elif end is not None:
        parts.append(
            f'<div class="mark {state}" style="left:{pct(end)}" '
            f'title="{_text(f"{stage.stage_id}: {state}")}"></div>'
        )
    info = state
    if start is not None:
        ran = stage.duration_ms if stage.status else scale.extent - start
        info = f"{state}, {format_ms(ran)}"
    return [
        f'<div class="label">{_text(stage.stage_id)}</div>',
        f'<div class="track">{"".join(parts)}</div>',
        f'<div class="info">{_text(info)}</div>',
    ]


def _tip(stage: StageRecord, stop: float) -> str:
    """The hover details of a stage's bar."""
    assert stage.started_at_ms is not None
    lines = [
        f"{stage.stage_id}: {stage.state}",
        f"{format_ms(stage.started_at_ms)} to {format_ms(stop)}",
    ]
    if stage.status is not None:
        lines.append(f"duration {format_ms(stage.duration_ms)}")
    if stage.wait_ms:
        lines.append(f"waited {format_ms(stage.wait_ms)} for inputs")
    if stage.items is not None:
        lines.append(items_text(stage))
    else:
        lines.append(f"{stage.attempts} attempt{'s' * (stage.attempts != 1)}")
    if stage.retries:
        lines.append(
            f"{len(stage.retries)} retr{'ies' if len(stage.retries) != 1 else 'y'}"
        )
    if stage.error:
        lines.append(stage.error)
    elif stage.reason:
        lines.append(stage.reason)
    return "\n".join(lines)


def _concurrency_row(stage: StageRecord, extent: float) -> list[str]:
    """A step chart of how many of a fan-out's items ran at each moment."""
    changes: dict[float, int] = {}
    for start, end in stage.item_spans:
        changes[start] = changes.get(start, 0) + 1
        changes[end] = changes.get(end, 0) - 1
    peak = stage.peak_concurrency or 1
    points = ["0,40"]
    running = 0
    for at in sorted(changes):  # an item ending as the next starts: no dip
        x = max(0.0, min(1000.0, at / extent * 1000))
        points.append(f"{x:.2f},{40 - running / peak * 36:.2f}")
        running += changes[at]
        points.append(f"{x:.2f},{40 - running / peak * 36:.2f}")
    points.append("1000,40")
    tip = f"{stage.stage_id}: up to {peak} items at once; {items_text(stage)}"
    return [
        '<div class="label sub">items at once</div>',
        f'<div class="track items" title="{_text(tip)}">'
        '<svg viewBox="0 0 1000 40" preserveAspectRatio="none" aria-hidden="true">'
        f'<polyline points="{" ".join(points)}"></polyline></svg></div>',
        f'<div class="info">peak {peak}</div>',
    ]


def _failure(stage: StageRecord) -> str:
    trace = stage.traceback
    body = (
        f"<pre>{html.escape(printable(trace, newlines=True))}</pre>"
        if trace
        else "<p>(the log carries no traceback)</p>"
    )
    return (
        f'<div class="failure"><h2>{_text(stage.stage_id)} failed: '
        f"{_text(stage.error or 'no error text')}</h2>{body}</div>\n"
    )


def _table(run: RunRecord) -> str:
    headers = ("stage", "status", "attempts", "wait", "queue", "run", "backoff")
    head = "".join(f"<th>{h}</th>" for h in (*headers, "duration", "notes"))
    rows = []
    for s in run.stages.values():
        per_stage = s.status is not None and s.items is None
        notes = items_text(s) if s.items is not None else (s.error or s.reason or "")
        cells = (
            s.stage_id,
            s.state,
            str(s.attempts),
            format_ms(s.wait_ms),
            format_ms(s.queued_ms if per_stage else None),
            format_ms(s.running_ms if per_stage else None),
            format_ms(s.backoff_ms if per_stage else None),
            format_ms(s.duration_ms if s.status else None),
            notes,
        )
        rows.append("<tr>" + "".join(f"<td>{_text(c)}</td>" for c in cells) + "</tr>")
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>\n"

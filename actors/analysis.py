"""Analyse JSON-lines logs of pipeline runs: what ran, when, and why it ended.

Read a log written with :func:`actors.logging.configure_json` (one or many
runs, mixed with your application's own events) into typed records, then
render a summary, a timeline (text, Mermaid ``gantt`` or HTML) or the
critical path. The ``actors logs`` command does the same from a shell.

Example::

    from actors.analysis import read_log, render_summary, render_timeline

    report = read_log("runs.jsonl")
    print(render_summary(report))
    print(render_timeline(report.runs[-1], "mermaid"))
"""

from __future__ import annotations

from ._analysis import (
    LogReport,
    PauseRecord,
    RetryRecord,
    RunRecord,
    StageRecord,
    TimelineFormat,
    parse_log,
    read_log,
    render_critical_path,
    render_summary,
    render_timeline,
)
from ._util import fix_module_names as _fix_module_names

__all__ = [
    "LogReport",
    "PauseRecord",
    "RetryRecord",
    "RunRecord",
    "StageRecord",
    "TimelineFormat",
    "parse_log",
    "read_log",
    "render_critical_path",
    "render_summary",
    "render_timeline",
]

_fix_module_names(globals(), __all__)

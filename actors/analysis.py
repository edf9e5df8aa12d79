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

import contextlib as _contextlib

from ._analysis import (
    LogReport,
    RetryRecord,
    RunRecord,
    StageRecord,
    parse_log,
    read_log,
)
from ._reports import (
    TimelineFormat,
    render_critical_path,
    render_summary,
    render_timeline,
)

__all__ = [
    "LogReport",
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

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("actors._"):
        with _contextlib.suppress(AttributeError, TypeError):  # aliases refuse it
            _obj.__module__ = __name__
del _name, _obj

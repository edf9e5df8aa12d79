"""A run as a Mermaid ``gantt`` chart."""

from __future__ import annotations

import re

from .._results import StageStatus
from ._records import RunRecord
from ._text import run_extent, run_title

# Only characters with no meaning to Mermaid's gantt grammar are kept: ':'
# ends a task name, ';' and newlines end a statement, '#' starts an entity,
# '%' a comment, '<' '&' markup; anything else outside this set becomes a space.
_MERMAID_UNSAFE = re.compile(r"[^\w .,()\[\]{}+\-/=@!?'*|~^$]")


def _mermaid_text(text: str) -> str:
    return " ".join(_MERMAID_UNSAFE.sub(" ", text).split()) or "_"


def timeline_mermaid(run: RunRecord) -> str:
    lines = [
        "gantt",
        f"    title {_mermaid_text(run_title(run))}",
        "    dateFormat x",
        "    axisFormat %M:%S.%L",
        f"    section {_mermaid_text(run.pipeline)}",
    ]
    extent = run_extent(run)
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
        # The task starts with its number, so no stage id can begin a
        # statement (title, section, click, excludes, ...); the task id is
        # generated, never taken from the log.
        name = f"{index + 1}. {stage.stage_id} ({stage.state})"
        assert start is not None  # for mypy: set above
        fields = [*tags, f"s{index}", str(round(start)), str(round(end))]
        lines.append(f"    {_mermaid_text(name)} :{', '.join(fields)}")
    return "\n".join(lines) + "\n"

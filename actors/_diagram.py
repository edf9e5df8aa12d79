"""Pipelines as diagrams: Mermaid flowcharts and Graphviz DOT, optionally coloured.

Both renderers draw the same picture: one node per stage, one edge per input,
data flowing left to right. The shape says the pattern (rectangle: runs once;
hexagon / diamond: conditional; stacked box: fan-out), a dashed border marks a
non-critical stage (and its outgoing edges are dashed: downstream may receive
``None`` from it). Given the statuses of a finished run, each stage is filled
with its status colour.

Output is deterministic (stages in declaration order), so it can be kept in
version control and compared in tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ._definition import ExecutionPattern, PipelineDefinition, StageDefinition
from ._results import PipelineResult, StageStatus

FORMATS = ("mermaid", "dot")
"""The diagram formats :func:`render_diagram` knows."""

# Fill and border per status; chosen to stay readable in light and dark themes.
_COLOURS: dict[StageStatus, tuple[str, str]] = {
    StageStatus.SUCCEEDED: ("#c8e6c9", "#2e7d32"),
    StageStatus.FAILED: ("#ffcdd2", "#c62828"),
    StageStatus.SKIPPED: ("#eeeeee", "#757575"),
    StageStatus.CANCELLED: ("#ffe0b2", "#ef6c00"),
    StageStatus.UPSTREAM_FAILED: ("#f8bbd0", "#ad1457"),
}


def render_diagram(
    pipeline: PipelineDefinition,
    fmt: str = "mermaid",
    *,
    result: PipelineResult | None = None,
) -> str:
    """Return *pipeline* as a diagram: a Mermaid flowchart or a Graphviz digraph.

    One node per stage and one edge per input, data flowing left to right.
    The shape shows the pattern (a rectangle runs once, a hexagon is
    conditional, a stacked box is a fan-out); a dashed border and dashed
    outgoing edges mark a non-critical stage; a note under the id gives the
    fan-out limit, retry attempts, timeout and description. The output is
    deterministic, so it can be kept under version control.

    Args:
        pipeline: The definition to draw. It should be valid: an input naming
            an unknown stage is drawn as a node marked ``?``.
        fmt: ``"mermaid"`` or ``"dot"``.
        result: A run of *pipeline*; each stage is then filled with the
            colour of its final status.

    Raises:
        ValueError: *fmt* is not a known format.
    """
    statuses = None
    if result is not None:
        statuses = {k: r.status for k, r in result.stage_results.items()}
    if fmt == "mermaid":
        return to_mermaid(pipeline, statuses)
    if fmt == "dot":
        return to_dot(pipeline, statuses)
    known = ", ".join(FORMATS)
    raise ValueError(f"unknown diagram format {fmt!r}; known formats: {known}")


def format_for_path(path: str) -> str:
    """Return the diagram format implied by a file name: DOT for ``.dot``/``.gv``."""
    return "dot" if path.lower().endswith((".dot", ".gv")) else "mermaid"


def stage_notes(stage: StageDefinition) -> list[str]:
    """Return the short notes a diagram shows under a stage's id."""
    notes: list[str] = []
    if stage.pattern is ExecutionPattern.FAN_OUT:
        limit = stage.max_concurrency
        notes.append("fan-out" if limit is None else f"fan-out, max {limit}")
    if stage.pattern is ExecutionPattern.CONDITIONAL or stage.condition is not None:
        notes.append("conditional")
    retry = stage.retry_config
    if retry is not None and retry.max_attempts > 1:
        notes.append(f"retry x{retry.max_attempts}")
    if stage.timeout_ms is not None:
        notes.append(f"timeout {stage.timeout_ms:g} ms")
    if not stage.critical:
        notes.append("non-critical")
    return notes


def _is_conditional(stage: StageDefinition) -> bool:
    return stage.pattern is ExecutionPattern.CONDITIONAL or (
        stage.condition is not None and stage.pattern is not ExecutionPattern.FAN_OUT
    )


# -- Mermaid ------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    # Inside a quoted label Mermaid reads entity codes; '#' first, as it starts them.
    for raw, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(raw, code)
    return _one_line(text)


def _one_line(text: str) -> str:
    # A line break ends a Mermaid statement wherever it appears.
    return _LINE_BREAKS.sub(" ", text)


_LINE_BREAKS = re.compile("[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]")


def to_mermaid(
    pipeline: PipelineDefinition,
    statuses: Mapping[str, StageStatus] | None = None,
) -> str:
    """Return *pipeline* as a Mermaid ``flowchart`` (see :func:`render_diagram`)."""
    # Node names are positional (s0, s1, ...): stage ids may contain anything,
    # including Mermaid keywords such as "end".
    names = {stage.id: f"s{n}" for n, stage in enumerate(pipeline.stages)}
    critical = {stage.id: stage.critical for stage in pipeline.stages}
    lines = [f"%% pipeline: {_one_line(pipeline.name)}", "flowchart LR"]
    for stage in pipeline.stages:
        label = f"<b>{_mermaid_text(stage.id)}</b>"
        for line in (*stage_notes(stage), stage.description):
            if line:
                label += f"<br/>{_mermaid_text(line)}"
        if stage.pattern is ExecutionPattern.FAN_OUT:
            shape = '[["{}"]]'
        elif _is_conditional(stage):
            shape = '{{{{"{}"}}}}'
        else:
            shape = '["{}"]'
        lines.append(f"    {names[stage.id]}{shape.format(label)}")
    unknown = 0
    for stage in pipeline.stages:
        for source in stage.inputs:
            if source not in names:
                names[source] = f"u{unknown}"
                unknown += 1
                lines.append(f'    {names[source]}["{_mermaid_text(source)}?"]')
            arrow = "-->" if critical.get(source, True) else "-.->"
            lines.append(f"    {names[source]} {arrow} {names[stage.id]}")
    non_critical = [names[s.id] for s in pipeline.stages if not s.critical]
    if non_critical:
        lines.append("    classDef noncritical stroke-dasharray: 5 5")
        lines.append(f"    class {','.join(non_critical)} noncritical")
    if statuses:
        for status, (fill, stroke) in _COLOURS.items():
            members = [
                names[s.id] for s in pipeline.stages if statuses.get(s.id) is status
            ]
            if members:
                lines.append(
                    f"    classDef {status.value} fill:{fill},stroke:{stroke},"
                    "color:#000"
                )
                lines.append(f"    class {','.join(members)} {status.value}")
    return "\n".join(lines) + "\n"


# -- DOT ----------------------------------------------------------------------


def _dot_text(*lines: str) -> str:
    """Return a quoted DOT string; several lines are joined with DOT's ``\\n``."""
    escaped = (line.replace("\\", "\\\\").replace('"', '\\"') for line in lines)
    return '"' + "\\n".join(escaped) + '"'


def to_dot(
    pipeline: PipelineDefinition,
    statuses: Mapping[str, StageStatus] | None = None,
) -> str:
    """Return *pipeline* as a Graphviz ``digraph`` (see :func:`render_diagram`)."""
    statuses = statuses or {}
    critical = {stage.id: stage.critical for stage in pipeline.stages}
    lines = [
        f"digraph {_dot_text(pipeline.name)} {{",
        "    rankdir=LR;",
        f"    label={_dot_text(pipeline.name)};",
        "    labelloc=t;",
        '    node [shape=box, style="rounded,filled", fillcolor="#ffffff", '
        'fontname="Helvetica"];',
        '    edge [fontname="Helvetica"];',
    ]
    for stage in pipeline.stages:
        label = [stage.id, *stage_notes(stage)]
        if stage.description:
            label.append(stage.description)
        attrs = [f"label={_dot_text(*label)}"]
        if stage.pattern is ExecutionPattern.FAN_OUT:
            attrs.append("shape=box3d")
        elif _is_conditional(stage):
            attrs.append("shape=hexagon")
        plain_box = stage.pattern is not ExecutionPattern.FAN_OUT and not (
            _is_conditional(stage)
        )
        styles = ["rounded", "filled"] if plain_box else ["filled"]
        if not stage.critical:
            styles.append("dashed")
        if styles != ["rounded", "filled"]:  # the default set on every node
            attrs.append(f"style={_dot_text(','.join(styles))}")
        status = statuses.get(stage.id)
        if status is not None:
            fill, stroke = _COLOURS[status]
            attrs.append(f"fillcolor={_dot_text(fill)}")
            attrs.append(f"color={_dot_text(stroke)}")
            attrs.append(f"tooltip={_dot_text(status.value)}")
        lines.append(f"    {_dot_text(stage.id)} [{', '.join(attrs)}];")
    for stage in pipeline.stages:
        for source in stage.inputs:
            style = "" if critical.get(source, True) else " [style=dashed]"
            lines.append(f"    {_dot_text(source)} -> {_dot_text(stage.id)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"

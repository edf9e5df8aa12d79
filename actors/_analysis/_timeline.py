"""One entry point for a run's timeline in every format."""

from __future__ import annotations

from typing import Literal, TypeAlias

from ._gantt import timeline_mermaid
from ._html import timeline_html
from ._records import RunRecord
from ._text import timeline_text

TimelineFormat: TypeAlias = Literal["text", "mermaid", "html"]
"""The formats :func:`render_timeline` can produce."""


def render_timeline(
    run: RunRecord, format: TimelineFormat = "text", *, width: int = 60
) -> str:
    """Return the timeline (a Gantt chart) of *run*.

    Args:
        run: The run to draw.
        format: ``"text"`` (fixed-width characters), ``"mermaid"`` (a Mermaid
            ``gantt`` diagram) or ``"html"`` (a self-contained page).
        width: Columns of the chart, for the text format (clamped to 10 to
            1,000: a wider chart would only cost memory).

    Raises:
        ValueError: Unknown *format*.
    """
    if format == "text":
        return timeline_text(run, width)
    if format == "mermaid":
        return timeline_mermaid(run)
    if format == "html":
        return timeline_html(run)
    raise ValueError(
        f"unknown timeline format {format!r}; use 'text', 'mermaid' or 'html'"
    )

"""What the command line shows while a pipeline runs, and the summary after it.

Everything here is built on :class:`~actors.Observer`: a :class:`ProgressTracker`
keeps one :class:`StageView` per stage up to date from the run's events.
:class:`PlainProgress` prints one line per event (for logs and pipes);
:func:`live_table` draws the tracker as a rich table (for terminals).

rich is imported only inside the functions that draw with it, so the plain
output works without the ``cli`` extra.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import trio

from .._definition import ExecutionPattern, PipelineDefinition
from .._events import (
    ItemFinished,
    PipelineFinished,
    PipelineStarted,
    StageFinished,
    StageRetrying,
    StageStarted,
    StageUnresponsive,
)
from .._events import summary as status_summary
from .._observers import Observer
from .._results import PipelineResult, StageResult, StageStatus
from .._util import format_ms, plain_table, printable

if TYPE_CHECKING:
    from rich.table import Table

WAITING = "waiting"
RUNNING = "running"
RETRYING = "retrying"
STOPPING = "stopping"
UNRESPONSIVE = "unresponsive"

STYLES = {
    WAITING: "dim",
    RUNNING: "bold cyan",
    RETRYING: "bold yellow",
    STOPPING: "yellow",
    UNRESPONSIVE: "bold magenta",
    StageStatus.SUCCEEDED.value: "green",
    StageStatus.FAILED.value: "bold red",
    StageStatus.SKIPPED.value: "dim",
    StageStatus.CANCELLED.value: "yellow",
    StageStatus.UPSTREAM_FAILED.value: "magenta",
}
"""rich style of each state a stage can be shown in."""


@dataclass(eq=False)
class StageView:
    """What the progress display knows about one stage."""

    id: str
    pattern: ExecutionPattern
    critical: bool
    inputs: tuple[str, ...]
    state: str = WAITING
    attempt: int = 0
    items_total: int | None = None
    items_done: int = 0
    retries: int = 0
    started_at_ms: float | None = None
    finished_at_ms: float | None = None
    note: str = ""

    @property
    def is_fan_out(self) -> bool:
        """True for FAN_OUT stages, which report items done out of total."""
        return self.pattern is ExecutionPattern.FAN_OUT

    def items_text(self) -> str:
        """Return ``"done/total"`` for a fan-out stage, ``""`` otherwise."""
        if not self.is_fan_out:
            return ""
        total = "-" if self.items_total is None else str(self.items_total)
        return f"{self.items_done}/{total}"

    def state_text(self) -> str:
        """Return the state as shown, with the attempt while it runs."""
        if self.state == RUNNING and not self.is_fan_out and self.attempt > 1:
            return f"running (attempt {self.attempt})"
        if self.state == RETRYING:
            return f"retrying (attempt {self.attempt} failed)"
        return self.state


class ProgressTracker(Observer):
    """Follows one run of *pipeline* and keeps a :class:`StageView` per stage.

    A fan-out stage's item count arrives with its first ``stage_started``.

    Args:
        pipeline: The definition being run.
    """

    def __init__(self, pipeline: PipelineDefinition) -> None:
        self.views = {
            stage.id: StageView(
                stage.id, stage.pattern, stage.critical, tuple(stage.inputs)
            )
            for stage in pipeline.stages
        }
        self.result: PipelineResult | None = None
        self.stop_requested = False
        self._start = 0.0

    def now_ms(self) -> float:
        """Milliseconds since the run started (valid inside the run)."""
        return (trio.current_time() - self._start) * 1000

    def elapsed_ms(self, view: StageView) -> float | None:
        """Return how long *view* has run so far (or ran), or None if not started."""
        if view.started_at_ms is None:
            return None
        end = view.finished_at_ms
        if end is None:
            end = self.now_ms()
        return max(0.0, end - view.started_at_ms)

    def pipeline_started(self, event: PipelineStarted) -> None:
        """Remember when the run started."""
        self._start = trio.current_time() - event.at_ms / 1000

    def stopping(self) -> None:
        """The run was asked to stop: show every running stage as stopping.

        From here on a stage is shown as stopping until its result arrives,
        or as unresponsive once the supervisor reports it past the grace
        period; never as running again.
        """
        self.stop_requested = True
        for view in self.views.values():
            if view.state in (RUNNING, RETRYING):
                view.state = STOPPING

    def stage_started(self, event: StageStarted) -> None:
        """Mark the stage running, with its attempt."""
        view = self.views[event.stage_id]
        if view.state not in (STOPPING, UNRESPONSIVE):
            view.state = STOPPING if self.stop_requested else RUNNING
        view.attempt = max(view.attempt, event.attempt)
        if event.items is not None:
            view.items_total = event.items
        if view.started_at_ms is None:
            view.started_at_ms = event.at_ms

    def stage_retrying(self, event: StageRetrying) -> None:
        """Count the retry; a single (not fan-out) stage shows it is waiting."""
        view = self.views[event.stage_id]
        view.retries += 1
        view.note = event.error
        if event.item_index is None and view.state not in (STOPPING, UNRESPONSIVE):
            view.state = RETRYING

    def item_finished(self, event: ItemFinished) -> None:
        """Count a finished fan-out item."""
        self.views[event.stage_id].items_done += 1

    def stage_finished(self, event: StageFinished) -> None:
        """Show the final status."""
        result = event.result
        view = self.views[event.stage_id]
        view.state = result.status.value
        view.attempt = result.attempts
        view.finished_at_ms = event.at_ms
        view.note = note_of(result)
        if result.profile is not None:
            if result.profile.started_at_ms is not None:
                view.started_at_ms = result.profile.started_at_ms
            if result.profile.items is not None:
                view.items_total = result.profile.items

    def stage_unresponsive(self, event: StageUnresponsive) -> None:
        """Show a stage still running after the grace period as unresponsive."""
        view = self.views[event.stage_id]
        if view.finished_at_ms is None:
            view.state = UNRESPONSIVE
            view.note = "did not stop within the grace period after cancellation"

    def pipeline_finished(self, event: PipelineFinished) -> None:
        """Keep the result."""
        self.result = event.result


class PlainProgress(ProgressTracker):
    """A tracker that also prints one line per stage event to *stream*.

    Used when stdout is not a terminal: each line starts with the time since
    the run started, so a captured output reads as a timeline. Fan-out items
    are not printed one by one (there may be many); their retries are.
    """

    def __init__(self, pipeline: PipelineDefinition, stream: TextIO) -> None:
        super().__init__(pipeline)
        self._stream = stream
        self._reader_gone = False
        self._width = max((len(stage_id) for stage_id in self.views), default=0)

    def _line(self, at_ms: float, stage_id: str, text: str) -> None:
        if self._reader_gone:
            return
        try:
            print(
                printable(f"{at_ms / 1000:8.3f}s  {stage_id:<{self._width}}  {text}"),
                file=self._stream,
                flush=True,
            )
        except BrokenPipeError:
            # ``actors run ... | head``: nobody reads any more, which is not
            # an observer failure worth a traceback; the run goes on quietly.
            self._reader_gone = True

    def stage_started(self, event: StageStarted) -> None:
        """Print ``started`` for each attempt of a stage (not for each item)."""
        super().stage_started(event)
        if event.item_index is None:
            text = "started"
            if event.attempt > 1:
                text += f" (attempt {event.attempt})"
            if event.items is not None:
                text += f" ({event.items} item{'s' * (event.items != 1)})"
            self._line(event.at_ms, event.stage_id, text)

    def stage_retrying(self, event: StageRetrying) -> None:
        """Print the failed attempt, the error and the delay."""
        super().stage_retrying(event)
        item = "" if event.item_index is None else f"item {event.item_index} "
        self._line(
            event.at_ms,
            event.stage_id,
            f"{item}attempt {event.attempt} failed ({event.error}); "
            f"retrying in {format_ms(event.delay_ms)}",
        )

    def stage_unresponsive(self, event: StageUnresponsive) -> None:
        """Print that the stage did not stop within the grace period."""
        super().stage_unresponsive(event)
        self._line(
            event.at_ms,
            event.stage_id,
            f"unresponsive - {self.views[event.stage_id].note}",
        )

    def stage_finished(self, event: StageFinished) -> None:
        """Print the final status with attempts, duration and any note."""
        super().stage_finished(event)
        view = self.views[event.stage_id]
        result = event.result
        parts = [status_summary(result)]
        if view.is_fan_out and view.items_total is not None:
            parts.append(view.items_text())
        if result.status in (StageStatus.SUCCEEDED, StageStatus.FAILED):
            plural = "" if result.attempts == 1 else "s"
            parts.append(
                f"in {format_ms(result.duration_ms)}, {result.attempts} attempt{plural}"
            )
        if view.note:
            parts.append(f"- {view.note}")
        self._line(event.at_ms, event.stage_id, " ".join(parts))


def note_of(result: StageResult[Any]) -> str:
    """Return the one-line note a summary shows for *result* (error or reason)."""
    if result.status is StageStatus.SKIPPED:
        return str(result.metadata.get("reason", "skipped"))
    if result.error:
        return result.error.splitlines()[0]
    return ""


def items_note(result: StageResult[Any]) -> str:
    """Return a fan-out's items for people: count, median, p95, concurrency.

    Sums over items (queue, running time) would exceed the run; these do not.
    Empty for a stage that is not a fan-out.
    """
    profile = result.profile
    if profile is None or profile.items is None:
        return ""
    parts = [f"{profile.items} item{'s' * (profile.items != 1)}"]
    if profile.item_p50_ms is not None:
        parts.append(f"median {format_ms(profile.item_p50_ms)}")
    if profile.item_p95_ms is not None:
        parts.append(f"p95 {format_ms(profile.item_p95_ms)}")
    if profile.item_running_ms is not None and result.duration_ms > 0:
        at_once = profile.item_running_ms / result.duration_ms
        parts.append(f"{at_once:.3g} at a time on average")
    return ", ".join(parts)


SUMMARY_HEADER = ("stage", "status", "attempts", "duration", "note")


def summary_rows(result: PipelineResult) -> list[tuple[str, str, str, str, str]]:
    """Return one row per stage: id, status, attempts, duration, note."""
    rows = []
    for stage_id, stage in result.stage_results.items():
        duration = format_ms(stage.duration_ms) if stage.attempts else "-"
        rows.append(
            (
                printable(stage_id),
                # "succeeded (57 of 60 items; 3 failed)" for a collecting fan-out
                status_summary(stage),
                str(stage.attempts),
                duration,
                printable(note_of(stage) or items_note(stage)),
            )
        )
    return rows


def summary_footer(result: PipelineResult) -> str:
    """Return the line under the summary: how the run ended, and how long it took."""
    text = f"pipeline {printable(repr(result.pipeline))} {result.status.value} in "
    text += format_ms(result.total_duration_ms)
    path = result.critical_path()
    if len(path) > 1:
        text += f"; critical path: {printable(' -> '.join(path))}"
    return text


def plain_summary(result: PipelineResult) -> str:
    """Return the summary as plain text: tracebacks, a table, a footer line.

    The tracebacks come first, so the last line always says how the run ended.
    """
    table = plain_table(SUMMARY_HEADER, summary_rows(result))
    return "\n".join([*failure_tracebacks(result), *table, summary_footer(result)])


_LIBRARY = str(Path(__file__).resolve().parent.parent) + os.sep


def failure_tracebacks(result: PipelineResult) -> list[str]:
    """Return each failed stage's traceback, a blank line after each.

    The stage's own frames are kept; the library's (and trio's scheduling
    under them) are trimmed, so the trace starts where the user's code does.
    Control characters in messages are shown escaped.
    """
    lines: list[str] = []
    for stage_id, stage in result.stage_results.items():
        exc = stage.exception
        if stage.status is not StageStatus.FAILED or exc is None:
            continue
        trace = traceback.TracebackException.from_exception(exc)
        _trim(trace, set())
        lines.append(printable(f"traceback of stage {stage_id!r}:"))
        for chunk in trace.format():
            lines += (printable(f"  {text}") for text in chunk.rstrip("\n").split("\n"))
        lines.append("")
    return lines


def _trim(trace: traceback.TracebackException, seen: set[int]) -> None:
    """Drop the library's frames from *trace* and the exceptions chained to it."""
    if id(trace) in seen:
        return
    seen.add(id(trace))
    own = [f for f in trace.stack if not (f.filename or "").startswith(_LIBRARY)]
    trace.stack = traceback.StackSummary.from_list(own)
    for other in (trace.__cause__, trace.__context__, *(trace.exceptions or ())):
        if other is not None:
            _trim(other, seen)


def rich_summary(result: PipelineResult) -> Table:
    """Return the summary as a rich table, coloured by status."""
    from rich.markup import escape  # noqa: PLC0415  # rich stays out of the core path
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    # Text, not markup: a pipeline named "etl [prod]" keeps its brackets.
    table = Table(
        title=Text(f"pipeline {printable(result.pipeline)}"),
        caption=Text(summary_footer(result)),
    )
    for name in SUMMARY_HEADER:
        numeric = name in ("attempts", "duration")
        table.add_column(name, justify="right" if numeric else "left")
    for row in summary_rows(result):
        table.add_row(escape(row[0]), _styled(row[1], row[1]), *map(escape, row[2:]))
    return table


def live_table(tracker: ProgressTracker, width: int | None = None) -> Table:
    """Return the tracker's current state as a rich table (redrawn while it runs).

    Each stage takes one line: the note (the last error) is cut to fit
    *width* (the terminal's), never wrapped.
    """
    from rich.markup import escape  # noqa: PLC0415  # rich stays out of the core path
    from rich.table import Table  # noqa: PLC0415

    rows = []
    for view in tracker.views.values():
        elapsed = tracker.elapsed_ms(view)
        rows.append(
            (
                printable(view.id),
                view.pattern.value + ("" if view.critical else ", non-critical"),
                view.state_text(),
                view.items_text(),
                "" if elapsed is None else format_ms(elapsed),
            )
        )
    table = Table(box=None, show_edge=False, pad_edge=False)
    names = ("stage", "pattern", "status", "items", "time")
    used = 0
    for n, name in enumerate(names):
        column = max([len(name), *(len(row[n]) for row in rows)])
        used += column + 2  # rich pads every column with a space each side
        table.add_column(name, justify="right" if name == "time" else "left")
    room = None if width is None else max(width - used - 1, 8)
    table.add_column("note", no_wrap=True)
    for view, row in zip(tracker.views.values(), rows, strict=True):
        note = printable(view.note)
        if room is not None and len(note) > room:
            note = note[: room - 1] + "…"
        table.add_row(
            escape(row[0]),
            row[1],
            _styled(view.state, row[2]),
            row[3],
            row[4],
            escape(note),
        )
    return table


def _styled(state: str, text: str) -> str:
    from rich.markup import escape  # noqa: PLC0415  # rich stays out of the core path

    style = STYLES.get(state)
    return f"[{style}]{escape(text)}[/]" if style else escape(text)

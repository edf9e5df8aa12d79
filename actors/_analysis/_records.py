"""Reading a JSON-lines log back into runs: typed records of what happened.

The log may hold many runs, interleaved, mixed with the application's own
events; each line is one JSON object as written by
:func:`actors.logging.configure_json` (or any structlog JSON setup that keeps
the event name under ``"event"``). Nothing here raises on bad input: lines
that are not JSON objects, or that look like the library's events but carry
fields of the wrong type, are skipped and counted.
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from .._results import PipelineStatus, StageProfile, StageStatus, critical_path

__all__ = [
    "LogReport",
    "RetryRecord",
    "RunRecord",
    "StageRecord",
    "parse_log",
    "read_log",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_MAX_MALFORMED_LINES = 100
MAX_LINE_CHARS = 1_000_000
"""Longer lines are skipped as malformed without being held in memory."""
_MAX_MS = 1e15  # about 31,700 years: a time past this is not a time
_MAX_ITEM_SPANS = 10_000
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes kept by surrogateescape


class RetryRecord(BaseModel):
    """One failed attempt that was retried (a ``stage_retrying`` event)."""

    model_config = _FROZEN

    attempt: int
    """The attempt that failed (the next one is ``attempt + 1``)."""
    delay_ms: float
    """The backoff before the next attempt."""
    error: str
    """Why the attempt failed."""
    error_type: str | None = None
    """The exception's class name, if an exception failed it."""
    at_ms: float
    """When it failed, in ms since the run started."""
    item_index: int | None = None
    """For a fan-out stage, the item that failed."""


class PauseRecord(BaseModel):
    """A named limit paused by a provider's Retry-After (a ``limit_paused`` event)."""

    model_config = _FROZEN

    limit: str
    """The limit's name."""
    stage_id: str
    """The stage that reported it."""
    pause_ms: float
    """How long the limit admits nothing."""
    until_ms: float
    """When it resumes (ms since the run started)."""
    at_ms: float
    """When it was reported."""


class StageRecord(BaseModel):
    """One stage of one run, as its events tell it (times in ms since run start).

    ``status`` is ``None`` when the log ends before the stage did (an
    incomplete run); then only ``started_at_ms`` and ``attempts`` may be known.
    """

    model_config = _FROZEN

    stage_id: str
    """The stage's id."""
    inputs: tuple[str, ...] = ()
    """The stages it depends on (empty if the run's start was not logged)."""
    status: StageStatus | None = None
    """The terminal status, or ``None`` if the stage never finished in the log."""
    attempts: int = 0
    """How many times it ran (fan-out: summed over items)."""
    ready_at_ms: float | None = None
    """When its inputs were all ready (``None``: they never were)."""
    started_at_ms: float | None = None
    """When its first attempt started."""
    finished_at_ms: float | None = None
    """When it reached its terminal status."""
    duration_ms: float = 0.0
    """From first start to the end."""
    queued_ms: float = 0.0
    """Waiting for a concurrency slot once ready (fan-out: summed over items)."""
    attempt_ms: tuple[float, ...] = ()
    """Running time of each attempt (empty for fan-out stages)."""
    running_ms: float = 0.0
    """Time inside attempts (fan-out: summed over items)."""
    backoff_ms: float = 0.0
    """Time between attempts (fan-out: summed over items)."""
    error: str | None = None
    """Why it failed, was cancelled, or never ran."""
    error_type: str | None = None
    """The exception's class name, for failures raised as exceptions."""
    reason: str | None = None
    """Why it was skipped."""
    retries: tuple[RetryRecord, ...] = ()
    """Every retried failure, in order."""
    items: int | None = None
    """Fan-out only: how many items."""
    item_p50_ms: float | None = None
    """Fan-out only: median item duration."""
    item_p95_ms: float | None = None
    """Fan-out only: 95th percentile item duration."""
    item_max_ms: float | None = None
    """Fan-out only: slowest item duration."""
    item_running_ms: float | None = None
    """Fan-out only: time inside item attempts, summed over items."""
    item_spans: tuple[tuple[float, float], ...] = ()
    """Fan-out only: each item's start and end, when the log has item events
    (they are logged at debug level); at most the first 10,000 items."""
    traceback: str | None = None
    """A failed stage's traceback, when the log carries it."""

    @property
    def concurrency(self) -> float | None:
        """Fan-out only: how many items ran at a time, on average."""
        if self.item_running_ms is None or self.duration_ms <= 0:
            return None
        return self.item_running_ms / self.duration_ms

    @property
    def peak_concurrency(self) -> int | None:
        """Fan-out only: the most items running at once (needs item events)."""
        if not self.item_spans:
            return None
        # Ends sort before starts at one instant: a slot handed on is not two.
        edges = sorted(
            [(start, 1) for start, _ in self.item_spans]
            + [(end, -1) for _, end in self.item_spans]
        )
        running = peak = 0
        for _, step in edges:
            running += step
            peak = max(peak, running)
        return peak

    throttle_ms: float | None = None
    """Time queued on named limits (``None``: it took none)."""

    @property
    def wait_ms(self) -> float | None:
        """Time spent waiting for its inputs (the run starts every stage at 0)."""
        return self.ready_at_ms

    @property
    def state(self) -> str:
        """The status, or ``running`` / ``pending`` for an unfinished stage."""
        if self.status is not None:
            return self.status.value
        return "pending" if self.started_at_ms is None else "running"


class RunRecord(BaseModel):
    """One run (one ``execute`` call): its stages and how it ended."""

    model_config = _FROZEN

    run_id: str
    """The run's unique id."""
    pipeline: str
    """The pipeline's name."""
    complete: bool
    """False if the log has no ``pipeline_finished`` for it (crashed or running)."""
    status: PipelineStatus | None = None
    """How it ended; ``None`` if incomplete."""
    success: bool | None = None
    """Whether it succeeded; ``None`` if incomplete."""
    duration_ms: float | None = None
    """The makespan; ``None`` if incomplete."""
    last_event_ms: float = 0.0
    """The time of its latest event (the extent of an incomplete run)."""
    timestamp: str | None = None
    """The ``timestamp`` of its ``pipeline_started`` line, if the app added one."""
    fail_fast: bool | None = None
    """The pipeline's ``fail_fast`` (``None`` if its start was not logged)."""
    timeout_ms: float | None = None
    """The pipeline's own timeout, if any."""
    stages: dict[str, StageRecord]
    """Every stage, in declaration order."""
    critical_path: list[str]
    """The chain of stages that decided the makespan (of what finished)."""
    unresponsive: list[str] = []
    """Stages reported as not stopping after cancellation."""
    observer_failures: int = 0
    """How many observers raised and were disabled in this run."""
    problems: list[str] = []
    """What in the log cannot be true of a run (a dependency cycle, say)."""
    pauses: list[PauseRecord] = []
    """Named limits paused by a Retry-After during the run, in order."""

    @property
    def counts(self) -> dict[str, int]:
        """How many stages ended in each status (plus running and pending)."""
        counts = {status.value: 0 for status in StageStatus}
        for stage in self.stages.values():
            counts[stage.state] = counts.get(stage.state, 0) + 1
        return counts

    @property
    def failed_stages(self) -> list[str]:
        """Ids of the stages that failed."""
        failed = StageStatus.FAILED
        return [s.stage_id for s in self.stages.values() if s.status is failed]

    @property
    def state(self) -> str:
        """The status, or ``incomplete``."""
        return "incomplete" if self.status is None else self.status.value

    def slowest(self, count: int = 3) -> list[StageRecord]:
        """Return the *count* longest-running finished stages, longest first."""
        done = [s for s in self.stages.values() if s.status is not None]
        done.sort(key=lambda s: s.duration_ms, reverse=True)
        return [s for s in done[:count] if s.duration_ms > 0]


class LogReport(BaseModel):
    """Everything read from one log: its runs, and what was not a run event."""

    model_config = _FROZEN

    source: str | None = None
    """Where the log came from (a path, or ``None``)."""
    runs: list[RunRecord]
    """Every run, in the order their first event appears."""
    lines: int = 0
    """Non-blank lines read."""
    events: int = 0
    """Lines that were events of a run."""
    other: int = 0
    """JSON objects that were not the library's events (the application's)."""
    malformed: int = 0
    """Lines skipped: not a JSON object, or a run event with bad fields."""
    malformed_lines: tuple[int, ...] = ()
    """Line numbers (from 1) of the first hundred malformed lines."""
    long_lines: int = 0
    """Malformed lines skipped for being longer than :data:`MAX_LINE_CHARS`."""

    @property
    def incomplete(self) -> list[RunRecord]:
        """The runs with no ``pipeline_finished`` (crashed or still running)."""
        return [run for run in self.runs if not run.complete]

    def run(self, run_id: str) -> RunRecord:
        """Return the run whose id is *run_id* or starts with it.

        Raises:
            LookupError: No run matches, or a prefix matches several; the
                message lists the runs.
        """
        matches = [r for r in self.runs if r.run_id.startswith(run_id)]
        exact = [r for r in matches if r.run_id == run_id]
        if exact:
            return exact[0]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(r.run_id for r in self.runs) or "none"
        if matches:
            raise LookupError(
                f"run id {run_id!r} is ambiguous: it starts "
                f"{len(matches)} runs; give more of it (runs: {known})"
            )
        raise LookupError(f"no run {run_id!r} in the log; runs: {known}")


def read_log(file: str | os.PathLike[str] | TextIO) -> LogReport:
    """Read a JSON-lines log from a path or an open text stream.

    Undecodable bytes make their line malformed, never an error (open a
    stream with ``errors="surrogateescape"`` for the same on a stream). A
    line longer than :data:`MAX_LINE_CHARS` is skipped as malformed without
    being held in memory whole.

    Raises:
        OSError: The file cannot be opened or read.
    """
    if isinstance(file, str | os.PathLike):
        with open(file, encoding="utf-8", errors="surrogateescape") as stream:
            return parse_log(_bounded_lines(stream), source=os.fspath(file))
    return parse_log(_bounded_lines(file), source=getattr(file, "name", None))


_TOO_LONG = "\x00too long"  # a marker no JSON line can equal


def _bounded_lines(stream: TextIO) -> Iterator[str]:
    """Yield the lines of *stream*; a line too long becomes one marker."""
    while True:
        line = stream.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
            while (rest := stream.readline(MAX_LINE_CHARS)) and not rest.endswith("\n"):
                pass  # skip the rest of the line, a bounded chunk at a time
            line = _TOO_LONG
        yield line


def parse_log(lines: Iterable[str], *, source: str | None = None) -> LogReport:
    """Parse JSON lines (any iterable of strings) into a :class:`LogReport`.

    Never raises on what the lines hold: lines that are not JSON objects,
    hold undecodable bytes, times that are not finite or beyond any real
    run, or are longer than :data:`MAX_LINE_CHARS` are counted as malformed.
    """
    builders: dict[str, _RunBuilder] = {}
    counted = events = other = malformed = long_lines = 0
    bad: list[int] = []
    for number, line in enumerate(lines, 1):
        if line is _TOO_LONG or len(line) > MAX_LINE_CHARS:
            kind = _Kind.MALFORMED
            long_lines += 1
            counted += 1
        else:
            text = line.strip()
            if not text:
                continue
            counted += 1
            kind = _read_line(text, builders)
        if kind is _Kind.EVENT:
            events += 1
        elif kind is _Kind.OTHER:
            other += 1
        else:
            malformed += 1
            if len(bad) < _MAX_MALFORMED_LINES:
                bad.append(number)
    return LogReport(
        source=source,
        runs=[builder.build() for builder in builders.values()],
        lines=counted,
        events=events,
        other=other,
        malformed=malformed,
        malformed_lines=tuple(bad),
        long_lines=long_lines,
    )


# --- the events as logged ------------------------------------------------------

_LAX = ConfigDict(extra="ignore", frozen=True)


class _Event(BaseModel):
    model_config = _LAX
    run_id: str
    pipeline: str
    at_ms: float = 0.0


class _PipelineStartedLine(_Event):
    stages: list[str]
    dependencies: dict[str, list[str]]
    fail_fast: bool | None = None
    timeout_ms: float | None = None
    timestamp: str | None = None


class _PipelineFinishedLine(_Event):
    status: PipelineStatus
    success: bool
    duration_ms: float


class _StageLine(_Event):
    stage_id: str


class _StartedLine(_StageLine):
    attempt: int
    item_index: int | None = None
    items: int | None = None


class _RetryingLine(_StageLine):
    attempt: int
    delay_ms: float
    error: str
    error_type: str | None = None
    item_index: int | None = None


class _PausedLine(_StageLine):
    limit: str
    pause_ms: float
    until_ms: float


class _StageEndedLine(_StageLine):
    status: StageStatus
    attempts: int
    duration_ms: float
    error: str | None = None
    error_type: str | None = None
    reason: str | None = None
    exception: Any = None
    profile: StageProfile

    @model_validator(mode="before")
    @classmethod
    def _nest_profile(cls, data: Any) -> Any:
        # The logged line is flat, and its profile fields are StageProfile's
        # own (the logging observer dumps the profile into the event).
        if isinstance(data, dict):
            fields = StageProfile.model_fields
            profile = {k: v for k, v in data.items() if k in fields}
            data = {**data, "profile": profile}
        return data


class _ItemEndedLine(_StageLine):
    item_index: int


# stage_succeeded, stage_failed, stage_skipped, ...
_STAGE_ENDED = frozenset(f"stage_{status.value}" for status in StageStatus)
_ITEM_ENDED = frozenset({"item_succeeded", "item_failed"})
_KNOWN = (
    _STAGE_ENDED
    | _ITEM_ENDED
    | {
        "pipeline_started",
        "pipeline_finished",
        "stage_started",
        "item_started",
        "stage_retrying",
        "stage_unresponsive",
        "offload_orphaned",
        "observer_failed",
        "limit_paused",
    }
)


class _Kind(enum.Enum):
    EVENT = "event"
    OTHER = "other"
    MALFORMED = "malformed"


def _read_line(text: str, builders: dict[str, _RunBuilder]) -> _Kind:
    """Fold one line into its run; say what kind of line it was."""
    if _UNDECODABLE.search(text):
        return _Kind.MALFORMED
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # bad JSON, NaN, nesting, huge ints
        return _Kind.MALFORMED
    if not isinstance(data, dict):
        return _Kind.MALFORMED
    name = data.get("event")
    if name not in _KNOWN or "run_id" not in data:
        return _Kind.OTHER
    if not _plausible(data):
        return _Kind.MALFORMED
    try:
        _fold(name, data, builders)
    except (ValidationError, TypeError, ValueError, RecursionError):
        return _Kind.MALFORMED
    return _Kind.EVENT


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a time")


def _plausible(data: dict[str, Any]) -> bool:
    """False if a number in the event (or a list in it) is no real time."""
    for value in data.values():
        values = value if isinstance(value, list) else (value,)
        for item in values:
            number = isinstance(item, float | int) and not isinstance(item, bool)
            if number and (not math.isfinite(item) or abs(item) > _MAX_MS):
                return False
    return True


def _fold(name: str, data: dict[str, Any], builders: dict[str, _RunBuilder]) -> None:
    """Apply one library event to its run's builder."""
    base = _Event.model_validate(data)
    if name == "pipeline_started":
        started = _PipelineStartedLine.model_validate(data)
        builder = _builder(builders, base)
        builder.started(started)
        return
    if name == "pipeline_finished":
        finished = _PipelineFinishedLine.model_validate(data)
        _builder(builders, base).finished(finished)
        return
    if name == "observer_failed":
        _builder(builders, base).observer_failures += 1
        return
    if name == "limit_paused":
        paused = _PausedLine.model_validate(data)
        _builder(builders, base).pauses.append(
            PauseRecord(
                limit=paused.limit,
                stage_id=paused.stage_id,
                pause_ms=paused.pause_ms,
                until_ms=paused.until_ms,
                at_ms=paused.at_ms,
            )
        )
        return
    line = _StageLine.model_validate(data)
    if name in ("stage_started", "item_started"):
        parsed: _StageLine = _StartedLine.model_validate(data)
    elif name == "stage_retrying":
        parsed = _RetryingLine.model_validate(data)
    elif name in _STAGE_ENDED:
        parsed = _StageEndedLine.model_validate(data)
    else:  # item_succeeded / item_failed / stage_unresponsive / offload_orphaned
        parsed = line
    builder = _builder(builders, base)
    stage = builder.stage(line.stage_id)
    builder.seen(base.at_ms)
    if isinstance(parsed, _StartedLine):
        stage.started(parsed)
        if name == "item_started" and parsed.item_index is not None:
            stage.item_started(parsed.item_index, parsed.at_ms)
    elif isinstance(parsed, _RetryingLine):
        stage.retries.append(
            RetryRecord(
                attempt=parsed.attempt,
                delay_ms=parsed.delay_ms,
                error=parsed.error,
                error_type=parsed.error_type,
                at_ms=parsed.at_ms,
                item_index=parsed.item_index,
            )
        )
    elif isinstance(parsed, _StageEndedLine):
        stage.ended = parsed
    elif name in _ITEM_ENDED:
        stage.item_ended(_ItemEndedLine.model_validate(data))
    elif name == "stage_unresponsive":
        builder.unresponsive.append(line.stage_id)


_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"


def _traceback_text(exception: Any) -> str | None:
    """Return a traceback as text from a logged ``exception`` field.

    ``configure_json`` logs it as structlog's structured form (a list of
    exceptions, each with its frames; the library's own frames are already
    trimmed); other set-ups log the formatted text. Anything else: ``None``.
    """
    if isinstance(exception, str):
        return exception.rstrip("\n") or None
    if not isinstance(exception, list):
        return None
    blocks: list[str] = []
    was_cause = False
    for stack in reversed(exception):  # structlog lists the last raised first
        if not isinstance(stack, dict):
            return None
        lines = ["Traceback (most recent call last):"]
        for frame in stack.get("frames") or ():
            if isinstance(frame, dict):
                lines.append(
                    f'  File "{frame.get("filename", "?")}", line '
                    f"{frame.get('lineno', '?')}, in {frame.get('name', '?')}"
                )
        value = stack.get("exc_value")
        kind = str(stack.get("exc_type", "Exception"))
        lines.append(f"{kind}: {value}" if value else kind)
        if blocks:  # the previous block was this one's cause or context
            blocks.append(_CAUSE if was_cause else _CONTEXT)
        was_cause = bool(stack.get("is_cause"))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) if blocks else None


def _builder(builders: dict[str, _RunBuilder], event: _Event) -> _RunBuilder:
    builder = builders.get(event.run_id)
    if builder is None:
        builder = builders[event.run_id] = _RunBuilder(event.run_id, event.pipeline)
    builder.seen(event.at_ms)
    return builder


@dataclass(eq=False)
class _StageBuilder:
    stage_id: str
    inputs: tuple[str, ...] = ()
    first_start_ms: float | None = None
    attempts: int = 0
    retries: list[RetryRecord] = field(default_factory=list)
    ended: _StageEndedLine | None = None
    item_starts: dict[int, float] = field(default_factory=dict)
    item_spans: list[tuple[float, float]] = field(default_factory=list)

    def item_started(self, index: int, at_ms: float) -> None:
        if len(self.item_spans) + len(self.item_starts) < _MAX_ITEM_SPANS:
            self.item_starts.setdefault(index, at_ms)

    def item_ended(self, line: _ItemEndedLine) -> None:
        start = self.item_starts.pop(line.item_index, None)
        if start is not None:
            self.item_spans.append((start, max(start, line.at_ms)))

    def started(self, line: _StartedLine) -> None:
        if self.first_start_ms is None:
            self.first_start_ms = line.at_ms
        if line.items is None:  # a fan-out stage's own start is not an attempt
            self.attempts += 1

    def build(self) -> StageRecord:
        retries = tuple(self.retries)
        end = self.ended
        if end is None:
            return StageRecord(
                stage_id=self.stage_id,
                inputs=self.inputs,
                attempts=self.attempts,
                started_at_ms=self.first_start_ms,
                retries=retries,
            )
        profile = end.profile
        return StageRecord(
            stage_id=self.stage_id,
            inputs=self.inputs,
            status=end.status,
            attempts=end.attempts,
            ready_at_ms=profile.ready_at_ms,
            started_at_ms=profile.started_at_ms,
            finished_at_ms=profile.finished_at_ms
            if profile.finished_at_ms is not None
            else end.at_ms,
            duration_ms=end.duration_ms,
            queued_ms=profile.queued_ms,
            attempt_ms=profile.attempt_ms,
            running_ms=profile.running_ms,
            backoff_ms=profile.backoff_ms,
            error=end.error,
            error_type=end.error_type,
            reason=end.reason,
            retries=retries,
            items=profile.items,
            item_p50_ms=profile.item_p50_ms,
            item_p95_ms=profile.item_p95_ms,
            item_max_ms=profile.item_max_ms,
            item_running_ms=profile.item_running_ms,
            item_spans=tuple(sorted(self.item_spans)),
            traceback=_traceback_text(end.exception),
            throttle_ms=profile.throttle_ms,
        )


@dataclass(eq=False)
class _RunBuilder:
    run_id: str
    pipeline: str
    stages: dict[str, _StageBuilder] = field(default_factory=dict)
    dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    start: _PipelineStartedLine | None = None
    end: _PipelineFinishedLine | None = None
    last_ms: float = 0.0
    unresponsive: list[str] = field(default_factory=list)
    observer_failures: int = 0
    pauses: list[PauseRecord] = field(default_factory=list)

    def seen(self, at_ms: float) -> None:
        self.last_ms = max(self.last_ms, at_ms)

    def stage(self, stage_id: str) -> _StageBuilder:
        stage = self.stages.get(stage_id)
        if stage is None:
            stage = self.stages[stage_id] = _StageBuilder(stage_id)
        return stage

    def started(self, line: _PipelineStartedLine) -> None:
        self.start = line
        self.dependencies = {k: tuple(v) for k, v in line.dependencies.items()}
        # Declaration order first; stages already seen keep their records.
        seen, self.stages = self.stages, {}
        for stage_id in line.stages:
            self.stages[stage_id] = seen.pop(stage_id, _StageBuilder(stage_id))
        self.stages.update(seen)
        for stage_id, stage in self.stages.items():
            stage.inputs = self.dependencies.get(stage_id, ())

    def finished(self, line: _PipelineFinishedLine) -> None:
        self.end = line

    def build(self) -> RunRecord:
        stages = {stage_id: b.build() for stage_id, b in self.stages.items()}
        dependencies, problems = _without_cycles(self.dependencies)
        path = critical_path(
            {s: r.finished_at_ms for s, r in stages.items()},
            dependencies,
            started={s for s, r in stages.items() if r.started_at_ms is not None},
        )
        start, end = self.start, self.end
        return RunRecord(
            run_id=self.run_id,
            pipeline=self.pipeline,
            complete=end is not None,
            status=None if end is None else end.status,
            success=None if end is None else end.success,
            duration_ms=None if end is None else end.duration_ms,
            last_event_ms=self.last_ms,
            timestamp=None if start is None else start.timestamp,
            fail_fast=None if start is None else start.fail_fast,
            timeout_ms=None if start is None else start.timeout_ms,
            stages=stages,
            critical_path=path,
            unresponsive=self.unresponsive,
            observer_failures=self.observer_failures,
            problems=problems,
            pauses=self.pauses,
        )


def _without_cycles(
    dependencies: dict[str, tuple[str, ...]],
) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """Return *dependencies* with every edge that closes a cycle dropped.

    A real run's dependencies never have a cycle (the definition was
    validated), so a log that says otherwise was edited or corrupted: each
    cycle is reported as a problem of the run, as a path ``a -> b -> a``,
    and the walk back along the critical path cannot loop.
    """
    kept: dict[str, tuple[str, ...]] = {}
    problems: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in dependencies:
        if root in state:
            continue
        state[root] = 1
        path = [root]
        stack = [iter(dependencies.get(root, ()))]
        kept[root] = ()
        while stack:
            node = path[-1]
            upstream = next(stack[-1], None)
            if upstream is None:
                state[node] = 2
                path.pop()
                stack.pop()
                continue
            if state.get(upstream) == 1:
                cycle = [*path[path.index(upstream) :], upstream]
                problems.append(
                    "dependencies form a cycle: " + " -> ".join(reversed(cycle))
                )
                continue
            kept[node] = (*kept[node], upstream)
            if upstream not in state:
                state[upstream] = 1
                kept[upstream] = ()
                path.append(upstream)
                stack.append(iter(dependencies.get(upstream, ())))
    return kept, problems

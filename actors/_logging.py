"""Events as log lines: through structlog if the application configured it, else stdlib.

Decided once per run, when the run starts: with structlog configured
(:func:`structlog.is_configured`), every event is a structlog event on the
``"actors"`` logger; otherwise it is a :mod:`logging` record on the standard
library logger ``"actors"``, whose message reads ``stage_failed stage_id='b'
error=...`` and whose ``actors`` attribute holds the event's fields. So a host
that configured nothing sees only warnings and errors, on standard error
(Python's last-resort handler), and ``logging.basicConfig(...)`` or
``logging.getLogger("actors").setLevel(...)`` decide the rest. The library
never writes to standard output.

Levels are resolved once per run too: the observer subscribes only to the hooks
whose level is enabled, so an event nobody will read is never built.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from ._events import (
    CheckpointCorrupt,
    CheckpointFailed,
    CheckpointSkipped,
    ItemFinished,
    LimitPaused,
    LimitWaited,
    OffloadOrphaned,
    PipelineFinished,
    PipelineStarted,
    StageFinished,
    StageRestored,
    StageRetrying,
    StageStarted,
    StageUnresponsive,
)
from ._observers import Observer
from ._results import PipelineStatus, StageStatus

DEBUG, INFO, WARNING, ERROR = (
    logging.DEBUG,
    logging.INFO,
    logging.WARNING,
    logging.ERROR,
)

_STAGE_EVENT = {
    StageStatus.SUCCEEDED: ("stage_succeeded", INFO),
    StageStatus.FAILED: ("stage_failed", ERROR),
    StageStatus.SKIPPED: ("stage_skipped", INFO),
    StageStatus.CANCELLED: ("stage_cancelled", WARNING),
    StageStatus.UPSTREAM_FAILED: ("stage_upstream_failed", WARNING),
}

# The levels each hook can log at: a hook is subscribed if any is enabled.
_HOOK_LEVELS: dict[str, frozenset[int]] = {
    "pipeline_started": frozenset({INFO}),
    "stage_started": frozenset({INFO}),
    "item_started": frozenset({DEBUG}),
    "stage_retrying": frozenset({WARNING}),
    "item_finished": frozenset({DEBUG}),
    "stage_finished": frozenset(level for _, level in _STAGE_EVENT.values()),
    "stage_unresponsive": frozenset({WARNING}),
    "limit_waited": frozenset({DEBUG}),
    "limit_paused": frozenset({WARNING}),
    "offload_orphaned": frozenset({WARNING}),
    "pipeline_finished": frozenset({INFO, WARNING, ERROR}),
    "stage_restored": frozenset({INFO}),
    "checkpoint_skipped": frozenset({WARNING}),
    "checkpoint_corrupt": frozenset({WARNING}),
    "checkpoint_failed": frozenset({WARNING}),
}

_METHOD = {DEBUG: "debug", INFO: "info", WARNING: "warning", ERROR: "error"}


class Sink(Protocol):
    """Where one run's events go, resolved when the run starts."""

    def enabled(self, level: int) -> bool:
        """Return whether an event at *level* would be written."""

    def write(
        self,
        level: int,
        event: str,
        fields: dict[str, Any],
        exc: BaseException | None = None,
    ) -> None:
        """Write one event with its fields (and the exception's traceback)."""


class _StructlogSink:
    """structlog's ``"actors"`` logger, resolved once (not the lazy proxy per call)."""

    __slots__ = ("_check", "_methods")

    def __init__(self) -> None:
        logger = structlog.get_logger("actors").bind()
        self._methods: dict[int, Callable[..., Any]] = {
            level: getattr(logger, name) for level, name in _METHOD.items()
        }
        self._check: Callable[[int], bool] | None = getattr(
            logger, "is_enabled_for", None
        )

    def enabled(self, level: int) -> bool:
        return True if self._check is None else bool(self._check(level))

    def write(
        self,
        level: int,
        event: str,
        fields: dict[str, Any],
        exc: BaseException | None = None,
    ) -> None:
        if exc is not None:
            fields["exc_info"] = exc
        self._methods[level](event, **fields)


class _StdlibSink:
    """The standard library logger ``"actors"``; fields on ``record.actors``."""

    __slots__ = ("_logger",)

    def __init__(self) -> None:
        self._logger = logging.getLogger("actors")

    def enabled(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)

    def write(
        self,
        level: int,
        event: str,
        fields: dict[str, Any],
        exc: BaseException | None = None,
    ) -> None:
        exc_info = None if exc is None else (type(exc), exc, exc.__traceback__)
        self._logger.log(
            level,
            "%s",
            _message(event, fields),
            exc_info=exc_info,
            extra={"actors": {"event": event, **fields}},
        )


def current_sink() -> Sink:
    """Return where events go now: structlog if configured, else stdlib logging."""
    return _StructlogSink() if structlog.is_configured() else _StdlibSink()


# Fields left out of the one-line message (they stay on ``record.actors``):
# the run's identity, and the profile's detail.
_DETAIL = frozenset(
    {
        "run_id",
        "pipeline",
        "at_ms",
        "ready_at_ms",
        "started_at_ms",
        "finished_at_ms",
        "queued_ms",
        "attempt_ms",
        "backoff_ms",
        "item_p50_ms",
        "item_p95_ms",
        "item_max_ms",
        "item_running_ms",
        "throttle_ms",
        "counts",
        "critical_path",
        "dependencies",
    }
)


def _message(event: str, fields: dict[str, Any]) -> str:
    """Render ``event key=value ...``: values as repr, control characters escaped."""
    parts = [event]
    for key, value in fields.items():
        if value is None or key in _DETAIL:
            continue
        parts.append(f"{key}={value!r}")
    return " ".join(parts)


def report_observer_failure(
    observer: object, hook: str, event: object, exc: BaseException
) -> None:
    """Log ``observer_failed`` for an observer the run disabled."""
    fields = {
        # Every event has these, so the log names the run.
        "run_id": getattr(event, "run_id", None),
        "pipeline": getattr(event, "pipeline", None),
        "stage_id": getattr(event, "stage_id", None),
        "observer": type(observer).__qualname__,
        "hook": hook,
        "error": f"{type(exc).__name__}: {_safe_str(exc)}",
        "error_type": type(exc).__name__,
    }
    current_sink().write(ERROR, "observer_failed", fields, exc)


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return "<message could not be rendered>"


class LoggingObserver(Observer):
    """Logs each event of a run, through structlog or the stdlib ``"actors"`` logger.

    Every executor adds one to each run unless created with
    ``log_events=False``. Where events go, and which levels are enabled, is
    decided when each run starts (see :mod:`actors.logging`); hooks whose
    level is disabled are not called at all. Fan-out items log at debug.
    """

    def __init__(self) -> None:
        self._sink: Sink = _StdlibSink()
        self._enabled: frozenset[int] = frozenset()

    def _actors_subscribe(self) -> frozenset[str]:
        """Resolve the sink and levels for a run; return the hooks worth calling."""
        self._sink = sink = current_sink()
        self._enabled = enabled = frozenset(
            level for level in _METHOD if sink.enabled(level)
        )
        return frozenset(
            hook for hook, levels in _HOOK_LEVELS.items() if levels & enabled
        )

    def pipeline_started(self, event: PipelineStarted) -> None:
        """Log ``pipeline_started``."""
        self._sink.write(
            INFO,
            "pipeline_started",
            {
                "run_id": event.run_id,
                "pipeline": event.pipeline,
                "stages": list(event.stage_ids),
                "dependencies": {k: list(v) for k, v in event.dependencies.items()},
                "fail_fast": event.fail_fast,
                "timeout_ms": event.timeout_ms,
                "at_ms": event.at_ms,
            },
        )

    def stage_started(self, event: StageStarted) -> None:
        """Log ``stage_started``."""
        fields: dict[str, Any] = {
            "run_id": event.run_id,
            "pipeline": event.pipeline,
            "stage_id": event.stage_id,
            "attempt": event.attempt,
            "at_ms": event.at_ms,
        }
        if event.items is not None:
            fields["items"] = event.items
        self._sink.write(INFO, "stage_started", fields)

    def item_started(self, event: StageStarted) -> None:
        """Log ``item_started`` at debug level."""
        self._sink.write(
            DEBUG,
            "item_started",
            {
                "run_id": event.run_id,
                "pipeline": event.pipeline,
                "stage_id": event.stage_id,
                "item_index": event.item_index,
                "attempt": event.attempt,
                "at_ms": event.at_ms,
            },
        )

    def stage_retrying(self, event: StageRetrying) -> None:
        """Log ``stage_retrying`` with the delay and the error.

        A fan-out item's retry adds its ``item_index``; it stays at warning
        level, since a retry is worth seeing even when items are not.
        """
        fields: dict[str, Any] = {
            "run_id": event.run_id,
            "pipeline": event.pipeline,
            "stage_id": event.stage_id,
            "attempt": event.attempt,
            "delay_ms": event.delay_ms,
            "error": event.error,
            "error_type": event.error_type,
            "at_ms": event.at_ms,
        }
        if event.item_index is not None:
            fields["item_index"] = event.item_index
        self._sink.write(WARNING, "stage_retrying", fields)

    def item_finished(self, event: ItemFinished) -> None:
        """Log ``item_succeeded`` or ``item_failed`` (with its traceback) at debug."""
        fields: dict[str, Any] = {
            "run_id": event.run_id,
            "pipeline": event.pipeline,
            "stage_id": event.stage_id,
            "item_index": event.item_index,
            "status": "succeeded" if event.success else "failed",
            "attempts": event.attempts,
            "duration_ms": event.duration_ms,
            "at_ms": event.at_ms,
        }
        if event.success:
            self._sink.write(DEBUG, "item_succeeded", fields)
            return
        fields["error"] = event.error
        fields["error_type"] = event.error_type
        self._sink.write(DEBUG, "item_failed", fields, event.exception)

    def stage_finished(self, event: StageFinished) -> None:
        """Log ``stage_<status>`` with the result and its profile."""
        result = event.result
        name, level = _STAGE_EVENT[result.status]
        if level not in self._enabled:
            return
        fields: dict[str, Any] = {
            "run_id": event.run_id,
            "pipeline": event.pipeline,
            "stage_id": event.stage_id,
            "status": result.status.value,
            "attempts": result.attempts,
            "duration_ms": result.duration_ms,
            "at_ms": event.at_ms,
        }
        exc = None
        if result.error is not None:
            fields["error"] = result.error
            exc = result.exception
            fields["error_type"] = None if exc is None else type(exc).__name__
        if result.status is StageStatus.SKIPPED:
            fields["reason"] = result.metadata.get("reason")
        if result.item_errors and result.profile and result.profile.items is not None:
            # A "collect" fan-out kept going past failed items: say how many.
            failed = len(result.item_errors)
            fields["items_succeeded"] = result.profile.items - failed
            fields["items_failed"] = failed
            fields["failed_items"] = sorted(result.item_errors)
            fields["summary"] = event.summary
        if result.profile is not None:
            fields.update(result.profile.model_dump(exclude_none=True))
        # Only a failure carries its traceback: a cancelled stage's exception
        # is the cancellation, not news.
        self._sink.write(
            level, name, fields, exc if result.status is StageStatus.FAILED else None
        )

    def stage_unresponsive(self, event: StageUnresponsive) -> None:
        """Log ``stage_unresponsive`` as a warning."""
        self._sink.write(
            WARNING,
            "stage_unresponsive",
            {
                "run_id": event.run_id,
                "pipeline": event.pipeline,
                "stage_id": event.stage_id,
                "cancelled_at_ms": event.cancelled_at_ms,
                "at_ms": event.at_ms,
            },
        )

    def limit_waited(self, event: LimitWaited) -> None:
        """Log ``limit_waited`` at debug level (one per grant)."""
        fields: dict[str, Any] = {
            "run_id": event.run_id,
            "pipeline": event.pipeline,
            "stage_id": event.stage_id,
            "limit": event.limit,
            "waited_ms": event.waited_ms,
            "requests": event.requests,
            "tokens": event.tokens,
            "at_ms": event.at_ms,
        }
        if event.item_index is not None:
            fields["item_index"] = event.item_index
        self._sink.write(DEBUG, "limit_waited", fields)

    def limit_paused(self, event: LimitPaused) -> None:
        """Log ``limit_paused`` as a warning: a provider pushed back."""
        self._sink.write(
            WARNING,
            "limit_paused",
            {
                "run_id": event.run_id,
                "pipeline": event.pipeline,
                "stage_id": event.stage_id,
                "limit": event.limit,
                "pause_ms": event.pause_ms,
                "until_ms": event.until_ms,
                "at_ms": event.at_ms,
            },
        )

    def pipeline_finished(self, event: PipelineFinished) -> None:
        """Log ``pipeline_finished`` with the status and counts per status."""
        result = event.result
        # A run someone cancelled is worth a warning; a failure is an error.
        if result.success:
            level = INFO
        elif result.status is PipelineStatus.CANCELLED:
            level = WARNING
        else:
            level = ERROR
        if level not in self._enabled:
            return
        counts = {status.value: 0 for status in StageStatus}
        for stage in result.stage_results.values():
            counts[stage.status.value] += 1
        self._sink.write(
            level,
            "pipeline_finished",
            {
                "run_id": event.run_id,
                "pipeline": event.pipeline,
                "status": result.status.value,
                "success": result.success,
                "duration_ms": result.total_duration_ms,
                "counts": counts,
                "failed_stages": result.failed_stages,
                "critical_path": result.critical_path(),
                "at_ms": event.at_ms,
            },
        )

    def offload_orphaned(self, event: OffloadOrphaned) -> None:
        """Log ``offload_orphaned`` as a warning: cancelled work may still run."""
        self._sink.write(
            WARNING,
            "offload_orphaned",
            {
                "run_id": event.run_id,
                "pipeline": event.pipeline,
                "stage_id": event.stage_id,
                "item_index": event.item_index,
                "backend": event.backend,
                "key": event.key,
                "at_ms": event.at_ms,
            },
        )

    def stage_restored(self, event: StageRestored) -> None:
        """Log ``stage_restored``."""
        self._sink.write(INFO, "stage_restored", _fields(event))

    def checkpoint_skipped(self, event: CheckpointSkipped) -> None:
        """Log ``checkpoint_skipped`` as a warning."""
        self._sink.write(WARNING, "checkpoint_skipped", _fields(event))

    def checkpoint_corrupt(self, event: CheckpointCorrupt) -> None:
        """Log ``checkpoint_corrupt`` as a warning."""
        self._sink.write(WARNING, "checkpoint_corrupt", _fields(event))

    def checkpoint_failed(self, event: CheckpointFailed) -> None:
        """Log ``checkpoint_failed`` as a warning."""
        self._sink.write(WARNING, "checkpoint_failed", _fields(event))


def _fields(event: Any) -> dict[str, Any]:
    """Return an event record's fields, in declaration order."""
    return {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}

"""Every event as one structlog event: the library logs, the application configures."""

from __future__ import annotations

from typing import Any

import structlog

from ._events import (
    ItemFinished,
    PipelineFinished,
    PipelineStarted,
    StageFinished,
    StageRetrying,
    StageStarted,
    StageUnresponsive,
)
from ._observers import Observer
from ._results import PipelineStatus, StageStatus

logger = structlog.get_logger("actors")

_STAGE_EVENT = {
    StageStatus.SUCCEEDED: ("stage_succeeded", "info"),
    StageStatus.FAILED: ("stage_failed", "error"),
    StageStatus.SKIPPED: ("stage_skipped", "info"),
    StageStatus.CANCELLED: ("stage_cancelled", "warning"),
    StageStatus.UPSTREAM_FAILED: ("stage_upstream_failed", "warning"),
}


class LoggingObserver(Observer):
    """Logs each event through structlog's ``"actors"`` logger.

    Every executor has one unless created with ``log_events=False``.
    Fan-out items log at debug level.
    """

    def pipeline_started(self, event: PipelineStarted) -> None:
        """Log ``pipeline_started``."""
        logger.info(
            "pipeline_started",
            run_id=event.run_id,
            pipeline=event.pipeline,
            stages=list(event.stage_ids),
            dependencies={k: list(v) for k, v in event.dependencies.items()},
            fail_fast=event.fail_fast,
            timeout_ms=event.timeout_ms,
            at_ms=event.at_ms,
        )

    def stage_started(self, event: StageStarted) -> None:
        """Log ``stage_started`` (``item_started`` at debug level for items)."""
        if event.item_index is None:
            fields: dict[str, Any] = {}
            if event.items is not None:
                fields["items"] = event.items
            logger.info(
                "stage_started",
                run_id=event.run_id,
                pipeline=event.pipeline,
                stage_id=event.stage_id,
                attempt=event.attempt,
                at_ms=event.at_ms,
                **fields,
            )
        else:
            logger.debug(
                "item_started",
                run_id=event.run_id,
                pipeline=event.pipeline,
                stage_id=event.stage_id,
                item_index=event.item_index,
                attempt=event.attempt,
                at_ms=event.at_ms,
            )

    def stage_retrying(self, event: StageRetrying) -> None:
        """Log ``stage_retrying`` with the delay and the error.

        A fan-out item's retry adds its ``item_index``; it stays at warning
        level, since a retry is worth seeing even when items are not.
        """
        fields: dict[str, Any] = {}
        if event.item_index is not None:
            fields["item_index"] = event.item_index
        logger.warning(
            "stage_retrying",
            run_id=event.run_id,
            pipeline=event.pipeline,
            stage_id=event.stage_id,
            attempt=event.attempt,
            delay_ms=event.delay_ms,
            error=event.error,
            error_type=event.error_type,
            at_ms=event.at_ms,
            **fields,
        )

    def item_finished(self, event: ItemFinished) -> None:
        """Log ``item_succeeded`` or ``item_failed`` at debug level."""
        fields: dict[str, Any] = {}
        if not event.success:
            fields["error"] = event.error
            fields["error_type"] = event.error_type
        logger.debug(
            "item_succeeded" if event.success else "item_failed",
            run_id=event.run_id,
            pipeline=event.pipeline,
            stage_id=event.stage_id,
            item_index=event.item_index,
            status="succeeded" if event.success else "failed",
            attempts=event.attempts,
            duration_ms=event.duration_ms,
            at_ms=event.at_ms,
            **fields,
        )

    def stage_finished(self, event: StageFinished) -> None:
        """Log ``stage_<status>`` with the result and its profile."""
        result = event.result
        name, level = _STAGE_EVENT[result.status]
        fields: dict[str, Any] = {
            "run_id": event.run_id,
            "pipeline": event.pipeline,
            "stage_id": event.stage_id,
            "status": result.status.value,
            "attempts": result.attempts,
            "duration_ms": result.duration_ms,
            "at_ms": event.at_ms,
        }
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
        getattr(logger, level)(name, **fields)

    def stage_unresponsive(self, event: StageUnresponsive) -> None:
        """Log ``stage_unresponsive`` as a warning."""
        logger.warning(
            "stage_unresponsive",
            run_id=event.run_id,
            pipeline=event.pipeline,
            stage_id=event.stage_id,
            cancelled_at_ms=event.cancelled_at_ms,
            at_ms=event.at_ms,
        )

    def pipeline_finished(self, event: PipelineFinished) -> None:
        """Log ``pipeline_finished`` with the status and counts per status."""
        result = event.result
        counts = {status.value: 0 for status in StageStatus}
        for stage in result.stage_results.values():
            counts[stage.status.value] += 1
        # A run someone cancelled is worth a warning; a failure is an error.
        if result.success:
            log = logger.info
        elif result.status is PipelineStatus.CANCELLED:
            log = logger.warning
        else:
            log = logger.error
        log(
            "pipeline_finished",
            run_id=event.run_id,
            pipeline=event.pipeline,
            status=result.status.value,
            success=result.success,
            duration_ms=result.total_duration_ms,
            counts=counts,
            failed_stages=result.failed_stages,
            critical_path=result.critical_path(),
            at_ms=event.at_ms,
        )

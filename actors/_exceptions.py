"""The exceptions that actors raises."""

from __future__ import annotations

from collections.abc import Sequence


class ActorsError(Exception):
    """Root of every exception that actors raises on purpose."""


class PipelineValidationError(ActorsError, ValueError):
    """A pipeline definition breaks one or more rules.

    Raised by :meth:`PipelineExecutor.execute` (and :func:`actors.run`) before
    any stage runs; :meth:`PipelineDefinition.validate_pipeline` returns the
    same messages instead of raising. Never raised once a run has started.

    Attributes:
        errors: Every problem found, one message each, in a stable order.
    """

    errors: tuple[str, ...]

    def __init__(self, pipeline: str, errors: Sequence[str]) -> None:
        self.errors = tuple(errors)
        count = len(self.errors)
        noun = "problem" if count == 1 else "problems"
        lines = "\n".join(f"  - {error}" for error in self.errors)
        super().__init__(f"pipeline {pipeline!r} has {count} {noun}:\n{lines}")


class StageTimeoutError(ActorsError, TimeoutError):
    """One attempt of a stage (or of a fan-out item) ran past its ``timeout_ms``.

    Never raised to the caller: it is the ``exception`` of the failed
    :class:`StageResult`, so a retry policy can match it (it is a builtin
    :class:`TimeoutError`, and its text contains "timed out").
    """


class StageContractError(ActorsError, RuntimeError):
    """A stage broke the stage contract.

    For example it returned something other than a :class:`StageResult` from
    ``execute``, or swallowed :class:`trio.Cancelled`. Never raised to the
    caller: it is the ``exception`` of the stage's :class:`StageResult`.
    """


class HostClosedError(ActorsError, RuntimeError):
    """An asyncio host (:func:`actors.aio.trio_host`) is closing or closed.

    Raised by :meth:`TrioHost.execute <actors.aio.TrioHost.execute>` when it
    is called once the host's ``async with`` block is being left, and to the
    callers whose runs were still going when it was left (those runs were
    cancelled). Never raised by a run that was started and finished while the
    host was open, and never raised under plain trio.
    """


class UnknownRunError(ActorsError, LookupError):
    """A store holds no readable run under the id asked for.

    Raised by a checkpoint store's run lookups, and by ``execute(...,
    resume=...)`` before any stage runs, when the store does not hold the run,
    or its record or journal cannot be read (missing, corrupt, tampered with,
    or unreadable). Never raised once a run has started.
    """


class UnencodableOutputError(ActorsError, TypeError):
    """A stage's output cannot be stored as JSON by the type it declares.

    Raised by the checkpoint codec; the executor catches it, runs on without
    checkpointing that stage and reports ``checkpoint_skipped``. Never raised
    to the caller of ``execute``.
    """


class StreamReplayMismatch(ActorsError, RuntimeError):
    """A retried streaming stage re-yielded an item unlike the one it delivered.

    Only with ``verify_replay=True`` on a stage that is not ``resumable``:
    the items an earlier attempt delivered are compared (by a digest of
    their ``repr()``) as the generator yields them again. Never raised to
    the caller: it is the ``exception`` of the failed stage, never retried.
    """

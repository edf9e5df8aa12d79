"""The attempt loop: the one place that calls user code, with retries and timeouts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from .._events import StageRetrying, StageStarted
from .._exceptions import StageContractError, StageTimeoutError
from .._results import StageResult
from .._util import describe, leaves

if TYPE_CHECKING:
    from .._graph import Node
    from ._state import RunState, StageState


@dataclass(eq=False, slots=True)
class Outcome:
    """How a stage (or one fan-out item) ended, after all its attempts."""

    ok: bool
    output: Any = None
    error: str = ""
    exception: BaseException | None = None
    returned: StageResult[Any] | None = None
    attempts: int = 0
    begin: float = 0.0
    end: float = 0.0


def failed(exc: BaseException, prefix: str = "") -> Outcome:
    """Return the outcome of user code that raised *exc*."""
    return Outcome(
        False, error=prefix + describe(exc), exception=own_frames_dropped(exc)
    )


def own_frames_dropped(exc: BaseException) -> BaseException:
    """Drop the kernel's frames from the start of *exc*'s traceback; return *exc*.

    The exception outlives the run on its StageResult. A frame of ours on its
    traceback holds the run state, hence that very result: a reference cycle
    left to the garbage collector. The stage's own frames, the useful part,
    stay.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__", "").startswith(
        _KERNEL
    ):
        tb = tb.tb_next
    exc.__traceback__ = tb
    return exc


_KERNEL = __name__.rpartition(".")[0] + "."


async def evaluate(condition: Any, context: Any) -> bool:
    """Call ``condition(context)``; never yields.

    A coroutine on purpose: a synchronous frame that raises keeps its
    caller's frame as ``f_back``. Called from here, that caller holds only
    the condition and the context, not the actor (see own_frames_dropped).
    """
    return bool(condition(context))


async def attempts(
    run: RunState, node: Node, state: StageState, value: Any, item: int | None
) -> Outcome:
    """Run the stage function on *value* until it succeeds or may not retry.

    The outcome's ``begin`` and ``end`` are the trio times of the first
    attempt's start and the last attempt's end. Cancellation is never
    retried: it propagates once the attempt's running time is recorded.
    """
    retry, call, context = node.retry, node.call, run.context
    timeout, clock, dispatch = node.timeout_s, run.clock, run.dispatch
    returns_result = node.returns_result
    first_begin = None
    attempt = 0
    while True:
        attempt += 1
        state.attempts += 1
        if dispatch.stage_started:
            started = StageStarted(
                run_id=run.run_id,
                pipeline=run.graph.name,
                stage_id=node.id,
                attempt=attempt,
                at_ms=run.now_ms(),
                item_index=item,
            )
            dispatch.emit("stage_started", started)
        begin = clock.current_time()
        if first_begin is None:
            first_begin = begin
        # Attempt hooks (tracing, the testing kit) wrap the call in this task,
        # so the context they enter is current in the user's code.
        invoke = call
        if dispatch.attempt_hooks:
            invoke = partial(_hooked, run, node.id, item, attempt, call)
        try:
            if timeout is None:
                raw = await invoke(value, context)
            else:
                with trio.CancelScope(deadline=begin + timeout) as scope:
                    raw = await invoke(value, context)
                if scope.cancelled_caught or clock.current_time() > scope.deadline:
                    # Cancelled and still returned: it swallowed Cancelled.
                    # Past the deadline without a checkpoint: a plain
                    # timeout (it never saw the cancellation).
                    raise _timed_out(
                        node,
                        attempt,
                        swallowed=scope.cancel_called and not scope.cancelled_caught,
                    )
            if returns_result or isinstance(raw, StageResult):
                outcome = _judge(node, raw)
            else:
                outcome = Outcome(True, output=raw)
        except Exception as exc:
            outcome = failed(exc)
        except BaseExceptionGroup as group:
            # Cleanup that fails while the stage is being cancelled: keep
            # the errors on the cancelled result and let Cancelled go on.
            cancelled, errors = group.split(trio.Cancelled)
            _ran(state, item, clock.current_time() - begin)
            if cancelled is None or not isinstance(errors, ExceptionGroup):
                raise
            state.cancel_errors = [describe(exc) for exc in leaves(errors)]
            raise cancelled from errors
        except BaseException:
            # Cancelled (or interrupted): never retried, but the attempt
            # did run until now, and the profile says so.
            _ran(state, item, clock.current_time() - begin)
            raise
        end = clock.current_time()
        _ran(state, item, end - begin)
        if run.reason is not None:
            # It returned while the run was cancelled. Later than the
            # cancel, it ran on: it swallowed Cancelled. In the same
            # instant it may have swallowed it, or been woken just before
            # the cancel; either way its result is not kept. Compared
            # unrounded: ms rounded to 1 ns accused stages that ended in the
            # very instant of the cancel.
            if end > run.cancelled_at:
                state.swallowed_cancel = True
            await trio.lowlevel.checkpoint()
        outcome.attempts = attempt
        outcome.begin, outcome.end = first_begin, end
        if outcome.ok or (
            attempt >= retry.max_attempts
            or not retry.should_retry(outcome.error, outcome.exception)
        ):
            return outcome
        delay_ms = retry.delay_ms(attempt + 1, run.rng)
        if dispatch.stage_retrying:
            exc_type = outcome.exception
            event = StageRetrying(
                run_id=run.run_id,
                pipeline=run.graph.name,
                stage_id=node.id,
                attempt=attempt,
                delay_ms=delay_ms,
                error=outcome.error,
                error_type=None if exc_type is None else type(exc_type).__name__,
                at_ms=run.now_ms(),
                item_index=item,
            )
            dispatch.emit("stage_retrying", event)
        pause = clock.current_time()
        try:
            await trio.sleep(delay_ms / 1000)
        finally:
            # Measured, so a backoff cut short by cancellation counts only
            # the time actually spent.
            state.backoff_ms += (clock.current_time() - pause) * 1000


async def _hooked(  # noqa: PLR0917  # bound by partial, called as (value, context)
    run: RunState,
    stage_id: str,
    item: int | None,
    attempt: int,
    call: Callable[..., Any],
    value: Any,
    context: Any,
) -> Any:
    """Call the stage inside every attempt hook, in the attempt's own task."""
    with run.dispatch.around_attempt(
        run.run_id, run.graph.name, stage_id, item, attempt
    ):
        return await call(value, context)


def _ran(state: StageState, item: int | None, seconds: float) -> None:
    """Add one attempt's running time to the profile."""
    if item is None:
        if state.attempt_ms is None:
            state.attempt_ms = []
        state.attempt_ms.append(round(seconds * 1000, 6))
    else:
        state.item_running_ms += seconds * 1000


def _timed_out(node: Node, attempt: int, *, swallowed: bool) -> Exception:
    timeout_ms = node.definition.timeout_ms
    text = f"stage {node.id!r} timed out after {timeout_ms:g} ms (attempt {attempt})"
    if swallowed:
        return StageContractError(
            f"{text}; it swallowed trio.Cancelled and returned late"
        )
    return StageTimeoutError(text)


def _judge(node: Node, raw: Any) -> Outcome:
    """Turn a returned StageResult into an outcome; anything else is a breach."""
    if isinstance(raw, StageResult):
        if raw.success:
            return Outcome(True, output=raw.output, returned=raw)
        error = raw.error or "stage reported failure"
        return Outcome(False, error=error, exception=raw.exception, returned=raw)
    raise StageContractError(
        f"stage {node.id!r}: execute returned {type(raw).__name__}, "
        "expected a StageResult (use success_result() or failure_result())"
    )

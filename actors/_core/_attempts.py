"""The attempt loop: the one place that calls user code, with retries and timeouts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import AsyncGeneratorType, CoroutineType
from typing import TYPE_CHECKING, Any

import trio

from .._context import current_emitter
from .._events import OffloadOrphaned, StageRetrying, StageStarted
from .._exceptions import StageContractError, StageTimeoutError
from .._limits import RateLimited
from .._offload import call_offloaded, set_orphan_reporter
from .._results import StageResult
from .._util import describe, leaves
from ._limiting import acquire_for, pushed_back

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
    restored_from: str | None = None
    """Set when a durable run reused a checkpointed result instead of running."""


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

    Raises:
        StageContractError: The condition returned a coroutine (an
            ``async`` condition defined through a sync wrapper): it would be
            counted as true without ever running.
    """
    decision = condition(context)
    if isinstance(decision, _UNAWAITED):
        if isinstance(decision, CoroutineType):
            decision.close()
        raise StageContractError(
            "the condition returned a coroutine; conditions must be "
            "synchronous functions of the context"
        )
    return bool(decision)


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
    limited = node.definition.rate_limit
    # Offload hook: the backend runs the stage's sync function; it, and the
    # to_* helpers inside async stages, report orphans of this item.
    set_orphan_reporter(orphaned, run, node, item)
    if run.live is not None:
        current_emitter.set(partial(run.live.emit, node, item))
    if node.offload is not None:
        call = partial(call_offloaded, node.offload, call)
    first_begin = None
    attempt = 0
    while True:
        attempt += 1
        state.attempts += 1
        if dispatch.item_started if item is not None else dispatch.stage_started:
            started = StageStarted(
                run_id=run.run_id,
                pipeline=run.graph.name,
                stage_id=node.id,
                attempt=attempt,
                at_ms=run.now_ms(),
                item_index=item,
            )
            dispatch.emit("stage_started" if item is None else "item_started", started)
        begin = clock.current_time()
        if first_begin is None:
            first_begin = begin
        # Attempt hooks (tracing, the testing kit) wrap the call in this task,
        # so the context they enter is current in the user's code.
        invoke = call
        if dispatch.attempt_hooks:
            invoke = partial(_hooked, run, node.id, item, attempt, call)
        acquired, refused = None, None
        if limited is not None:
            # Queued on the limit: throttle time, not the attempt's.
            try:
                acquired = await acquire_for(run, node, state, value, item)
            except Exception as exc:
                refused = exc
            begin = clock.current_time()
        try:
            if refused is not None:
                raise refused
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
            elif isinstance(raw, _UNAWAITED):
                outcome = _unawaited(node, raw)
            else:
                outcome = Outcome(True, output=raw)
        except Exception as exc:
            if run.reason is not None:
                # Raised while the run is being cancelled: cleanup that
                # failed. Kept on the cancelled result; the checkpoint below
                # raises the cancellation again.
                _cleanup_failed(state, [exc])
                outcome = Outcome(False)
            else:
                outcome = failed(exc)
        except BaseException as exc:
            propagating, errors = _split(exc)
            if propagating is not None:
                # Cancelled or interrupted: never retried, but the attempt
                # did run until now, and the profile says so. Cleanup that
                # failed on the way is kept on the cancelled result.
                _ran(state, item, clock.current_time() - begin)
                try:
                    if errors is None:
                        raise
                    _cleanup_failed(state, leaves(errors))
                    raise propagating from errors
                finally:
                    # Locals holding the exception would hold this frame
                    # through its traceback: a cycle left to the collector.
                    del propagating, errors
            # GeneratorExit, asyncio.CancelledError, a BaseException of the
            # stage's own: a failure of this stage, not of the caller's run.
            outcome = failed(exc)
        finally:
            if acquired is not None:
                acquired.release()
        end = clock.current_time()
        if item is None:
            _ran(state, item, end - begin)
        else:  # the fan-out hot path: inlined
            state.item_running_ms += (end - begin) * 1000
        if run.reason is not None:
            # It returned while the run was cancelled. Later than the
            # cancel, it ran on: it swallowed Cancelled. In the same
            # instant it may have swallowed it, or been woken just before
            # the cancel; either way its result is not kept. Compared
            # unrounded: ms rounded to 1 ns accused stages that ended in the
            # very instant of the cancel.
            if outcome.ok and end > run.cancelled_at:
                state.swallowed_cancel = True
            await trio.lowlevel.checkpoint()
        outcome.attempts = attempt
        outcome.begin, outcome.end = first_begin, end
        if outcome.ok:
            return outcome
        if isinstance(outcome.exception, RateLimited):
            # Retried whatever the filters say, after the Retry-After.
            after = outcome.exception.retry_after_s
            pushed_back(run, node, state, after)
            if attempt >= retry.max_attempts:
                return outcome
            delay_ms = retry.delay_ms(attempt + 1, run.rng)
            if after is not None:
                if after * 1000 > retry.max_retry_after_ms:
                    outcome.error += (
                        f"; Retry-After of {after * 1000:g} ms exceeds "
                        f"max_retry_after_ms ({retry.max_retry_after_ms:g} ms): "
                        "not retried"
                    )
                    return outcome
                delay_ms = max(delay_ms, after * 1000)
        elif attempt >= retry.max_attempts or not retry.should_retry(
            outcome.error, outcome.exception
        ):
            return outcome
        else:
            delay_ms = retry.delay_ms(attempt + 1, run.rng)
        exc_type = outcome.exception
        await back_off(
            run,
            node,
            state,
            attempt=attempt,
            delay_ms=delay_ms,
            error=outcome.error,
            error_type=None if exc_type is None else type(exc_type).__name__,
            item=item,
        )


async def back_off(
    run: RunState,
    node: Node,
    state: StageState,
    *,
    attempt: int,
    delay_ms: float,
    error: str,
    error_type: str | None,
    item: int | None = None,
) -> None:
    """Announce the retry that follows *attempt*, then sleep its delay.

    A checkpoint. Cancellation cuts the sleep short and propagates; the
    profile's ``backoff_ms`` counts only the time actually spent.
    """
    if run.dispatch.stage_retrying:
        event = StageRetrying(
            run_id=run.run_id,
            pipeline=run.graph.name,
            stage_id=node.id,
            attempt=attempt,
            delay_ms=delay_ms,
            error=error,
            error_type=error_type,
            at_ms=run.now_ms(),
            item_index=item,
        )
        run.dispatch.emit("stage_retrying", event)
    clock = run.clock
    pause = clock.current_time()
    try:
        await trio.sleep(delay_ms / 1000)
    finally:
        state.backoff_ms += (clock.current_time() - pause) * 1000


_PROPAGATE = (trio.Cancelled, KeyboardInterrupt, SystemExit)
"""What leaves a stage as itself: the cancellation, and the two interrupts."""

_INTERRUPTS = (KeyboardInterrupt, SystemExit)

_UNAWAITED = (CoroutineType, AsyncGeneratorType)


def _split(
    exc: BaseException,
) -> tuple[BaseException | None, BaseExceptionGroup[BaseException] | None]:
    """Split what a stage raised into what propagates and cleanup errors.

    Returns ``(propagating, errors)``: ``propagating`` is None when the whole
    of *exc* is the stage's own failure; ``errors`` is the rest of a group
    whose cancellation propagates.
    """
    if isinstance(exc, _PROPAGATE):
        return exc, None
    if not isinstance(exc, BaseExceptionGroup):
        return None, None
    if exc.subgroup(_INTERRUPTS) is not None:
        return exc, None  # re-raised whole; the supervisor unwraps it
    cancelled, errors = exc.split(trio.Cancelled)
    return cancelled, errors


def _unawaited(node: Node, raw: Any) -> Outcome:
    """Fail a stage that returned a coroutine or async generator instead of a value."""
    kind = "a coroutine" if isinstance(raw, CoroutineType) else "an async generator"
    if isinstance(raw, CoroutineType):
        raw.close()  # never awaited: close it, so Python does not warn later
    error = StageContractError(
        f"stage {node.id!r} returned {kind} instead of a value: did you forget await?"
    )
    return Outcome(False, error=describe(error), exception=error)


def _cleanup_failed(state: StageState, errors: list[BaseException]) -> None:
    """Keep errors raised by a stage's cleanup while it was being cancelled."""
    if state.cancel_errors is None:
        state.cancel_errors = []
    state.cancel_errors.extend(describe(exc) for exc in errors)


def orphaned(
    run: RunState, node: Node, item: int | None, backend: str, key: str | None
) -> None:
    """Emit ``offload_orphaned``: cancelled work of *item* may still run."""
    if run.dispatch.offload_orphaned:
        event = OffloadOrphaned(
            run_id=run.run_id,
            pipeline=run.graph.name,
            stage_id=node.id,
            item_index=item,
            backend=backend,
            key=key,
            at_ms=run.now_ms(),
        )
        run.dispatch.emit("offload_orphaned", event)


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


def _broken_fields(result: StageResult[Any]) -> str:
    """Name the fields of a hand-built StageResult that the kernel cannot use."""
    checks = (
        ("success", bool),
        ("error", (str, type(None))),
        ("exception", (BaseException, type(None))),
        ("metadata", dict),
        ("stage_name", str),
    )
    return ", ".join(
        f"{name}={getattr(result, name, None)!r:.60}"
        for name, kind in checks
        if not isinstance(getattr(result, name, None), kind)
    )


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
        broken = _broken_fields(raw)
        if broken:
            raise StageContractError(
                f"stage {node.id!r} returned a StageResult with fields of the "
                f"wrong type: {broken} (build it with success_result() or "
                "failure_result())"
            )
        if raw.success:
            return Outcome(True, output=raw.output, returned=raw)
        error = raw.error or "stage reported failure"
        return Outcome(False, error=error, exception=raw.exception, returned=raw)
    raise StageContractError(
        f"stage {node.id!r}: execute returned {type(raw).__name__}, "
        "expected a StageResult (use success_result() or failure_result())"
    )

"""One stage as a trio actor: wait for inputs, run with retries, send the result."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias

import structlog
import trio

from ._definition import ExecutionPattern
from ._events import ItemFinished, StageRetrying, StageStarted
from ._exceptions import StageContractError, StageTimeoutError
from ._results import StageProfile, StageResult, StageStatus, construct
from ._sketch import DurationSketch

if TYPE_CHECKING:
    from ._executor import _Run
    from ._graph import Node

Message: TypeAlias = tuple[int, StageResult[Any]]
"""What an actor sends downstream: its stage index and its final result."""

# The executor builds results from values it has checked: skip validation.
_new_result = partial(construct, StageResult)
_new_profile = partial(construct, StageProfile)


def describe(exc: BaseException) -> str:
    """Return the error text of *exc*: its type name, then its message."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _own_frames_dropped(exc: BaseException) -> BaseException:
    """Drop this module's frames from the start of *exc*'s traceback; return *exc*.

    The exception outlives the run on its StageResult. A frame of ours on its
    traceback holds the runner, hence the run and that very result: a
    reference cycle left to the garbage collector (issue 5). The stage's own
    frames, the useful part, stay.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals is _MODULE_GLOBALS:
        tb = tb.tb_next
    exc.__traceback__ = tb
    return exc


_MODULE_GLOBALS = globals()


async def _evaluate(condition: Any, context: Any) -> bool:
    """Call ``condition(context)``; never yields.

    A coroutine on purpose: a synchronous frame that raises keeps its
    caller's frame as ``f_back``. Called from here, that caller holds only
    the condition and the context, not the runner (see _own_frames_dropped).
    """
    return bool(condition(context))


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """Return the exceptions inside *group*, nested groups flattened."""
    found, pending = [], [group]
    while pending:
        for exc in pending.pop().exceptions:
            if isinstance(exc, BaseExceptionGroup):
                pending.append(exc)
            else:
                found.append(exc)
    return found


@dataclass(eq=False, slots=True)
class StageState:
    """What the supervisor knows of a stage while it runs."""

    ready_at_ms: float | None = None
    started_at_ms: float | None = None
    attempts: int = 0
    attempt_ms: list[float] | None = None
    backoff_ms: float = 0.0
    items: int | None = None
    item_ms: DurationSketch | None = None
    item_queued_ms: float = 0.0
    item_running_ms: float = 0.0
    swallowed_cancel: bool = False
    cancel_errors: list[str] | None = None
    stopped_at: float | None = None
    """Clock time its actor ended, if the run was cancelled by then."""
    named_unresponsive: bool = False

    def profile(self, finished_at_ms: float) -> StageProfile:
        """Freeze what was measured into a profile."""
        started, ready = self.started_at_ms, self.ready_at_ms
        queued = 0.0 if started is None or ready is None else started - ready
        queued += self.item_queued_ms
        p50 = p95 = top = None
        if self.item_ms:
            p50 = round(self.item_ms.percentile(0.50), 6)
            p95 = round(self.item_ms.percentile(0.95), 6)
            top = round(self.item_ms.maximum, 6)
        return _new_profile(
            ready_at_ms=ready,
            started_at_ms=started,
            finished_at_ms=finished_at_ms,
            queued_ms=round(queued, 6),
            attempt_ms=() if self.attempt_ms is None else tuple(self.attempt_ms),
            backoff_ms=round(self.backoff_ms, 6),
            items=self.items,
            item_p50_ms=p50,
            item_p95_ms=p95,
            item_max_ms=top,
            item_running_ms=None
            if self.items is None
            else round(self.item_running_ms, 6),
        )

    def cancelled(self, node: Node, why: str, now_ms: float) -> StageResult[Any]:
        """Return the result of a stage stopped (or never started) by cancellation."""
        metadata: dict[str, Any] = {}
        error = f"cancelled: {why}"
        if self.swallowed_cancel:
            metadata["contract_violation"] = "swallowed trio.Cancelled"
            error += (
                "; the stage swallowed trio.Cancelled and ran on (contract violation)"
            )
        if self.cancel_errors:
            metadata["errors_during_cancellation"] = self.cancel_errors
            error += "; errors during cancellation: " + "; ".join(self.cancel_errors)
        started = self.started_at_ms
        return _new_result(
            success=False,
            stage_name=node.id,
            error=error,
            metadata=metadata,
            status=StageStatus.CANCELLED,
            attempts=self.attempts,
            duration_ms=0.0 if started is None else round(now_ms - started, 6),
            profile=self.profile(now_ms),
        )


@dataclass(eq=False, slots=True)
class _Outcome:
    ok: bool
    output: Any = None
    error: str = ""
    exception: BaseException | None = None
    returned: StageResult[Any] | None = None
    attempts: int = 0
    begin: float = 0.0
    end: float = 0.0


class StageRunner:
    """The actor of one stage, owned by the supervisor's nursery.

    It owns its inbox (closed when it stops listening) and one send endpoint
    per downstream stage (closed when it ends, whatever the reason).
    """

    __slots__ = ("_run", "inbox", "initial_input", "node", "outboxes", "state")

    def __init__(
        self,
        run: _Run,
        node: Node,
        inbox: trio.MemoryReceiveChannel[Message] | None,
        outboxes: list[trio.MemorySendChannel[Message]],
        initial_input: Any,
    ) -> None:
        self._run = run
        self.node = node
        self.inbox = inbox
        self.outboxes = outboxes
        self.initial_input = initial_input
        self.state = run.states[node.index]

    async def run(self) -> None:
        """Wait for every input, run the stage, send its result downstream."""
        try:
            structlog.contextvars.bind_contextvars(stage_id=self.node.id)
            # Received here, not in a helper coroutine: thousands of actors
            # wait at once, and each frame on their stacks is garbage
            # collector work for as long as they wait.
            inbox = self.inbox
            if inbox is None:
                result = await self._stage(self.initial_input)
            else:
                received = []
                with inbox:
                    try:
                        for _ in self.node.inputs:
                            received.append(await inbox.receive())
                    except trio.EndOfChannel:
                        # An input's actor ended without a result and before
                        # any cancel: a KeyboardInterrupt is tearing the run
                        # down. Nothing to do (and no error to add to it).
                        return
                result = await self._stage(*self._gather(received))
            if result is not None:
                message = (self.node.index, result)
                for outbox in self.outboxes:
                    # Never blocks: each inbox has one slot per producer.
                    outbox.send_nowait(message)
        finally:
            for outbox in self.outboxes:
                outbox.close()
            if self._run.reason is not None:
                self.state.stopped_at = self._run.clock.current_time()

    def _gather(self, received: list[Message]) -> tuple[Any, str | None]:
        """Return the stage's input value, or ``None`` and the failed input's id."""
        node, nodes = self.node, self._run.graph.nodes
        for index, result in received:
            status = result.status
            if status is StageStatus.UPSTREAM_FAILED or (
                status is StageStatus.FAILED and nodes[index].definition.critical
            ):
                return None, nodes[index].id
        if len(received) == 1:
            return received[0][1].output, None
        outputs = {index: result.output for index, result in received}
        return {nodes[i].id: outputs[i] for i in node.inputs}, None

    async def _stage(
        self, value: Any, failed_input: str | None = None
    ) -> StageResult[Any] | None:
        """Run the stage on its input value; return what to send downstream."""
        run, node, state = self._run, self.node, self.state
        if failed_input is not None:
            return self._finish(
                StageStatus.UPSTREAM_FAILED,
                error=f"upstream stage {failed_input!r} failed",
            )
        state.ready_at_ms = run.now_ms()
        if run.reason is not None:
            # Inputs can arrive in the same tick as a cancel: start nothing.
            await trio.lowlevel.checkpoint()
        definition = node.definition
        if definition.condition is not None:
            try:
                go = await _evaluate(definition.condition, run.context)
            except Exception as exc:
                return self._finish_failure(
                    _Outcome(
                        False,
                        error=f"condition raised {describe(exc)}",
                        exception=_own_frames_dropped(exc),
                    )
                )
            if not go:
                return self._finish(
                    StageStatus.SKIPPED,
                    metadata={"skipped": True, "reason": "condition returned False"},
                )
        if definition.pattern is ExecutionPattern.FAN_OUT:
            return await self._fan_out(value)
        state.started_at_ms = run.now_ms()
        outcome = await self._attempts(value, None)
        if not outcome.ok:
            return self._finish_failure(outcome)
        returned = outcome.returned
        if returned is not None:
            status = returned.status
            if status is not StageStatus.SKIPPED:
                status = StageStatus.SUCCEEDED
            return self._finish(
                status,
                output=returned.output,
                metadata=returned.metadata,
                stage_name=returned.stage_name,
            )
        return self._finish(StageStatus.SUCCEEDED, output=outcome.output)

    async def _attempts(self, value: Any, item: int | None) -> _Outcome:
        """Run the stage function on *value* until it succeeds or may not retry.

        The outcome's ``begin`` and ``end`` are the trio times of the first
        attempt's start and the last attempt's end.
        """
        run, node, state = self._run, self.node, self.state
        retry, call, context = node.retry, node.call, run.context
        timeout, clock = node.timeout_s, run.clock
        returns_result = node.returns_result
        first_begin = None
        attempt = 0
        while True:
            attempt += 1
            state.attempts += 1
            if run.dispatch.stage_started:
                started = StageStarted(
                    run.run_id, run.graph.name, node.id, attempt, run.now_ms(), item
                )
                run.dispatch.emit("stage_started", started)
            begin = clock.current_time()
            if first_begin is None:
                first_begin = begin
            try:
                if timeout is None:
                    raw = await call(value, context)
                else:
                    with trio.CancelScope(deadline=begin + timeout) as scope:
                        raw = await call(value, context)
                    if scope.cancelled_caught or clock.current_time() > scope.deadline:
                        # Cancelled and still returned: it swallowed Cancelled.
                        # Past the deadline without a checkpoint: a plain
                        # timeout (it never saw the cancellation).
                        raise self._timed_out(
                            attempt,
                            swallowed=scope.cancel_called
                            and not scope.cancelled_caught,
                        )
                if returns_result or isinstance(raw, StageResult):
                    outcome = self._judge(raw)
                else:
                    outcome = _Outcome(True, output=raw)
            except Exception as exc:
                outcome = _Outcome(
                    False, error=describe(exc), exception=_own_frames_dropped(exc)
                )
            except BaseExceptionGroup as group:
                # Cleanup that fails while the stage is being cancelled: keep
                # the errors on the cancelled result and let Cancelled go on.
                cancelled, errors = group.split(trio.Cancelled)
                self._ran(item, clock.current_time() - begin)
                if cancelled is None or not isinstance(errors, ExceptionGroup):
                    raise
                state.cancel_errors = [describe(exc) for exc in leaves(errors)]
                raise cancelled from errors
            except BaseException:
                # Cancelled (or interrupted): never retried, but the attempt
                # did run until now, and the profile says so (issue 3).
                self._ran(item, clock.current_time() - begin)
                raise
            end = clock.current_time()
            self._ran(item, end - begin)
            if run.reason is not None:
                # It returned while the run was cancelled. Later than the
                # cancel, it ran on: it swallowed Cancelled. In the same
                # instant it may have swallowed it, or been woken just before
                # the cancel; either way its result is not kept (issue 5).
                # Compared unrounded: ms rounded to 1 ns accused stages that
                # ended in the very instant of the cancel.
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
            delay_ms = retry.delay_ms(attempt + 1)
            if run.dispatch.stage_retrying:
                exc_type = outcome.exception
                event = StageRetrying(
                    run.run_id,
                    run.graph.name,
                    node.id,
                    attempt,
                    delay_ms,
                    outcome.error,
                    None if exc_type is None else type(exc_type).__name__,
                    run.now_ms(),
                    item,
                )
                run.dispatch.emit("stage_retrying", event)
            pause = trio.current_time()
            try:
                await trio.sleep(delay_ms / 1000)
            finally:
                # Measured, so a backoff cut short by cancellation counts
                # only the time actually spent (issue 3).
                state.backoff_ms += (trio.current_time() - pause) * 1000

    def _ran(self, item: int | None, seconds: float) -> None:
        """Add one attempt's running time to the profile."""
        if item is None:
            if self.state.attempt_ms is None:
                self.state.attempt_ms = []
            self.state.attempt_ms.append(round(seconds * 1000, 6))
        else:
            self.state.item_running_ms += seconds * 1000

    def _timed_out(self, attempt: int, *, swallowed: bool) -> Exception:
        node = self.node
        timeout_ms = node.definition.timeout_ms
        text = (
            f"stage {node.id!r} timed out after {timeout_ms:g} ms (attempt {attempt})"
        )
        if swallowed:
            return StageContractError(
                f"{text}; it swallowed trio.Cancelled and returned late"
            )
        return StageTimeoutError(text)

    def _judge(self, raw: Any) -> _Outcome:
        """Turn a returned StageResult into an outcome; anything else is a breach."""
        if isinstance(raw, StageResult):
            if raw.success:
                return _Outcome(True, output=raw.output, returned=raw)
            error = raw.error or "stage reported failure"
            return _Outcome(False, error=error, exception=raw.exception, returned=raw)
        raise StageContractError(
            f"stage {self.node.id!r}: execute returned {type(raw).__name__}, "
            "expected a StageResult (use success_result() or failure_result())"
        )

    async def _fan_out(self, items: Any) -> StageResult[Any] | None:
        """Run the stage once per item, at most ``max_concurrency`` at a time."""
        run, node, state = self._run, self.node, self.state
        if not isinstance(items, list | tuple):
            error = TypeError(
                f"FAN_OUT stage {node.id!r} expected a list or tuple input, "
                f"got {type(items).__name__}"
            )
            return self._finish_failure(
                _Outcome(False, error=describe(error), exception=error)
            )
        count = len(items)
        state.items = count
        state.item_ms = DurationSketch()
        state.started_at_ms = run.now_ms()
        if run.dispatch.stage_started:
            # The stage as a whole starts once; its items follow (issue 3).
            started = StageStarted(
                run.run_id,
                run.graph.name,
                node.id,
                1,
                state.started_at_ms,
                None,
                count,
            )
            run.dispatch.emit("stage_started", started)
        fan_begin = run.clock.current_time()
        item_ms = state.item_ms
        outputs: list[Any] = [None] * count
        failures: list[tuple[int, _Outcome]] = []
        work = iter(enumerate(items))

        async def worker(cancel_scope: trio.CancelScope) -> None:
            for index, item in work:
                if failures:
                    return  # an item failed; its siblings take no new items
                outcome = await self._attempts(item, index)
                # How long this item waited for a concurrency slot.
                state.item_queued_ms += (outcome.begin - fan_begin) * 1000
                duration = (outcome.end - outcome.begin) * 1000
                item_ms.add(duration)
                if run.dispatch.item_finished:
                    exc = outcome.exception
                    event = ItemFinished(
                        run.run_id,
                        run.graph.name,
                        node.id,
                        index,
                        outcome.ok,
                        outcome.attempts,
                        round(duration, 6),
                        None if outcome.ok else outcome.error,
                        None if exc is None else type(exc).__name__,
                        run.now_ms(),
                    )
                    run.dispatch.emit("item_finished", event)
                if not outcome.ok:
                    failures.append((index, outcome))
                    cancel_scope.cancel()
                    return
                outputs[index] = outcome.output

        limit = min(node.definition.max_concurrency or count, count)
        if limit:
            async with trio.open_nursery() as nursery:
                for _ in range(limit):
                    nursery.start_soon(worker, nursery.cancel_scope)
        if failures:
            index, outcome = failures[0]
            outcome.error = f"item {index}: {outcome.error}"
            return self._finish_failure(outcome)
        return self._finish(StageStatus.SUCCEEDED, output=outputs)

    def _finish_failure(self, outcome: _Outcome) -> StageResult[Any] | None:
        returned = outcome.returned
        return self._finish(
            StageStatus.FAILED,
            error=outcome.error,
            exception=outcome.exception,
            metadata=returned.metadata if returned is not None else None,
            stage_name=returned.stage_name if returned is not None else None,
        )

    def _finish(
        self,
        status: StageStatus,
        *,
        output: Any = None,
        error: str | None = None,
        exception: BaseException | None = None,
        metadata: dict[str, Any] | None = None,
        stage_name: str | None = None,
    ) -> StageResult[Any] | None:
        """Record the stage's result; return what to send downstream (if anything)."""
        run, node, state = self._run, self.node, self.state
        now = run.now_ms()
        started = state.started_at_ms
        result = _new_result(
            success=status is StageStatus.SUCCEEDED or status is StageStatus.SKIPPED,
            # A result made by success_result(x) without a name is named
            # after its stage.
            stage_name=node.id if stage_name in (None, "unknown") else stage_name,
            output=output,
            error=error,
            metadata=metadata if metadata is not None else {},
            status=status,
            attempts=state.attempts,
            duration_ms=0.0 if started is None else round(now - started, 6),
            profile=state.profile(now),
            exception=exception,
        )
        run.record(node.index, result)
        if run.reason is not None:
            return None  # the run is being cancelled: send nothing downstream
        return result

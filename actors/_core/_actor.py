"""One stage as a trio actor: wait for inputs, run, send the result downstream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog
import trio

from .._definition import ExecutionPattern
from .._results import StageResult, StageStatus
from ._attempts import Outcome, attempts, evaluate, failed
from ._fan_out import fan_out
from ._limiting import enter_stage
from ._state import new_result
from ._streaming import consume, produce

if TYPE_CHECKING:
    from .._graph import Node
    from ._state import RunState
    from ._wiring import Inbox, ItemReceive, ItemSend, Message, Outbox


class Actor:
    """The actor of one stage, owned by the supervisor's nursery.

    It owns its inbox (closed when it stops listening) and one send endpoint
    per downstream stage (closed when it ends, whatever the reason).
    """

    __slots__ = (
        "inbox",
        "initial_input",
        "inlet",
        "node",
        "outboxes",
        "outlets",
        "run",
        "state",
    )

    def __init__(
        self,
        run: RunState,
        node: Node,
        inbox: Inbox | None,
        outboxes: list[Outbox],
        initial_input: Any,
    ) -> None:
        self.run = run
        self.node = node
        self.inbox = inbox
        self.outboxes = outboxes
        self.initial_input = initial_input
        # Stream edges, set by the supervisor (see _streaming): items in,
        # for a FAN_OUT fed by a stream; out, for a stage streaming to one.
        self.inlet: ItemReceive | None = None
        self.outlets: Sequence[ItemSend] = ()
        self.state = run.states[node.index]

    async def main(self) -> None:
        """Wait for every input, run the stage, send its result downstream."""
        try:
            structlog.contextvars.bind_contextvars(stage_id=self.node.id)
            enter_stage(self.run, self.node, self.state)
            # Received here, not in a helper coroutine: thousands of actors
            # wait at once, and each frame on their stacks is garbage
            # collector work for as long as they wait.
            inbox = self.inbox
            if self.inlet is not None:
                assert inbox is not None
                result = await self._streamed(inbox)
            elif inbox is None:
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
            for outlet in self.outlets:
                outlet.close()
            run = self.run
            if run.reason is not None:
                self.state.stopped_at = run.clock.current_time()
                if run.results[self.node.index] is None:
                    # Its times are its own: it stopped now, whatever
                    # keeps the rest of the run open.
                    index, state = self.node.index, self.state
                    run.record(index, state.cancelled(self.node, run.why, run.now_ms()))

    def _gather(self, received: list[Message]) -> tuple[Any, str | None]:
        """Return the stage's input value, or ``None`` and the failed input's id."""
        node, nodes = self.node, self.run.graph.nodes
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
        run, node, state = self.run, self.node, self.state
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
                go = await evaluate(definition.condition, run.context)
            except (trio.Cancelled, KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # the condition's own failure, whatever it is
                return self._finish_failure(failed(exc, "condition raised "))
            if not go:
                return self._finish(
                    StageStatus.SKIPPED,
                    metadata={"skipped": True, "reason": "condition returned False"},
                )
        if definition.pattern is ExecutionPattern.FAN_OUT:
            if not isinstance(value, list | tuple):
                error = TypeError(
                    f"FAN_OUT stage {node.id!r} expected a list or tuple input, "
                    f"got {type(value).__name__}"
                )
                return self._finish_failure(failed(error))
            if type(value) is not list and type(value) is not tuple:
                # A subclass may iterate differently, or raise: read it once,
                # here, where a failure is this stage's.
                try:
                    value = list(value)
                except Exception as exc:
                    return self._finish_failure(
                        failed(exc, "reading its input raised ")
                    )
            outcome = await fan_out(run, node, state, value)
            if run.durable is not None:
                run.durable.fan_out_done(node, outcome, len(value))
        elif node.generator:
            if run.durable is None:
                outcome = await produce(run, node, state, value, self.outlets)
            else:
                outlets = self.outlets
                outcome = await run.durable.stream(
                    node,
                    state,
                    value,
                    lambda journal: produce(
                        run, node, state, value, outlets, journal=journal
                    ),
                )
        else:
            state.started_at_ms = run.now_ms()
            if run.durable is None:
                outcome = await attempts(run, node, state, value, None)
            else:
                outcome = await run.durable.stage(node, state, value)
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
        return self._finish(
            StageStatus.SUCCEEDED,
            output=outcome.output,
            restored_from=outcome.restored_from,
        )

    async def _streamed(self, inbox: Inbox) -> StageResult[Any] | None:
        """A FAN_OUT fed by a stream: run its items as they arrive, then finish."""
        assert self.inlet is not None
        outcome, ended = await consume(
            self.run, self.node, self.state, self.inlet, self.outlets
        )
        if self.run.durable is not None:
            self.run.durable.fan_out_done(self.node, outcome, self.state.items or 0)
        if not ended:
            # It failed before the stream ended: the producer's result will
            # land in the inbox's own slot, unread (its send never blocks).
            return self._finish_failure(outcome)
        with inbox:
            try:
                received = await inbox.receive()
            except trio.EndOfChannel:
                return None  # an interrupt is tearing the run down
        _, failed_input = self._gather([received])
        if failed_input is not None:
            return self._finish(
                StageStatus.UPSTREAM_FAILED,
                error=f"upstream stage {failed_input!r} failed",
                metadata={"partial": outcome.output},
            )
        if not outcome.ok:
            return self._finish_failure(outcome)
        return self._finish(
            StageStatus.SUCCEEDED,
            output=outcome.output,
            restored_from=outcome.restored_from,
        )

    def _finish_failure(self, outcome: Outcome) -> StageResult[Any] | None:
        returned = outcome.returned
        metadata = returned.metadata if returned is not None else None
        if outcome.output is not None:
            # A "collect" fan-out that missed min_successes: what did succeed.
            metadata = {"partial": outcome.output}
        return self._finish(
            StageStatus.FAILED,
            error=outcome.error,
            exception=outcome.exception,
            metadata=metadata,
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
        restored_from: str | None = None,
    ) -> StageResult[Any] | None:
        """Record the stage's result; return what to send downstream (if anything)."""
        run, node, state = self.run, self.node, self.state
        now = run.now_ms()
        started = state.started_at_ms
        collected: dict[str, Any] = {}
        if state.item_errors is not None:  # a "collect" fan-out
            collected = {
                "item_errors": state.item_errors,
                "partial": bool(state.item_errors),
            }
        result = new_result(
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
            restored_from=restored_from,
            **collected,
        )
        run.record(node.index, result)
        if run.reason is not None:
            return None  # the run is being cancelled: send nothing downstream
        return result

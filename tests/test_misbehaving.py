"""Stages that break the cancellation contract.

A stage that shields itself, swallows ``trio.Cancelled`` or blocks the event
loop must not hang the run or pass for a success: the run ends once the stage
yields, a ``stage_unresponsive`` event names it after the executor's grace
period, and a swallowed cancellation is reported as a contract violation.

Blocking the event loop is played with ``MockClock.jump``: the stage moves
virtual time forward without yielding, exactly like synchronous work that
takes that long, so no test sleeps for real.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from actors import (
    Observer,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    PipelineStatus,
    StageDefinition,
    StageStatus,
    StageUnresponsive,
)


class Unresponsive(Observer):
    """Collects ``stage_unresponsive`` events."""

    def __init__(self) -> None:
        self.events: list[StageUnresponsive] = []

    def stage_unresponsive(self, event: StageUnresponsive) -> None:
        """Keep the event."""
        self.events.append(event)


async def boom(value: Any, context: PipelineContext[Any]) -> None:
    """Fail after one second: the fail-fast trigger of these tests."""
    await trio.sleep(1)
    raise ValueError("boom")


async def _run(
    stage: Any, *, grace_ms: float = 2000
) -> tuple[PipelineResult, list[StageUnresponsive]]:
    watch = Unresponsive()
    executor = PipelineExecutor(
        log_events=False, observers=[watch], unresponsive_after_ms=grace_ms
    )
    pipeline = PipelineDefinition(
        name="misbehaving",
        stages=[StageDefinition("boom", boom), StageDefinition("bad", stage)],
    )
    result = await executor.execute(pipeline)
    return result, watch.events


def _assert_violation(result: PipelineResult) -> None:
    bad = result.stage_results["bad"]
    assert bad.status is StageStatus.CANCELLED
    assert not bad.success
    assert "bad" not in result.outputs
    assert bad.metadata["contract_violation"] == "swallowed trio.Cancelled"
    assert bad.error is not None
    assert bad.error.endswith(
        "the stage swallowed trio.Cancelled and ran on (contract violation)"
    )


async def test_shielded_stage_is_named_unresponsive_and_never_succeeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A shielded stage delays the end of the run, is named, and is not a success."""

    async def shielded(value: Any, context: PipelineContext[Any]) -> str:
        with trio.CancelScope(shield=True):
            await trio.sleep(5)
        return "done anyway"

    result, events = await _run(shielded)
    assert trio.current_time() == 5
    assert result.total_duration_ms == 5000
    assert result.status is PipelineStatus.FAILED
    assert result.stage_results["boom"].status is StageStatus.FAILED
    _assert_violation(result)
    assert [(e.stage_id, e.cancelled_at_ms, e.at_ms) for e in events] == [
        ("bad", 1000, 3000)
    ]


async def test_swallowed_cancellation_is_a_contract_violation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage that catches Cancelled and works on is reported, never succeeds."""

    async def swallower(value: Any, context: PipelineContext[Any]) -> str:
        try:  # noqa: SIM105  # spelled out: this swallow is the bug under test
            await trio.sleep(10)
        except trio.Cancelled:
            pass
        with trio.CancelScope(shield=True):
            await trio.sleep(3)  # and the stage runs on
        return "swallowed"

    result, events = await _run(swallower)
    assert trio.current_time() == 4
    assert result.total_duration_ms == 4000
    _assert_violation(result)
    assert [(e.stage_id, e.at_ms) for e in events] == [("bad", 3000)]


async def test_stage_blocking_the_event_loop_is_named_once_it_yields(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage that blocks the loop past the grace period is named when it yields."""

    async def blocker(value: Any, context: PipelineContext[Any]) -> None:
        try:
            await trio.sleep(10)
        except trio.Cancelled:
            autojump_clock.jump(4)  # four seconds of synchronous cleanup
            raise

    result, events = await _run(blocker)
    assert trio.current_time() == 5
    assert result.total_duration_ms == 5000
    assert result.stage_results["bad"].status is StageStatus.CANCELLED
    assert [(e.stage_id, e.cancelled_at_ms, e.at_ms) for e in events] == [
        ("bad", 1000, 5000)
    ]


async def test_no_unresponsive_event_when_stages_stop_within_the_grace_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage whose cleanup takes less than the grace period is not named."""

    async def slow_cleanup(value: Any, context: PipelineContext[Any]) -> None:
        try:
            await trio.sleep(10)
        except trio.Cancelled:
            autojump_clock.jump(1.5)
            raise

    result, events = await _run(slow_cleanup)
    assert trio.current_time() == 2.5
    assert result.stage_results["bad"].status is StageStatus.CANCELLED
    assert "contract_violation" not in result.stage_results["bad"].metadata
    assert events == []


async def test_swallow_and_return_at_once_is_not_a_success(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Returning a value straight from ``except trio.Cancelled`` is reported cancelled.

    It returns in the very instant of the cancel, so it cannot be told from a
    stage woken just before the cancel (see the next test): neither result is
    kept, and neither is accused.
    """

    async def swallower(value: Any, context: PipelineContext[Any]) -> str:
        try:
            await trio.sleep(10)
        except trio.Cancelled:
            return "pretend it worked"  # the bug under test
        return "unreachable"

    result, _ = await _run(swallower)
    assert trio.current_time() == 1
    bad = result.stage_results["bad"]
    assert bad.status is StageStatus.CANCELLED
    assert "bad" not in result.outputs
    assert bad.error == "cancelled: stage 'boom' failed"


async def test_stage_ending_in_the_instant_of_the_cancel_is_not_accused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage woken in the instant of a fail-fast is cancelled, but not accused.

    Regression: the swallow check compared against the cancel time rounded to
    the nanosecond, so at 1 + 2**-10 s (not a whole number of nanoseconds)
    such a stage was reported as having swallowed Cancelled.
    """
    at = 1 + 2**-10
    ready = trio.Event()

    async def fail(value: Any, context: PipelineContext[Any]) -> None:
        await trio.sleep(at)
        ready.set()  # the waiter is scheduled before the cancel comes
        raise ValueError("boom")

    async def waiter(value: Any, context: PipelineContext[Any]) -> str:
        await ready.wait()
        return "woken"

    pipeline = PipelineDefinition(
        name="same-instant",
        stages=[StageDefinition("fail", fail), StageDefinition("waiter", waiter)],
    )
    result = await PipelineExecutor(log_events=False).execute(pipeline)
    waited = result.stage_results["waiter"]
    assert waited.metadata == {}
    assert waited.status is StageStatus.CANCELLED
    assert waited.error == "cancelled: stage 'fail' failed"
    assert result.outputs == {}
    assert result.total_duration_ms == round(at * 1000, 6)

"""Nothing a stage, a setting or an observer does can crash, hang or mislead a run.

Each test is a regression test: it failed before the fix it names.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import trio
import trio.testing

from actors import (
    ExecutionPattern,
    Observer,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineStatus,
    RetryConfig,
    StageContractError,
    StageDefinition,
    StageFinished,
    StageResult,
    StageStatus,
)


async def work(value: Any, ctx: PipelineContext[Any]) -> Any:
    await trio.sleep(0.002)
    return value


def one(stage: Any = work, **options: Any) -> PipelineDefinition:
    return PipelineDefinition(name="p", stages=[StageDefinition("a", stage, **options)])


# 1. status and success agree with the stages


async def test_a_deadline_in_the_instant_the_last_stage_ends_changes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pipeline = PipelineDefinition(
        name="p", stages=[StageDefinition("a", work)], timeout_ms=2
    )
    # trio runs the tasks woken in one instant in a random order: try both.
    for _ in range(40):
        result = await PipelineExecutor().execute(pipeline, 1)
        assert result.stage_results["a"].status is StageStatus.SUCCEEDED
        assert result.status is PipelineStatus.SUCCEEDED
        assert result.success


async def test_a_token_set_after_every_stage_ended_changes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    context: PipelineContext[Any] = PipelineContext(cancel_token=trio.Event())

    class SetTokenOnFinish(Observer):
        def stage_finished(self, event: StageFinished) -> None:
            assert context.cancel_token is not None
            context.cancel_token.set()

    result = await PipelineExecutor(observers=[SetTokenOnFinish()]).execute(
        one(), 1, context
    )
    assert result.success
    assert result.status is PipelineStatus.SUCCEEDED


# 2. only interrupts and the caller's cancellation leave execute


@pytest.mark.parametrize(
    "raised",
    [GeneratorExit, asyncio.CancelledError, type("Custom", (BaseException,), {})],
    ids=["GeneratorExit", "asyncio.CancelledError", "custom BaseException"],
)
async def test_a_stages_base_exception_fails_that_stage(
    autojump_clock: trio.testing.MockClock, raised: type[BaseException]
) -> None:
    async def bad(value: Any, ctx: PipelineContext[Any]) -> Any:
        await trio.sleep(1)
        raise raised("boom")

    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("bad", bad),
            StageDefinition("slow", work),
        ],
        fail_fast=False,
    )
    result = await PipelineExecutor().execute(pipeline)
    failed = result.stage_results["bad"]
    assert failed.status is StageStatus.FAILED
    assert isinstance(failed.exception, raised)
    assert failed.error == f"{raised.__name__}: boom"
    assert result.stage_results["slow"].status is StageStatus.SUCCEEDED
    assert result.status is PipelineStatus.FAILED


async def test_an_observer_raising_a_base_exception_is_disabled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Bad(Observer):
        calls = 0

        def stage_finished(self, event: StageFinished) -> None:
            Bad.calls += 1
            raise GeneratorExit

    result = await PipelineExecutor(observers=[Bad()]).execute(
        PipelineDefinition(
            name="p",
            stages=[
                StageDefinition("a", work),
                StageDefinition("b", work, inputs=["a"]),
            ],
        ),
        1,
    )
    assert result.success
    assert Bad.calls == 1


async def test_keyboard_interrupt_still_propagates_bare(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def interrupt(value: Any, ctx: PipelineContext[Any]) -> Any:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await PipelineExecutor().execute(one(interrupt))


# 3. error text never crashes the run


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


async def test_an_unprintable_exception_is_described_safely(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def bad(value: Any, ctx: PipelineContext[Any]) -> Any:
        raise Unprintable

    def condition(ctx: PipelineContext[Any]) -> bool:
        raise Unprintable

    result = await PipelineExecutor().execute(
        PipelineDefinition(
            name="p",
            stages=[
                StageDefinition("a", bad),
                StageDefinition("c", work, condition=condition),
            ],
            fail_fast=False,
        )
    )
    assert result.stage_results["a"].error == (
        "Unprintable: <message could not be rendered>"
    )
    assert result.stage_results["c"].error == (
        "condition raised Unprintable: <message could not be rendered>"
    )


# 4. backoff cannot overflow; settings that cannot work are refused


def test_a_long_backoff_schedule_is_capped_without_overflow() -> None:
    retry = RetryConfig(max_attempts=2000, initial_delay_ms=1, max_delay_ms=1)
    assert retry.delay_ms(1025) == 1
    assert retry.delay_ms(2000) == 1
    growing = RetryConfig(initial_delay_ms=10, backoff_multiplier=3, max_delay_ms=1e6)
    assert [growing.delay_ms(k) for k in (2, 3, 4, 5)] == [10, 30, 90, 270]
    assert growing.delay_ms(100_000) == 1e6


async def test_two_thousand_attempts_run_to_their_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    async def flaky(value: Any, ctx: PipelineContext[Any]) -> Any:
        nonlocal calls
        calls += 1
        raise ValueError("again")

    retry = RetryConfig(max_attempts=2000, initial_delay_ms=1, max_delay_ms=1)
    result = await PipelineExecutor(log_events=False).execute(
        one(flaky, retry_config=retry)
    )
    assert calls == 2000
    assert result.stage_results["a"].error == "ValueError: again"
    assert result.total_duration_ms == 1999.0


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_unresponsive_after_must_be_finite_and_not_negative(value: float) -> None:
    with pytest.raises(ValueError, match="unresponsive_after_ms must be a finite"):
        PipelineExecutor(unresponsive_after_ms=value)


# 5. cleanup errors are kept; nobody is falsely accused


async def test_a_cleanup_error_during_fail_fast_is_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def fails(value: Any, ctx: PipelineContext[Any]) -> Any:
        await trio.sleep(1)
        raise ValueError("first")

    async def messy(value: Any, ctx: PipelineContext[Any]) -> Any:
        try:
            await trio.sleep(10)
        finally:
            raise OSError("cleanup broke")  # the stage's own bug

    result = await PipelineExecutor().execute(
        PipelineDefinition(
            name="p",
            stages=[StageDefinition("fails", fails), StageDefinition("messy", messy)],
        )
    )
    messy_result = result.stage_results["messy"]
    assert messy_result.status is StageStatus.CANCELLED
    assert messy_result.metadata == {
        "errors_during_cancellation": ["OSError: cleanup broke"]
    }
    assert "swallowed" not in (messy_result.error or "")


async def test_a_shielded_cleanup_swallowed_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def fails(value: Any, ctx: PipelineContext[Any]) -> Any:
        await trio.sleep(1)
        raise ValueError("first")

    async def careful(value: Any, ctx: PipelineContext[Any]) -> Any:
        try:
            await trio.sleep(10)
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.5)

    result = await PipelineExecutor().execute(
        PipelineDefinition(
            name="p",
            stages=[
                StageDefinition("fails", fails),
                StageDefinition("careful", careful),
            ],
        )
    )
    careful_result = result.stage_results["careful"]
    assert careful_result.status is StageStatus.CANCELLED
    assert careful_result.metadata == {}
    assert careful_result.error == "cancelled: stage 'fails' failed"
    # 6. its times are its own: it stopped at 1.5 s.
    assert careful_result.duration_ms == 1500.0


# 6. a cancelled stage's times are its own


async def test_a_cancelled_stage_is_not_charged_for_a_shielded_sibling(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def fails(value: Any, ctx: PipelineContext[Any]) -> Any:
        await trio.sleep(1)
        raise ValueError("first")

    async def stubborn(value: Any, ctx: PipelineContext[Any]) -> Any:
        try:
            await trio.sleep(100)
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(7)

    async def quick(value: Any, ctx: PipelineContext[Any]) -> Any:
        await trio.sleep(100)

    result = await PipelineExecutor(unresponsive_after_ms=60_000).execute(
        PipelineDefinition(
            name="p",
            stages=[
                StageDefinition("fails", fails),
                StageDefinition("stubborn", stubborn),
                StageDefinition("quick", quick),
            ],
        )
    )
    assert result.total_duration_ms == 8000.0
    assert result.stage_results["quick"].duration_ms == 1000.0
    assert result.stage_results["quick"].profile.finished_at_ms == 1000.0  # type: ignore[union-attr]
    assert result.stage_results["stubborn"].duration_ms == 8000.0


# 7. reasons are true


async def test_context_cancel_reports_its_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    context: PipelineContext[Any] = PipelineContext()

    async def interrupt_soon() -> None:
        await trio.sleep(0.001)
        context.cancel("interrupted")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(interrupt_soon)
        result = await PipelineExecutor().execute(one(), 1, context)
    assert result.status is PipelineStatus.CANCELLED
    assert result.stage_results["a"].error == "cancelled: interrupted"


# 8. what cannot work is refused


def test_an_async_observer_hook_is_refused() -> None:
    class Async(Observer):
        async def stage_finished(self, event: StageFinished) -> None:  # type: ignore[override]  # the mistake under test
            pass

    with pytest.raises(
        TypeError, match=r"observer .*Async: hook stage_finished is async"
    ):
        PipelineExecutor(observers=[Async()])


async def test_an_async_observer_hook_per_run_is_refused_before_any_stage_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ran = False

    async def mark(value: Any, ctx: PipelineContext[Any]) -> Any:
        nonlocal ran
        ran = True

    class Async(Observer):
        async def pipeline_started(self, event: Any) -> None:  # type: ignore[override]  # the mistake under test
            pass

    with pytest.raises(TypeError, match="hook pipeline_started is async"):
        await PipelineExecutor().execute(one(mark), observers=[Async()])
    assert not ran


async def test_a_condition_returning_a_coroutine_fails_its_stage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def async_condition(ctx: PipelineContext[Any]) -> bool:
        return False

    def wrapper(ctx: PipelineContext[Any]) -> Any:
        return async_condition(ctx)

    result = await PipelineExecutor().execute(one(condition=wrapper))
    assert result.stage_results["a"].status is StageStatus.FAILED
    assert "the condition returned a coroutine" in (
        result.stage_results["a"].error or ""
    )


@pytest.mark.parametrize("kind", ["coroutine", "async generator"])
async def test_a_stage_returning_an_awaitable_fails_with_a_hint(
    autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    async def inner() -> int:
        return 1

    async def agen() -> Any:
        yield 1

    async def forgot(value: Any, ctx: PipelineContext[Any]) -> Any:
        return inner() if kind == "coroutine" else agen()

    result = await PipelineExecutor().execute(one(forgot))
    stage = result.stage_results["a"]
    assert stage.status is StageStatus.FAILED
    assert isinstance(stage.exception, StageContractError)
    assert stage.error == (
        f"StageContractError: stage 'a' returned a{'n' * (kind[0] == 'a')} {kind} "
        "instead of a value: did you forget await?"
    )


async def test_a_fan_out_input_whose_iteration_raises_fails_the_stage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Broken(list[int]):
        def __iter__(self) -> Any:
            raise RuntimeError("cannot iterate")

    async def source(value: Any, ctx: PipelineContext[Any]) -> Any:
        return Broken([1, 2])

    result = await PipelineExecutor().execute(
        PipelineDefinition(
            name="p",
            stages=[
                StageDefinition("src", source),
                StageDefinition(
                    "each", work, inputs=["src"], pattern=ExecutionPattern.FAN_OUT
                ),
            ],
        )
    )
    assert result.stage_results["each"].error == (
        "reading its input raised RuntimeError: cannot iterate"
    )


async def test_a_stage_result_with_wrong_field_types_fails_the_stage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Odd:
        name = "odd"

        async def execute(self, value: Any, ctx: PipelineContext[Any]) -> Any:
            wrong: Any = 123  # what an untyped caller can pass
            return StageResult.model_construct(success=False, error=wrong)

    result = await PipelineExecutor().execute(
        one(Odd(), retry_config=RetryConfig(max_attempts=2, retryable_errors=["x"]))
    )
    stage = result.stage_results["a"]
    assert stage.status is StageStatus.FAILED
    assert isinstance(stage.exception, StageContractError)
    assert "fields of the wrong type: error=123" in (stage.error or "")


def test_a_stage_whose_execute_attribute_raises_is_reported_by_validation() -> None:
    class Trap:
        name = "trap"

        @property
        def execute(self) -> Any:
            raise RuntimeError("gotcha")

    problems = one(Trap()).validate_pipeline()
    assert problems == [
        "stage 'a': reading its execute attribute raised RuntimeError: gotcha"
    ]


# 9. a token assigned during the run is honoured


async def test_a_token_assigned_by_a_stage_cancels_the_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def assign(value: Any, ctx: PipelineContext[Any]) -> Any:
        await trio.sleep(1)
        ctx.cancel_token = trio.Event()
        ctx.cancel_token.set()
        return value

    async def long(value: Any, ctx: PipelineContext[Any]) -> Any:
        await trio.sleep(10)

    result = await PipelineExecutor().execute(
        PipelineDefinition(
            name="p",
            stages=[StageDefinition("assign", assign), StageDefinition("long", long)],
        )
    )
    assert result.status is PipelineStatus.CANCELLED
    assert result.total_duration_ms == 1000.0
    assert result.stage_results["long"].error == "cancelled: cancel token set"

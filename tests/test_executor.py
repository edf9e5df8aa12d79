"""The executor's semantics, timed exactly under the autojump clock."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from stages import Log, StageFn, execute, failing, sleeper

import actors
from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineStatus,
    RetryConfig,
    StageDefinition,
    StageResult,
    StageStatus,
    StageTimeoutError,
    failure_result,
    success_result,
)
from actors.testing import (
    arun,
    assert_cancelled_promptly,
    assert_timeline,
    raises,
    returns,
    returns_input,
    script,
)


def pipeline(*stages: StageDefinition, **options: Any) -> PipelineDefinition:
    """Build a PipelineDefinition named 'test'."""
    return PipelineDefinition(name="test", stages=stages, **options)


def statuses(result: actors.PipelineResult) -> dict[str, StageStatus]:
    """Map each stage id to its status."""
    return {stage_id: r.status for stage_id, r in result.stage_results.items()}


# --- scheduling -------------------------------------------------------------


async def test_stage_starts_when_its_own_inputs_are_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No waves: a stage does not wait for unrelated stages of the same depth."""
    done = await arun(
        pipeline(
            StageDefinition("a", script(returns_input(after=1))),
            StageDefinition("slow", script(returns_input(after=5)), inputs=["a"]),
            StageDefinition("fast", script(returns_input(after=1)), inputs=["a"]),
            StageDefinition(
                "after_fast", script(returns_input(after=1)), inputs=["fast"]
            ),
            StageDefinition(
                "join", script(returns_input(after=1)), inputs=["slow", "after_fast"]
            ),
        )
    )
    assert_timeline(
        done,
        """
        0 a started
        1 a succeeded
        1 slow started
        1 fast started
        2 fast succeeded
        2 after_fast started
        3 after_fast succeeded
        6 slow succeeded
        6 join started
        7 join succeeded
        7 pipeline succeeded
        """,
    )
    assert {c.stage: c.started for c in done.calls} == {
        "a": 0,
        "slow": 1,
        "fast": 1,
        "after_fast": 2,
        "join": 6,
    }
    assert done.result.total_duration_ms == 7000.0
    assert done.result.critical_path() == ["a", "slow", "join"]


async def test_makespan_equals_critical_path_of_uneven_dag(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The run takes exactly as long as its longest dependency chain."""
    durations = {"a": 1, "b": 4, "c": 2, "d": 2, "e": 1, "f": 3}
    deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["c"], "e": ["b", "d"], "f": ["c"]}
    result = await execute(
        pipeline(
            *(
                StageDefinition(s, sleeper(durations[s]), inputs=deps[s])
                for s in durations
            )
        )
    )
    # a(1) -> b(4) -> e(1) = 6; a -> c(2) -> f(3) = 6; a -> c -> d(2) -> e = 6.
    assert result.total_duration_ms == 6000.0
    assert result.stage_results["e"].profile is not None
    assert result.stage_results["e"].profile.ready_at_ms == 5000.0


async def test_input_shapes(autojump_clock: trio.testing.MockClock) -> None:
    """No inputs -> initial input; one -> that output; several -> {id: output}."""
    seen: dict[str, Any] = {}

    def recorder(name: str, value: Any) -> StageFn:
        async def stage(input: Any, context: PipelineContext[Any]) -> Any:
            seen[name] = input
            return value

        return stage

    result = await execute(
        pipeline(
            StageDefinition("root", recorder("root", 1)),
            StageDefinition("other", recorder("other", 2)),
            StageDefinition("one", recorder("one", 3), inputs=["root"]),
            StageDefinition("many", recorder("many", 4), inputs=["one", "other"]),
        ),
        "initial",
    )
    assert seen == {
        "root": "initial",
        "other": "initial",
        "one": 1,
        "many": {"one": 3, "other": 2},
    }
    assert result.outputs == {"root": 1, "other": 2, "one": 3, "many": 4}


async def test_stage_object_form_and_returned_stage_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage object's StageResult is used as is; a function may also return one."""

    class Upper:
        name = "upper"

        async def execute(
            self, input: str, context: PipelineContext[Any]
        ) -> StageResult[str]:
            await trio.sleep(1)
            return success_result(
                input.upper(), stage_name=self.name, metadata={"n": 1}
            )

    async def explicit(input: str, context: PipelineContext[Any]) -> StageResult[Any]:
        return failure_result(f"refused {input}", stage_name="explicit")

    result = await execute(
        pipeline(
            StageDefinition("upper", Upper()),
            StageDefinition("explicit", explicit, inputs=["upper"], critical=False),
        ),
        "abc",
    )
    upper = result.stage_results["upper"]
    assert (upper.output, upper.stage_name, upper.metadata, upper.attempts) == (
        "ABC",
        "upper",
        {"n": 1},
        1,
    )
    assert upper.duration_ms == 1000.0
    assert result.stage_results["explicit"].error == "refused ABC"
    assert result.failed_stages == ["explicit"]
    assert result.success


async def test_stage_object_returning_wrong_type_fails_clearly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An execute() that returns a non-StageResult fails with a clear error."""

    class Sloppy:
        name = "sloppy"

        async def execute(self, input: Any, context: PipelineContext[Any]) -> Any:
            return 42

    result = await execute(pipeline(StageDefinition("s", Sloppy())))
    stage = result.stage_results["s"]
    assert stage.status is StageStatus.FAILED
    assert stage.error is not None
    assert stage.error.startswith(
        "StageContractError: stage 's': execute returned int, expected a StageResult"
    )
    assert isinstance(stage.exception, actors.StageContractError)


async def test_exception_is_kept_but_not_serialized(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A raised exception fails the stage; its text names the type and message."""
    result = await execute(pipeline(StageDefinition("f", failing(1, "bad input"))))
    stage = result.stage_results["f"]
    assert stage.error == "ValueError: bad input"
    assert isinstance(stage.exception, ValueError)
    assert "exception" not in stage.model_dump()
    assert result.failed_stages == ["f"]
    assert result.status is PipelineStatus.FAILED
    assert not result.success


# --- conditional and non-critical -------------------------------------------


async def test_condition_sees_state_set_upstream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The condition runs after the inputs arrive; false skips, downstream gets None."""

    async def analyze(input: Any, context: PipelineContext[Any]) -> str:
        await trio.sleep(1)
        context.set_state("has_lyrics", False)
        context.set_state("has_drums", True)
        return "audio"

    received: dict[str, Any] = {}

    async def consume(input: Any, context: PipelineContext[Any]) -> str:
        received.update(input)
        return "done"

    result = await execute(
        pipeline(
            StageDefinition("audio", analyze),
            StageDefinition(
                "lyrics",
                sleeper(1, "words"),
                pattern=ExecutionPattern.CONDITIONAL,
                inputs=["audio"],
                condition=lambda ctx: ctx.get_state("has_lyrics", True),
            ),
            StageDefinition(
                "drums",
                sleeper(1, "beats"),
                inputs=["audio"],
                condition=lambda ctx: ctx.get_state("has_drums", False),
            ),
            StageDefinition("mix", consume, inputs=["lyrics", "drums"]),
        )
    )
    assert statuses(result)["lyrics"] is StageStatus.SKIPPED
    assert result.stage_results["lyrics"].metadata["skipped"] is True
    assert result.stage_results["lyrics"].success
    assert received == {"lyrics": None, "drums": "beats"}
    assert result.outputs["lyrics"] is None
    assert result.success
    assert result.total_duration_ms == 2000.0


async def test_condition_that_raises_fails_the_stage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A condition's exception is the stage's failure."""

    def broken(context: PipelineContext[Any]) -> bool:
        raise KeyError("flag")

    result = await execute(
        pipeline(
            StageDefinition(
                "c", sleeper(1), pattern=ExecutionPattern.CONDITIONAL, condition=broken
            )
        )
    )
    stage = result.stage_results["c"]
    assert stage.status is StageStatus.FAILED
    assert stage.error == "condition raised KeyError: 'flag'"
    assert stage.attempts == 0


async def test_non_critical_failure_lets_the_pipeline_succeed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A non-critical failure is recorded; downstream receives None."""
    received: list[Any] = []

    async def consume(input: Any, context: PipelineContext[Any]) -> str:
        received.append(input)
        return "ok"

    result = await execute(
        pipeline(
            StageDefinition("optional", failing(1), critical=False),
            StageDefinition("after", consume, inputs=["optional"]),
        )
    )
    assert result.success
    assert result.status is PipelineStatus.SUCCEEDED
    assert result.failed_stages == ["optional"]
    assert "optional" not in result.outputs
    assert received == [None]


# --- fail-fast and its absence ---------------------------------------------


async def test_fail_fast_cancels_running_and_unstarted_stages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The first critical failure cancels everything at that instant; cleanup runs."""
    done = await arun(
        pipeline(
            StageDefinition("bad", script(raises(ValueError("boom"), after=1))),
            StageDefinition("long", script(returns_input(after=10))),
            StageDefinition("later", script(returns_input(after=1)), inputs=["long"]),
        )
    )
    result = done.result
    assert statuses(result) == {
        "bad": StageStatus.FAILED,
        "long": StageStatus.CANCELLED,
        "later": StageStatus.CANCELLED,
    }
    # Both start at 0, in trio's order: compared sorted.
    assert sorted((c.stage, c.started, c.ended, c.cancelled) for c in done.calls) == [
        ("bad", 0, 1, False),
        ("long", 0, 1, True),
    ]
    assert done.cancelled_at == 1
    assert_cancelled_promptly(done, "long")
    assert result.total_duration_ms == 1000.0
    assert result.status is PipelineStatus.FAILED
    assert result.failed_stages == ["bad"]
    long = result.stage_results["long"]
    assert long.duration_ms == 1000.0
    assert long.error == "cancelled: stage 'bad' failed"
    assert long.attempts == 1
    assert result.stage_results["later"].attempts == 0


async def test_without_fail_fast_independent_branches_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """fail_fast=False: other branches complete; dependents are upstream_failed, transitively."""
    result = await execute(
        pipeline(
            StageDefinition("bad", failing(1)),
            StageDefinition("child", sleeper(1), inputs=["bad"], critical=False),
            StageDefinition("grandchild", sleeper(1), inputs=["child"]),
            StageDefinition("other", sleeper(5)),
            StageDefinition("other_child", sleeper(1), inputs=["other"]),
            fail_fast=False,
        )
    )
    assert statuses(result) == {
        "bad": StageStatus.FAILED,
        "child": StageStatus.UPSTREAM_FAILED,
        "grandchild": StageStatus.UPSTREAM_FAILED,
        "other": StageStatus.SUCCEEDED,
        "other_child": StageStatus.SUCCEEDED,
    }
    assert result.stage_results["grandchild"].error == "upstream stage 'child' failed"
    assert result.failed_stages == ["bad"]
    assert not result.success
    assert result.total_duration_ms == 6000.0


# --- timeouts and retries ---------------------------------------------------


async def test_attempt_timeout_is_a_retryable_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """timeout_ms bounds each attempt; the error says it timed out; retries follow."""
    log: Log = []

    async def slow(input: Any, context: PipelineContext[Any]) -> str:
        log.append((trio.current_time(), "attempt"))
        await trio.sleep(10)
        return "never"

    result = await execute(
        pipeline(
            StageDefinition(
                "slow",
                slow,
                timeout_ms=500,
                retry_config=RetryConfig(
                    max_attempts=3, initial_delay_ms=250, retryable_errors=["timeout"]
                ),
            )
        )
    )
    stage = result.stage_results["slow"]
    assert [t for t, _ in log] == [0, 0.75, 1.75]
    assert stage.attempts == 3
    assert (
        stage.error
        == "StageTimeoutError: stage 'slow' timed out after 500 ms (attempt 3)"
    )
    assert isinstance(stage.exception, StageTimeoutError)
    assert isinstance(stage.exception, TimeoutError)
    assert stage.profile is not None
    assert stage.profile.attempt_ms == (500.0, 500.0, 500.0)
    assert stage.profile.backoff_ms == 750.0
    assert result.total_duration_ms == 2250.0


async def test_backoff_schedule_is_exact(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Delay before attempt k is min(initial * multiplier ** (k - 2), max)."""
    retry = RetryConfig(
        max_attempts=5, initial_delay_ms=100, backoff_multiplier=2, max_delay_ms=300
    )
    done = await arun(
        pipeline(
            StageDefinition("f", script(raises(ValueError("boom"))), retry_config=retry)
        )
    )
    assert [c.started for c in done.calls] == [0, 0.1, 0.3, 0.6, 0.9]
    assert [c.attempt for c in done.calls] == [1, 2, 3, 4, 5]
    assert done.result.stage_results["f"].attempts == 5
    assert [retry.delay_ms(k) for k in range(2, 6)] == [100, 200, 300, 300]


async def test_flaky_stage_succeeds_on_a_later_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage that fails twice then succeeds ends succeeded with three attempts."""
    limited = ConnectionError("rate_limit")
    done = await arun(
        pipeline(
            StageDefinition(
                "f",
                script(
                    raises(limited, after=1),
                    raises(limited, after=1),
                    returns("ok", after=1),
                ),
                retry_config=RetryConfig(max_attempts=5, initial_delay_ms=1000),
            )
        )
    )
    stage = done.result.stage_results["f"]
    assert (stage.status, stage.output, stage.attempts) == (
        StageStatus.SUCCEEDED,
        "ok",
        3,
    )
    assert stage.duration_ms == 6000.0  # 1 + 1 + 1 + 2 + 1
    assert_timeline(
        done,
        """
        0 f started
        1 f failed attempt=1 ConnectionError: rate_limit
        2 f started attempt=2
        3 f failed attempt=2 ConnectionError: rate_limit
        5 f started attempt=3
        6 f succeeded
        6 pipeline succeeded
        """,
    )


@pytest.mark.parametrize(
    ("retry", "attempts"),
    [
        (
            RetryConfig(
                max_attempts=3, initial_delay_ms=0, retryable_errors=["RATE_LIMIT"]
            ),
            3,
        ),
        (
            RetryConfig(
                max_attempts=3, initial_delay_ms=0, retryable_errors=["timeout"]
            ),
            1,
        ),
        (
            RetryConfig(
                max_attempts=3, initial_delay_ms=0, retry_on=(ConnectionError,)
            ),
            3,
        ),
        (RetryConfig(max_attempts=3, initial_delay_ms=0, retry_on=(KeyError,)), 1),
        (
            RetryConfig(
                max_attempts=3,
                initial_delay_ms=0,
                retry_on=(OSError,),
                retryable_errors=["nope"],
            ),
            1,
        ),
    ],
)
async def test_retry_filters(
    retry: RetryConfig, attempts: int, autojump_clock: trio.testing.MockClock
) -> None:
    """Only failures matching retryable_errors (any case) and retry_on are retried."""

    async def limited(input: Any, context: PipelineContext[Any]) -> str:
        raise ConnectionError("rate_limit exceeded")

    result = await execute(pipeline(StageDefinition("f", limited, retry_config=retry)))
    assert result.stage_results["f"].attempts == attempts


async def test_cancellation_is_never_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelling during backoff ends the stage cancelled, with no further attempt."""
    log: Log = []
    token = trio.Event()

    async def cancel_later() -> None:
        await trio.sleep(1.5)
        token.set()

    retry = RetryConfig(max_attempts=10, initial_delay_ms=1000, backoff_multiplier=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancel_later)
        result = await execute(
            pipeline(StageDefinition("f", failing(0, log=log), retry_config=retry)),
            context=PipelineContext(cancel_token=token),
        )
    assert [t for t, _ in log] == [0, 1]
    stage = result.stage_results["f"]
    assert stage.status is StageStatus.CANCELLED
    assert result.failed_stages == []
    assert result.status is PipelineStatus.CANCELLED
    assert result.total_duration_ms == 1500.0


async def test_pipeline_timeout_cancels_the_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """PipelineDefinition.timeout_ms bounds the whole run."""
    result = await execute(
        pipeline(
            StageDefinition("a", sleeper(1)),
            StageDefinition("b", sleeper(5), inputs=["a"]),
            StageDefinition("c", sleeper(1), inputs=["b"]),
            timeout_ms=2500,
        )
    )
    assert statuses(result) == {
        "a": StageStatus.SUCCEEDED,
        "b": StageStatus.CANCELLED,
        "c": StageStatus.CANCELLED,
    }
    assert result.status is PipelineStatus.TIMED_OUT
    assert not result.success
    assert result.total_duration_ms == 2500.0
    assert (
        result.stage_results["b"].error == "cancelled: pipeline timed out after 2500 ms"
    )


# --- fan-out ----------------------------------------------------------------


async def test_fan_out_keeps_order_and_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Outputs come back in input order; at most max_concurrency items run at once."""
    running = peak = 0

    async def work(item: int, context: PipelineContext[Any]) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1 + (item % 3))
        running -= 1
        return item * 10

    result = await execute(
        pipeline(
            StageDefinition(
                "items", work, pattern=ExecutionPattern.FAN_OUT, max_concurrency=3
            )
        ),
        list(range(9)),
    )
    assert result.outputs["items"] == [i * 10 for i in range(9)]
    assert peak == 3
    profile = result.stage_results["items"].profile
    assert profile is not None
    assert profile.items == 9
    assert (profile.item_p50_ms, profile.item_max_ms) == (2000.0, 3000.0)
    assert result.stage_results["items"].attempts == 9


async def test_fan_out_spawns_lazily(autojump_clock: trio.testing.MockClock) -> None:
    """Live tasks stay at the limit plus a constant, whatever the list length."""
    live = peak = 0

    class Counter(trio.abc.Instrument):
        def task_spawned(self, task: trio.lowlevel.Task) -> None:
            nonlocal live, peak
            live += 1
            peak = max(peak, live)

        def task_exited(self, task: trio.lowlevel.Task) -> None:
            nonlocal live
            live -= 1

    async def work(item: int, context: PipelineContext[Any]) -> int:
        await trio.sleep(0.5)
        return item

    counter = Counter()
    trio.lowlevel.add_instrument(counter)
    try:
        result = await execute(
            pipeline(
                StageDefinition(
                    "items", work, pattern=ExecutionPattern.FAN_OUT, max_concurrency=4
                )
            ),
            list(range(500)),
        )
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert result.outputs["items"] == list(range(500))
    # 4 workers + the actor + the supervisor's watchdog.
    assert peak <= 4 + 2
    assert live == 0


async def test_fan_out_item_failure_fails_the_stage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Any item failure cancels the remaining items; no partial list is kept."""
    finished: list[int] = []

    async def work(item: int, context: PipelineContext[Any]) -> int:
        await trio.sleep(item)
        if item == 2:
            raise RuntimeError("item two")
        finished.append(item)
        return item

    result = await execute(
        pipeline(
            StageDefinition(
                "items", work, pattern=ExecutionPattern.FAN_OUT, critical=False
            )
        ),
        [1, 2, 3, 4],
    )
    stage = result.stage_results["items"]
    assert stage.status is StageStatus.FAILED
    assert stage.error == "item 1: RuntimeError: item two"
    assert "items" not in result.outputs
    assert finished == [1]
    assert stage.duration_ms == 2000.0


async def test_fan_out_retry_and_timeout_apply_per_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each item has its own attempts and per-attempt timeout."""
    attempts: dict[int, int] = {}

    async def work(item: int, context: PipelineContext[Any]) -> int:
        attempts[item] = attempts.get(item, 0) + 1
        if attempts[item] <= item:
            await trio.sleep(10)  # times out
        return item

    result = await execute(
        pipeline(
            StageDefinition(
                "items",
                work,
                pattern=ExecutionPattern.FAN_OUT,
                timeout_ms=1000,
                retry_config=RetryConfig(max_attempts=3, initial_delay_ms=500),
            )
        ),
        [0, 1, 2],
    )
    assert result.outputs["items"] == [0, 1, 2]
    assert attempts == {0: 1, 1: 2, 2: 3}
    assert result.stage_results["items"].attempts == 6
    # Item 2: 1 s timeout, 0.5 s backoff, 1 s timeout, 1 s backoff, then done.
    assert result.total_duration_ms == 3500.0


async def test_fan_out_empty_list_and_wrong_input(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An empty list gives []; a non-list input fails saying what arrived."""
    result = await execute(
        pipeline(
            StageDefinition("empty", sleeper(1), pattern=ExecutionPattern.FAN_OUT),
            StageDefinition("scalar", sleeper(1, value={"a": 1})),
            StageDefinition(
                "wrong", sleeper(1), pattern=ExecutionPattern.FAN_OUT, inputs=["scalar"]
            ),
            fail_fast=False,
        ),
        [],
    )
    assert result.outputs["empty"] == []
    wrong = result.stage_results["wrong"]
    assert wrong.status is StageStatus.FAILED
    assert (
        wrong.error
        == "TypeError: FAN_OUT stage 'wrong' expected a list or tuple input, got dict"
    )


# --- cancellation -----------------------------------------------------------


async def test_cancel_token_stops_the_run_promptly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Setting the token cancels running stages at that instant."""
    token = trio.Event()
    log: Log = []

    async def cancel_later() -> None:
        await trio.sleep(1.5)
        token.set()

    context: PipelineContext[None] = PipelineContext(cancel_token=token)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancel_later)
        result = await execute(
            pipeline(
                StageDefinition("a", sleeper(1, log=log, name="a")),
                StageDefinition("b", sleeper(5, log=log, name="b"), inputs=["a"]),
            ),
            context=context,
        )
    assert log == [(0, "start a"), (1, "end a"), (1, "start b"), (1.5, "end b")]
    assert statuses(result) == {"a": StageStatus.SUCCEEDED, "b": StageStatus.CANCELLED}
    assert result.status is PipelineStatus.CANCELLED
    assert context.is_cancelled()
    assert result.total_duration_ms == 1500.0


async def test_token_set_before_the_run_starts_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A token that is already set cancels every stage before it starts."""
    token = trio.Event()
    token.set()
    log: Log = []
    result = await execute(
        pipeline(StageDefinition("a", sleeper(1, log=log, name="a"))),
        context=PipelineContext(cancel_token=token),
    )
    assert log == []
    assert statuses(result) == {"a": StageStatus.CANCELLED}
    assert not result.success


async def test_caller_scope_cancels_execute(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelling the caller's scope cancels execute like any trio call."""
    log: Log = []
    returned = False
    with trio.move_on_after(2) as scope:
        await execute(pipeline(StageDefinition("a", sleeper(10, log=log, name="a"))))
        returned = True
    assert scope.cancelled_caught
    assert not returned
    assert log == [(0, "start a"), (2, "end a")]


async def test_caller_fail_after_raises_too_slow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """trio.fail_after around execute raises TooSlowError, as for any trio call."""
    with pytest.raises(trio.TooSlowError):
        with trio.fail_after(1):
            await execute(pipeline(StageDefinition("a", sleeper(10))))


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
async def test_interrupts_propagate_bare_after_cleanup(
    interrupt: type[BaseException], autojump_clock: trio.testing.MockClock
) -> None:
    """KeyboardInterrupt/SystemExit leave execute as themselves, after every stage stopped."""
    log: Log = []

    async def interrupted(input: Any, context: PipelineContext[Any]) -> None:
        await trio.sleep(1)
        raise interrupt

    with pytest.raises(interrupt):
        await execute(
            pipeline(
                StageDefinition("i", interrupted),
                StageDefinition("other", sleeper(5, log=log, name="other")),
            )
        )
    assert log == [(0, "start other"), (1, "end other")]


async def test_two_pipelines_run_concurrently(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Runs are independent: no global state."""
    results: list[actors.PipelineResult] = []
    executor = PipelineExecutor(log_events=False)

    async def one(name: str, seconds: float) -> None:
        definition = PipelineDefinition(
            name=name, stages=[StageDefinition("s", sleeper(seconds, name))]
        )
        results.append(await executor.execute(definition, None))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "first", 2)
        nursery.start_soon(one, "second", 1)
    assert [(r.pipeline, r.outputs["s"], r.total_duration_ms) for r in results] == [
        ("second", "second", 1000.0),
        ("first", "first", 2000.0),
    ]
    assert results[0].run_id != results[1].run_id


async def test_metrics_reach_the_result_metadata(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Metrics the stages add are in PipelineResult.metadata."""

    async def count(input: Any, context: PipelineContext[Any]) -> None:
        context.add_metric("tokens_used", 1500)
        context.increment_metric("llm_calls")
        context.increment_metric("llm_calls", 2)

    result = await execute(pipeline(StageDefinition("c", count)))
    assert result.metadata == {"tokens_used": 1500, "llm_calls": 3}


def test_run_outside_trio() -> None:
    """actors.run drives a pipeline from synchronous code."""

    async def answer(input: Any, context: PipelineContext[Any]) -> int:
        await trio.lowlevel.checkpoint()
        return 42

    result = actors.run(pipeline(StageDefinition("a", answer)))
    assert result.success
    assert result.get_output("a") == 42
    stage = result.get_result("a")
    assert stage is not None
    assert stage.status is StageStatus.SUCCEEDED
    assert result.get_result("missing") is None


async def test_condition_whose_truth_value_raises_fails_the_stage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A condition result that cannot be turned into a bool fails the stage, not the run."""

    class Ambiguous:
        def __bool__(self) -> bool:
            raise ValueError("truth value is ambiguous")

    result = await execute(
        pipeline(
            StageDefinition("c", sleeper(1), condition=lambda ctx: Ambiguous()),  # type: ignore[arg-type,return-value]  # on purpose
            StageDefinition("other", sleeper(1)),
            fail_fast=False,
        )
    )
    assert (
        result.stage_results["c"].error
        == "condition raised ValueError: truth value is ambiguous"
    )
    assert result.stage_results["other"].status is StageStatus.SUCCEEDED


async def test_errors_raised_while_cancelling_are_kept_not_raised(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage whose cleanup fails during fail-fast ends cancelled; the error is kept."""

    async def messy(input: Any, context: PipelineContext[Any]) -> None:
        async def child() -> None:
            try:
                await trio.sleep(10)
            finally:
                raise ValueError("cleanup failed")  # the point of the test

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
            await trio.sleep(10)

    result = await execute(
        pipeline(StageDefinition("messy", messy), StageDefinition("bad", failing(1)))
    )
    messy_result = result.stage_results["messy"]
    assert messy_result.status is StageStatus.CANCELLED
    assert messy_result.metadata["errors_during_cancellation"] == [
        "ValueError: cleanup failed"
    ]
    assert messy_result.error == (
        "cancelled: stage 'bad' failed; errors during cancellation: "
        "ValueError: cleanup failed"
    )
    assert result.total_duration_ms == 1000.0


async def test_stage_raising_an_exception_group_fails_with_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An ExceptionGroup from a stage is its failure; the group is kept whole."""

    async def two_failures(input: Any, context: PipelineContext[Any]) -> None:
        async def fail(exc: Exception) -> None:
            raise exc  # both raise in the same tick, before any cancellation

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail, ValueError("one"))
            nursery.start_soon(fail, KeyError("two"))

    result = await execute(pipeline(StageDefinition("s", two_failures)))
    stage = result.stage_results["s"]
    assert stage.status is StageStatus.FAILED
    assert pytest.RaisesGroup(ValueError, KeyError).matches(stage.exception)
    assert stage.error is not None
    assert stage.error.startswith("ExceptionGroup: ")


async def test_caller_cancellation_is_a_bare_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A caller's `except trio.Cancelled` sees the cancellation, not a group."""
    caught: list[BaseException] = []
    with trio.move_on_after(1):
        try:
            await execute(
                pipeline(
                    StageDefinition("a", sleeper(10)), StageDefinition("b", sleeper(10))
                )
            )
        except trio.Cancelled as exc:
            caught.append(exc)
            raise
    assert len(caught) == 1


async def test_execute_is_a_checkpoint_even_when_nothing_runs() -> None:
    """With the token already set, execute still yields (honest colour)."""
    token = trio.Event()
    token.set()
    with trio.testing.assert_checkpoints():
        await execute(
            pipeline(StageDefinition("a", sleeper(1))),
            context=PipelineContext(cancel_token=token),
        )


async def test_observers_need_not_be_hashable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A dataclass observer (unhashable) receives events like any other."""
    from dataclasses import dataclass, field

    @dataclass
    class Recorder(actors.Observer):
        seen: list[str] = field(default_factory=list)

        def stage_finished(self, event: actors.StageFinished) -> None:
            self.seen.append(event.stage_id)

    first, second = Recorder(), Recorder()
    await PipelineExecutor(log_events=False, observers=[first, second]).execute(
        pipeline(StageDefinition("a", sleeper(1)))
    )
    assert first.seen == second.seen == ["a"]


async def test_unnamed_success_result_is_named_after_its_stage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """success_result(x) without a name reports the stage id, not 'unknown'."""

    class Anonymous:
        name = "anonymous"

        async def execute(
            self, input: Any, context: PipelineContext[Any]
        ) -> StageResult[int]:
            return success_result(1)

    result = await execute(pipeline(StageDefinition("anon", Anonymous())))
    assert result.stage_results["anon"].stage_name == "anon"


async def test_overrunning_a_timeout_without_a_checkpoint_is_a_plain_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage that blocks past its deadline never saw Cancelled: it timed out."""

    async def blocking(input: Any, context: PipelineContext[Any]) -> str:
        autojump_clock.jump(2)  # time passes without a checkpoint
        return "late"

    result = await execute(pipeline(StageDefinition("b", blocking, timeout_ms=1000)))
    stage = result.stage_results["b"]
    assert isinstance(stage.exception, StageTimeoutError)
    assert (
        stage.error
        == "StageTimeoutError: stage 'b' timed out after 1000 ms (attempt 1)"
    )

"""Named limits in runs: ctx.limit, rate_limit=, RateLimited retries, events, exact times."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
import trio
import trio.testing

from actors import (
    ExecutionPattern,
    Observer,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineValidationError,
    RetryConfig,
    StageDefinition,
    StageProfile,
    StageRetrying,
    StageStatus,
)
from actors._events import LimitPaused, LimitWaited
from actors.limits import RateLimit, RateLimited


class Recorder(Observer):
    """Keeps the limit and retry events of a run."""

    def __init__(self) -> None:
        self.waited: list[LimitWaited] = []
        self.paused: list[LimitPaused] = []
        self.retrying: list[StageRetrying] = []

    def limit_waited(self, event: LimitWaited) -> None:
        self.waited.append(event)

    def limit_paused(self, event: LimitPaused) -> None:
        self.paused.append(event)

    def stage_retrying(self, event: StageRetrying) -> None:
        self.retrying.append(event)


def now() -> float:
    return round(trio.current_time(), 9)


def pipeline(*stages: StageDefinition) -> PipelineDefinition:
    return PipelineDefinition(name="quota", stages=stages)


def fan(stage: Any, **options: Any) -> StageDefinition:
    return StageDefinition("each", stage, pattern=ExecutionPattern.FAN_OUT, **options)


async def test_ctx_limit_in_fan_out_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Items share the executor's limit: grants follow the meter, throttle is summed."""
    grants: list[float] = []

    async def item(value: int, ctx: PipelineContext[Any]) -> int:
        async with ctx.limit("api", tokens=1) as permit:
            grants.append(now())
            permit.settle(tokens=1)
        return value * 2

    recorder = Recorder()
    executor = PipelineExecutor(
        limits={"api": RateLimit(requests_per_second=2)}, observers=[recorder]
    )
    result = await executor.execute(pipeline(fan(item)), [1, 2, 3, 4, 5])
    assert result.outputs == {"each": [2, 4, 6, 8, 10]}
    assert sorted(grants) == [0.0, 0.5, 1.0, 1.5, 2.0]
    profile = result.stage_results["each"].profile
    assert profile is not None
    assert profile.throttle_ms == 5000.0  # 0 + 500 + 1000 + 1500 + 2000
    assert sorted(e.waited_ms for e in recorder.waited) == [0, 500, 1000, 1500, 2000]
    assert {(e.stage_id, e.limit, e.requests, e.tokens) for e in recorder.waited} == {
        ("each", "api", 1, 1)
    }


async def test_rate_limit_per_item_attempt_outside_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """rate_limit= takes one request per item attempt; the wait is not in timeout_ms."""
    started: list[float] = []

    async def item(value: int, ctx: PipelineContext[Any]) -> int:
        started.append(now())
        await trio.sleep(0.1)
        return value

    executor = PipelineExecutor(limits={"api": RateLimit(requests_per_second=2)})
    definition = pipeline(
        fan(item, rate_limit="api", timeout_ms=150, max_concurrency=4)
    )
    result = await executor.execute(definition, list(range(4)))
    assert result.success, result.stage_results["each"].error
    assert sorted(started) == [0.0, 0.5, 1.0, 1.5]
    assert result.total_duration_ms == 1600.0
    profile = result.stage_results["each"].profile
    assert profile is not None
    assert (profile.throttle_ms, profile.item_running_ms) == (3000.0, 400.0)


async def test_static_and_computed_costs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """cost= is a token count or a function of the input; tokens pace the calls."""
    calls: list[tuple[str, float]] = []

    async def stage(value: Any, ctx: PipelineContext[Any]) -> Any:
        calls.append((str(value), now()))
        return value

    limits = {"tok": RateLimit(tokens_per_second=100, token_burst=100)}
    executor = PipelineExecutor(limits=limits)
    definition = pipeline(
        StageDefinition("a", stage, rate_limit="tok", cost=100),
        StageDefinition("b", stage, inputs=["a"], rate_limit="tok", cost=len),
    )
    result = await executor.execute(definition, "x" * 50)
    assert result.success
    # a takes 100 tokens at 0; b (50 tokens, its input's length) waits until 0.5.
    assert [t for _, t in calls] == [0.0, 0.5]
    profiles = {k: r.profile for k, r in result.stage_results.items()}
    assert profiles["a"] is not None
    assert profiles["b"] is not None
    assert (profiles["a"].throttle_ms, profiles["b"].throttle_ms) == (0.0, 500.0)


async def test_profile_without_limits_has_no_throttle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage that takes no limit reports throttle_ms None (and logs as before)."""

    async def stage(value: Any, ctx: PipelineContext[Any]) -> Any:
        return value

    result = await PipelineExecutor().execute(pipeline(StageDefinition("a", stage)))
    assert result.stage_results["a"].profile == StageProfile(
        ready_at_ms=0.0, started_at_ms=0.0, finished_at_ms=0.0, attempt_ms=(0.0,)
    )


# Validation.


async def _noop(value: Any, ctx: PipelineContext[Any]) -> Any:
    return value


async def test_unknown_rate_limit_is_reported_by_execute() -> None:
    """execute names the stage and the known limits; validate_pipeline cannot see them."""
    definition = pipeline(
        StageDefinition("a", _noop, rate_limit="openai"),
        StageDefinition("b", _noop, rate_limit="antropic"),
    )
    assert definition.validate_pipeline() == []
    executor = PipelineExecutor(
        limits={
            "openai": RateLimit(requests_per_minute=500),
            "anthropic": RateLimit(requests_per_minute=50),
        }
    )
    with pytest.raises(PipelineValidationError) as caught:
        await executor.execute(definition)
    assert caught.value.errors == (
        "stage 'b': rate_limit names unknown limit 'antropic'; known limits: "
        "'anthropic', 'openai' (declare it in PipelineExecutor(limits=...))",
    )
    with pytest.raises(PipelineValidationError, match=r"known limits: none"):
        await PipelineExecutor().execute(definition)


async def test_static_cost_above_the_burst_is_invalid() -> None:
    """A static cost that could never be granted is a validation error."""
    executor = PipelineExecutor(
        limits={"tok": RateLimit(tokens_per_minute=6000)}  # token burst: 100
    )
    definition = pipeline(StageDefinition("a", _noop, rate_limit="tok", cost=150))
    with pytest.raises(PipelineValidationError) as caught:
        await executor.execute(definition)
    assert caught.value.errors == (
        "stage 'a': cost 150: limit 'tok': a cost of 150 tokens exceeds its "
        "token_burst of 100; it could never be granted (raise token_burst or "
        "split the request)",
    )


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"cost": 5}, "stage 'a': cost applies only with a rate_limit"),
        (
            {"rate_limit": "api", "cost": -1},
            "stage 'a': cost must be a token count >= 0 or a function of the "
            "input, got -1",
        ),
        (
            {"rate_limit": " "},
            "stage 'a': rate_limit must name one of the executor's limits, got ' '",
        ),
        (
            {"rate_limit": "api", "retry_config": RetryConfig(max_retry_after_ms=-1)},
            "stage 'a': retry_config.max_retry_after_ms must be >= 0, got -1.0",
        ),
    ],
)
def test_definition_rules(options: dict[str, Any], error: str) -> None:
    """validate_pipeline checks what it can without the executor."""
    definition = pipeline(StageDefinition("a", _noop, **options))
    assert definition.validate_pipeline() == [error]


async def test_dynamic_cost_above_the_burst_fails_the_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A cost function returning more than the burst fails the stage, taking nothing."""
    executor = PipelineExecutor(limits={"tok": RateLimit(tokens_per_second=10)})
    definition = pipeline(StageDefinition("a", _noop, rate_limit="tok", cost=len))
    result = await executor.execute(definition, "x" * 11)
    assert result.stage_results["a"].error == (
        "ValueError: limit 'tok': a cost of 11 tokens exceeds its token_burst of "
        "10; it could never be granted (raise token_burst or split the request)"
    )


# ctx.limit misuse.


async def test_ctx_limit_unknown_names(autojump_clock: trio.testing.MockClock) -> None:
    """ctx.limit raises KeyError with the known names, or none outside limits."""
    seen: list[str] = []

    async def stage(value: Any, ctx: PipelineContext[Any]) -> Any:
        with pytest.raises(KeyError) as caught:
            ctx.limit("nope")
        seen.append(caught.value.args[0])
        return value

    executor = PipelineExecutor(limits={"api": RateLimit(requests_per_second=1)})
    assert (await executor.execute(pipeline(StageDefinition("a", stage)))).success
    assert (
        await PipelineExecutor().execute(pipeline(StageDefinition("a", stage)))
    ).success
    assert seen == [
        "unknown limit 'nope'; known limits: 'api'",
        "unknown limit 'nope'; known limits: none (declare them with "
        "PipelineExecutor(limits=...); ctx.limit works inside its stages)",
    ]
    with pytest.raises(KeyError, match="known limits: none"):
        PipelineContext().limit("api")


async def test_nested_run_never_takes_the_hosts_limits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A run started inside a stage sees its own executor's limits only."""
    seen: list[str] = []

    async def inner(value: Any, ctx: PipelineContext[Any]) -> Any:
        try:
            ctx.limit("api")
        except KeyError as exc:
            seen.append(exc.args[0])
        return value

    async def outer(value: Any, ctx: PipelineContext[Any]) -> Any:
        result = await PipelineExecutor().execute(pipeline(StageDefinition("i", inner)))
        return result.success

    executor = PipelineExecutor(limits={"api": RateLimit(requests_per_second=1)})
    assert (await executor.execute(pipeline(StageDefinition("o", outer)))).success
    assert seen == [
        "unknown limit 'api'; known limits: none (declare them with "
        "PipelineExecutor(limits=...); ctx.limit works inside its stages)"
    ]


# RateLimited and Retry-After.


async def test_rate_limited_pauses_the_limit_and_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A 429 at 0 pauses 'api' for 3 s: the queued stage b goes at 3.0, a's retry at 3.5.

    The retry filters say ValueError only: RateLimited is retried anyway,
    after max(backoff 100 ms, Retry-After 3 s).
    """
    calls: list[tuple[str, float]] = []

    async def a(value: Any, ctx: PipelineContext[Any]) -> Any:
        calls.append(("a", now()))
        if len(calls) == 1:
            raise RateLimited("429 from provider", retry_after_s=3.0)
        return "a"

    async def b(value: Any, ctx: PipelineContext[Any]) -> Any:
        calls.append(("b", now()))
        return "b"

    async def later(value: Any, ctx: PipelineContext[Any]) -> Any:
        await trio.sleep(0.1)

    retry = RetryConfig(max_attempts=2, initial_delay_ms=100, retry_on=[ValueError])
    definition = pipeline(
        StageDefinition("a", a, rate_limit="api", retry_config=retry),
        StageDefinition("later", later),
        StageDefinition("b", b, inputs=["later"], rate_limit="api"),
    )
    recorder = Recorder()
    executor = PipelineExecutor(
        limits={"api": RateLimit(requests_per_second=2)}, observers=[recorder]
    )
    result = await executor.execute(definition)
    assert result.success
    assert calls == [("a", 0.0), ("b", 3.0), ("a", 3.5)]
    assert [(e.stage_id, e.delay_ms) for e in recorder.retrying] == [("a", 3000.0)]
    assert [
        (e.stage_id, e.limit, e.pause_ms, e.until_ms, e.at_ms) for e in recorder.paused
    ] == [("a", "api", 3000.0, 3000.0, 0.0)]
    throttle = {
        k: r.profile.throttle_ms for k, r in result.stage_results.items() if r.profile
    }
    assert throttle == {"a": 500.0, "later": None, "b": 2900.0}


async def test_retry_after_above_the_cap_fails_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A Retry-After above max_retry_after_ms fails the stage at once, saying so."""

    async def stage(value: Any, ctx: PipelineContext[Any]) -> Any:
        raise RateLimited("429", retry_after_s=90.0)

    retry = RetryConfig(max_attempts=5)  # max_retry_after_ms: 60,000 by default
    executor = PipelineExecutor(limits={"api": RateLimit(requests_per_second=2)})
    result = await executor.execute(
        pipeline(StageDefinition("a", stage, rate_limit="api", retry_config=retry))
    )
    stage_result = result.stage_results["a"]
    assert (stage_result.status, stage_result.attempts) == (StageStatus.FAILED, 1)
    assert stage_result.error == (
        "RateLimited: 429; Retry-After of 90000 ms exceeds max_retry_after_ms "
        "(60000 ms): not retried"
    )
    assert trio.current_time() == 0


async def test_rate_limited_without_retry_after_uses_the_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No Retry-After: retried after the backoff, whatever retryable_errors say."""
    calls: list[float] = []

    async def stage(value: Any, ctx: PipelineContext[Any]) -> Any:
        calls.append(now())
        if len(calls) < 3:
            raise RateLimited("slow down")
        return "ok"

    retry = RetryConfig(
        max_attempts=3, initial_delay_ms=200, retryable_errors=["timeout"]
    )
    result = await PipelineExecutor().execute(
        pipeline(StageDefinition("a", stage, retry_config=retry))
    )
    assert result.success
    assert calls == [0.0, 0.2, 0.6]


async def test_rate_limited_without_attempts_left_fails(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Without attempts remaining, RateLimited fails the stage (and still pauses)."""

    async def stage(value: Any, ctx: PipelineContext[Any]) -> Any:
        raise RateLimited("429", retry_after_s=2.0)

    recorder = Recorder()
    executor = PipelineExecutor(
        limits={"api": RateLimit(requests_per_second=2)}, observers=[recorder]
    )
    result = await executor.execute(
        pipeline(StageDefinition("a", stage, rate_limit="api"))
    )
    assert result.stage_results["a"].error == "RateLimited: 429"
    assert [(e.pause_ms, e.until_ms) for e in recorder.paused] == [(2000.0, 2000.0)]


async def test_rate_limited_out_of_ctx_limit_pauses_that_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A RateLimited raised inside ctx.limit pauses it for every item (once)."""
    grants: list[tuple[int, int, float]] = []
    attempts: dict[int, int] = {}

    async def item(value: int, ctx: PipelineContext[Any]) -> int:
        attempts[value] = attempts.get(value, 0) + 1
        async with ctx.limit("api"):
            grants.append((value, attempts[value], now()))
            if value == 0 and attempts[value] == 1:
                raise RateLimited("429", retry_after_s=2.0)
        return value

    recorder = Recorder()
    executor = PipelineExecutor(
        limits={"api": RateLimit(requests_per_second=2)}, observers=[recorder]
    )
    retry = RetryConfig(max_attempts=2, initial_delay_ms=0)
    definition = pipeline(fan(item, max_concurrency=1, retry_config=retry))
    result = await executor.execute(definition, [0, 1])
    assert result.success
    # Item 0 is pushed back at 0 for 2 s; its retry and item 1 follow the meter.
    assert grants == [(0, 1, 0.0), (0, 2, 2.0), (1, 1, 2.5)]
    assert [(e.stage_id, e.pause_ms, e.until_ms) for e in recorder.paused] == [
        ("each", 2000.0, 2000.0)
    ]


# Sharing, scale, interrupts.


async def test_runs_of_one_executor_share_its_limits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two runs at once of one executor take turns on the same meter."""
    grants: list[float] = []

    async def stage(value: Any, ctx: PipelineContext[Any]) -> Any:
        grants.append(now())
        return value

    executor = PipelineExecutor(limits={"api": RateLimit(requests_per_second=1)})
    definition = pipeline(fan(stage, rate_limit="api", max_concurrency=1))
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(executor.execute, definition, [1, 2])
    assert sorted(grants) == [0.0, 1.0, 2.0, 3.0]


class _TaskCounter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.live = 0
        self.peak = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.live += 1
        self.peak = max(self.peak, self.live)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.live -= 1


async def test_hundred_items_bounded_tasks_grants_follow_the_meter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """100 items, 64 at a time on a limit of 64 slots: tasks stay bounded, 10 grants/s."""
    grants: list[float] = []

    async def item(value: int, ctx: PipelineContext[Any]) -> int:
        grants.append(now())
        await trio.sleep(1)
        return value

    counter = _TaskCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        executor = PipelineExecutor(
            limits={"api": RateLimit(requests_per_second=10, max_concurrency=64)}
        )
        definition = pipeline(fan(item, rate_limit="api", max_concurrency=64))
        result = await executor.execute(definition, list(range(100)))
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert result.success
    assert sorted(grants) == [round(i * 0.1, 9) for i in range(100)]
    assert counter.peak <= 64 + 5


async def test_keyboard_interrupt_while_queued_stops_without_retry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A KeyboardInterrupt while a stage is queued on a limit stops the run: no retry."""

    async def quick(value: Any, ctx: PipelineContext[Any]) -> Any:
        return value

    async def boom(value: Any, ctx: PipelineContext[Any]) -> Any:
        await trio.sleep(0.5)
        raise KeyboardInterrupt

    retry = RetryConfig(max_attempts=3, initial_delay_ms=0)
    definition = pipeline(
        StageDefinition("one", quick, rate_limit="api", retry_config=retry),
        StageDefinition("two", quick, rate_limit="api", retry_config=retry),
        StageDefinition("boom", boom),
    )
    recorder = Recorder()
    executor = PipelineExecutor(
        limits={"api": RateLimit(requests_per_second=1)}, observers=[recorder]
    )
    with pytest.raises(KeyboardInterrupt):
        await executor.execute(definition)
    assert trio.current_time() == 0.5
    assert recorder.retrying == []
    assert len(recorder.waited) == 1  # the other stage was still queued


# Log lines.


async def test_limit_events_are_logged(autojump_clock: trio.testing.MockClock) -> None:
    """limit_waited logs at debug, limit_paused at warning, with their fields."""

    async def item(value: int, ctx: PipelineContext[Any]) -> int:
        async with ctx.limit("api") as permit:
            if value == 1:
                permit.retry_after(1.5)
        return value

    executor = PipelineExecutor(limits={"api": RateLimit(requests_per_second=2)})
    definition = pipeline(fan(item, max_concurrency=1))
    with structlog.testing.capture_logs() as logs:
        result = await executor.execute(definition, [1, 2])
    assert result.success
    limit_logs = [
        {k: v for k, v in e.items() if k not in ("run_id", "pipeline")}
        for e in logs
        if e["event"].startswith("limit_")
    ]
    assert limit_logs == [
        {
            "event": "limit_waited",
            "log_level": "debug",
            "stage_id": "each",
            "limit": "api",
            "waited_ms": 0.0,
            "requests": 1,
            "tokens": 0,
            "at_ms": 0.0,
        },
        {
            "event": "limit_paused",
            "log_level": "warning",
            "stage_id": "each",
            "limit": "api",
            "pause_ms": 1500.0,
            "until_ms": 1500.0,
            "at_ms": 0.0,
        },
        {
            "event": "limit_waited",
            "log_level": "debug",
            "stage_id": "each",
            "limit": "api",
            "waited_ms": 1500.0,
            "requests": 1,
            "tokens": 0,
            "at_ms": 1500.0,
        },
    ]
    stage_log = next(e for e in logs if e["event"] == "stage_succeeded")
    assert stage_log["throttle_ms"] == 1500.0


@pytest.mark.usefixtures("restore_structlog")
async def test_logs_summary_shows_throttle_and_pauses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A run's JSON log, analysed: throttle per stage and every pause, in the summary."""
    import io

    import actors.logging
    from actors.analysis import (
        PauseRecord,
        parse_log,
        render_summary,
        render_timeline,
    )

    async def item(value: int, ctx: PipelineContext[Any]) -> int:
        async with ctx.limit("api") as permit:
            if value == 1:
                permit.retry_after(1.5)
        return value

    stream = io.StringIO()
    actors.logging.configure_json(stream, level="debug")
    executor = PipelineExecutor(limits={"api": RateLimit(requests_per_second=2)})
    await executor.execute(pipeline(fan(item, max_concurrency=1)), [1, 2])
    (run,) = parse_log(stream.getvalue().splitlines()).runs
    assert run.pauses == [
        PauseRecord(
            limit="api", stage_id="each", pause_ms=1500.0, until_ms=1500.0, at_ms=0.0
        )
    ]
    assert run.stages["each"].throttle_ms == 1500.0
    summary = render_summary(parse_log(stream.getvalue().splitlines()))
    assert "  throttled by limits: each 1.5 s\n" in summary
    assert "  pause: limit 'api' by each at 0 ms for 1.5 s (Retry-After)\n" in summary
    page = render_timeline(run, "html")
    assert page.count('<div class="paused"') == 1
    assert (
        '<div class="paused" style="left:0.000%;width:100.000%" '
        'title="limit &#x27;api&#x27; paused by a Retry-After"></div>'
    ) in page

"""The observer protocol: who is called, with what, and what a failing one costs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
import trio
import trio.lowlevel
import trio.testing
from stages import fan_out, sleeper

from actors import (
    ExecutionPattern,
    ItemFinished,
    LoggingObserver,
    Observer,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineFinished,
    PipelineStarted,
    RetryConfig,
    StageDefinition,
    StageFinished,
    StageRetrying,
    StageStarted,
    StageStatus,
    StageUnresponsive,
)

HOOKS = (
    "pipeline_started",
    "stage_started",
    "stage_retrying",
    "item_finished",
    "stage_finished",
    "stage_unresponsive",
    "pipeline_finished",
)


def chain(name: str = "chain") -> PipelineDefinition:
    """Two one-second stages, a then b."""
    return PipelineDefinition(
        name=name,
        stages=[
            StageDefinition("a", sleeper(1)),
            StageDefinition("b", sleeper(1), inputs=["a"]),
        ],
    )


class Recorder(Observer):
    """Records (hook, stage_id, at_ms) for every event."""

    def __init__(self) -> None:
        self.record: list[tuple[str, str | None, float]] = []
        self.events: list[object] = []

    def _add(self, hook: str, event: Any) -> None:
        self.events.append(event)
        self.record.append((hook, getattr(event, "stage_id", None), event.at_ms))

    def pipeline_started(self, event: PipelineStarted) -> None:
        """Record it."""
        self._add("pipeline_started", event)

    def stage_started(self, event: StageStarted) -> None:
        """Record it."""
        self._add("stage_started", event)

    def stage_retrying(self, event: StageRetrying) -> None:
        """Record it."""
        self._add("stage_retrying", event)

    def item_finished(self, event: ItemFinished) -> None:
        """Record it."""
        self._add("item_finished", event)

    def stage_finished(self, event: StageFinished) -> None:
        """Record it."""
        self._add("stage_finished", event)

    def stage_unresponsive(self, event: StageUnresponsive) -> None:
        """Record it."""
        self._add("stage_unresponsive", event)

    def pipeline_finished(self, event: PipelineFinished) -> None:
        """Record it."""
        self._add("pipeline_finished", event)


async def test_executor_observer_receives_every_event_of_every_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An observer given to the executor sees each run, in order, with exact times."""
    recorder = Recorder()
    executor = PipelineExecutor(observers=[recorder], log_events=False)
    first = await executor.execute(chain())
    second = await executor.execute(chain())
    one_run = [
        ("pipeline_started", None, 0.0),
        ("stage_started", "a", 0.0),
        ("stage_finished", "a", 1000.0),
        ("stage_started", "b", 1000.0),
        ("stage_finished", "b", 2000.0),
        ("pipeline_finished", None, 2000.0),
    ]
    assert recorder.record == one_run + one_run
    run_ids = [getattr(e, "run_id", None) for e in recorder.events]
    assert run_ids == [first.run_id] * 6 + [second.run_id] * 6


async def test_run_observer_sees_only_its_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An observer passed to execute is called for that run only, after the executor's."""
    order: list[str] = []

    class Named(Observer):
        def __init__(self, name: str) -> None:
            self.name = name

        def pipeline_started(self, event: PipelineStarted) -> None:
            order.append(f"{self.name} {event.pipeline}")

    executor = PipelineExecutor(observers=[Named("executor")], log_events=False)
    await executor.execute(chain("one"), observers=[Named("run")])
    await executor.execute(chain("two"))
    assert order == ["executor one", "run one", "executor two"]


async def test_an_observer_registered_twice_is_called_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The same observer on the executor and the run receives each event once."""
    recorder = Recorder()
    executor = PipelineExecutor(observers=[recorder], log_events=False)
    await executor.execute(chain(), observers=[recorder, recorder])
    assert len(recorder.record) == 6


async def test_only_overridden_hooks_are_called(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The executor never even looks up a hook the observer did not override."""
    looked_up: list[str] = []
    finished: list[str] = []

    class OnlyFinished(Observer):
        def __getattribute__(self, name: str) -> Any:
            if name in HOOKS:
                looked_up.append(name)
            return super().__getattribute__(name)

        def stage_finished(self, event: StageFinished) -> None:
            finished.append(event.stage_id)

    retry = RetryConfig(max_attempts=2, initial_delay_ms=10)
    calls = 0

    async def flaky(value: Any, context: PipelineContext[Any]) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("once")
        return [1, 2]

    definition = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("a", flaky, retry_config=retry),
            StageDefinition(
                "each", sleeper(1), inputs=["a"], pattern=ExecutionPattern.FAN_OUT
            ),
        ],
    )
    executor = PipelineExecutor(observers=[OnlyFinished()], log_events=False)
    result = await executor.execute(definition)
    assert result.success
    assert finished == ["a", "each"]
    assert looked_up == ["stage_finished", "stage_finished"]


async def test_events_carry_the_results_the_run_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """StageFinished and PipelineFinished hold the very results execute returns."""
    recorder = Recorder()
    result = await PipelineExecutor(observers=[recorder], log_events=False).execute(
        chain()
    )
    stage_events = [e for e in recorder.events if isinstance(e, StageFinished)]
    assert [e.result for e in stage_events] == list(result.stage_results.values())
    assert all(e.result is result.stage_results[e.stage_id] for e in stage_events)
    assert [e.status for e in stage_events] == [StageStatus.SUCCEEDED] * 2
    (finished,) = [e for e in recorder.events if isinstance(e, PipelineFinished)]
    assert finished.result is result
    (started,) = [e for e in recorder.events if isinstance(e, PipelineStarted)]
    assert started.stage_ids == ("a", "b")
    assert started.dependencies == {"a": (), "b": ("a",)}
    assert (started.fail_fast, started.timeout_ms) == (True, None)


async def test_raising_observer_is_disabled_logged_and_harmless(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An observer that raises is never called again; the others and the run go on."""
    calls: list[str] = []

    class Flaky(Observer):
        def stage_started(self, event: StageStarted) -> None:
            calls.append(f"started {event.stage_id}")
            raise RuntimeError("observer bug")

        def stage_finished(self, event: StageFinished) -> None:
            calls.append(f"finished {event.stage_id}")

        def pipeline_finished(self, event: PipelineFinished) -> None:
            calls.append("pipeline finished")

    recorder = Recorder()
    executor = PipelineExecutor(observers=[Flaky(), recorder], log_events=False)
    with structlog.testing.capture_logs() as captured:
        result = await executor.execute(chain())
    assert result.success
    assert result.total_duration_ms == 2000.0
    assert calls == ["started a"]
    assert len(recorder.record) == 6
    assert [(e["event"], e["hook"], e["error"]) for e in captured] == [
        ("observer_failed", "stage_started", "RuntimeError: observer bug")
    ]
    assert captured[0]["run_id"] == result.run_id


async def test_observer_disabled_in_one_run_still_serves_the_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Disabling is per run: the executor's observer is called again next run."""
    seen: list[str] = []

    class FailsFirst(Observer):
        def pipeline_started(self, event: PipelineStarted) -> None:
            seen.append(event.pipeline)
            if event.pipeline == "one":
                raise ValueError("first run only")

    executor = PipelineExecutor(observers=[FailsFirst()], log_events=False)
    await executor.execute(chain("one"))
    await executor.execute(chain("two"))
    assert seen == ["one", "two"]


async def test_retry_and_item_events_reach_observers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Fan-out items report their start, retry and end with their index."""
    failed: set[int] = set()

    async def item(value: int, context: PipelineContext[Any]) -> int:
        await trio.sleep(value)
        if value == 2 and value not in failed:
            failed.add(value)
            raise ValueError("again")
        return value

    definition = fan_out(item, retry_delay_ms=500)
    recorder = Recorder()
    await PipelineExecutor(observers=[recorder], log_events=False).execute(
        definition, [1, 2]
    )
    items = [
        (type(e).__name__, getattr(e, "item_index", None), e.at_ms)  # type: ignore[attr-defined]  # every event has at_ms
        for e in recorder.events
        if getattr(e, "stage_id", None) == "each"
    ]
    # Items 0 and 1 start in the same tick, in either order (trio shuffles).
    assert items[0] == ("StageStarted", None, 0.0)
    assert sorted(items[1:3]) == [("StageStarted", 0, 0.0), ("StageStarted", 1, 0.0)]
    assert items[3:] == [
        ("ItemFinished", 0, 1000.0),
        ("StageRetrying", 1, 2000.0),
        ("StageStarted", 1, 2500.0),
        ("ItemFinished", 1, 4500.0),
        ("StageFinished", None, 4500.0),
    ]
    fan_start = recorder.events[1]
    assert isinstance(fan_start, StageStarted)
    assert (fan_start.item_index, fan_start.items) == (None, 2)
    (retry,) = [e for e in recorder.events if isinstance(e, StageRetrying)]
    assert (retry.attempt, retry.delay_ms, retry.error, retry.error_type) == (
        1,
        500.0,
        "ValueError: again",
        "ValueError",
    )
    done = [e for e in recorder.events if isinstance(e, ItemFinished)]
    assert [(e.item_index, e.success, e.attempts, e.duration_ms) for e in done] == [
        (0, True, 1, 1000.0),
        (1, True, 2, 4500.0),
    ]


async def test_unresponsive_stage_is_reported_after_the_grace_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage that shields itself from cancellation is named after the grace period."""
    token = trio.Event()

    async def stubborn(value: Any, context: PipelineContext[Any]) -> Any:
        with trio.CancelScope(shield=True):
            await trio.sleep(5)
        await trio.lowlevel.checkpoint()
        return value

    async def cancel_at_one_second() -> None:
        await trio.sleep(1)
        token.set()

    recorder = Recorder()
    executor = PipelineExecutor(observers=[recorder], unresponsive_after_ms=1500)
    definition = PipelineDefinition(
        name="stuck", stages=[StageDefinition("s", stubborn)]
    )
    with structlog.testing.capture_logs() as captured:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_at_one_second)
            result = await executor.execute(
                definition, None, PipelineContext(cancel_token=token)
            )
    (event,) = [e for e in recorder.events if isinstance(e, StageUnresponsive)]
    assert (event.stage_id, event.cancelled_at_ms, event.at_ms) == ("s", 1000.0, 2500.0)
    assert result.stage_results["s"].status is StageStatus.CANCELLED
    assert result.total_duration_ms == 5000.0
    (logged,) = [e for e in captured if e["event"] == "stage_unresponsive"]
    assert (logged["stage_id"], logged["cancelled_at_ms"], logged["at_ms"]) == (
        "s",
        1000.0,
        2500.0,
    )


async def test_logging_is_an_observer_like_any_other(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """log_events=False plus a LoggingObserver logs exactly what the default does."""

    def names(captured: Sequence[Mapping[str, Any]]) -> list[tuple[str, str | None]]:
        return [(e["event"], e.get("stage_id")) for e in captured]

    with structlog.testing.capture_logs() as default:
        await PipelineExecutor().execute(chain())
    with structlog.testing.capture_logs() as explicit:
        await PipelineExecutor(log_events=False).execute(
            chain(), observers=[LoggingObserver()]
        )
    assert names(default) == names(explicit)
    assert len(default) == 6


async def test_broken_logging_never_breaks_the_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A log destination that raises disables the logging observer, nothing more.

    Regression: reporting the failure went through the same broken logger,
    and its exception escaped from ``execute``.
    """

    def explode(logger: Any, method: str, event_dict: Any) -> Any:
        raise ValueError("I/O operation on closed file")

    recorder = Recorder()
    with structlog.testing.capture_logs(processors=[explode]):
        result = await PipelineExecutor(observers=[recorder]).execute(chain())
    assert result.success
    assert result.total_duration_ms == 2000.0
    assert len(recorder.record) == 6

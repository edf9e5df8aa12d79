"""The public testing kit: scripted stages, virtual-time runners, faults, assertions."""

from __future__ import annotations

import inspect
import random
import subprocess
import sys
from typing import Any

import pytest
import structlog
import trio
import trio.testing

from actors import (
    ExecutionPattern,
    LimitPaused,
    Observer,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineStatus,
    PipelineValidationError,
    RateLimit,
    RateLimited,
    RetryConfig,
    StageDefinition,
    StageFinished,
    StageRetrying,
    StageStarted,
    StageStatus,
)
from actors.testing import (
    Call,
    FakeLLM,
    Recorder,
    arun,
    assert_cancelled_promptly,
    assert_events,
    assert_timeline,
    blocks_sync,
    event,
    faults,
    hangs,
    per_item,
    raises,
    rate_limit,
    returns,
    returns_input,
    run,
    script,
    swallows_cancel,
    with_stages,
    yields,
)
from actors.testing.faults import InjectedInterrupt


async def _unused(value: Any, context: PipelineContext[Any]) -> Any:
    raise AssertionError("replaced in every test")


def summaries(retry: RetryConfig | None = None) -> PipelineDefinition:
    """The README's pipeline shape: fetch a list, summarise each page."""
    return PipelineDefinition(
        name="summaries",
        stages=[
            StageDefinition("fetch", _unused),
            StageDefinition(
                "summaries",
                _unused,
                inputs=["fetch"],
                pattern=ExecutionPattern.FAN_OUT,
                retry_config=retry or RetryConfig(max_attempts=2, initial_delay_ms=100),
            ),
        ],
    )


def test_script_per_item_and_the_exact_timeline() -> None:
    """Item 2 fails once and is retried 100 ms later; every call is recorded."""
    pipeline = with_stages(
        summaries(),
        fetch=script(returns([1, 2, 3], after=0.1)),
        summaries=per_item(
            {
                2: [raises(ValueError("boom"), after=0.2), returns("x", after=0.1)],
                "*": returns_input(after=0.3),
            }
        ),
    )
    done = run(pipeline)
    assert done.result.outputs == {"fetch": [1, 2, 3], "summaries": [1, 2, "x"]}
    assert_timeline(
        done,
        """
        0.00 fetch started
        0.1  fetch succeeded
        0.10 summaries started items=3
        0.10 summaries[0] started
        0.10 summaries[1] started
        0.10 summaries[2] started
        0.30 summaries[2] failed attempt=1 ValueError: boom
        0.40 summaries[2] started attempt=2
        0.40 summaries[1] succeeded
        0.40 summaries[0] succeeded
        0.50 summaries[2] succeeded
        0.50 summaries succeeded
        0.50 pipeline succeeded
        """,
    )
    assert done.calls == [
        Call("fetch", None, 1, None, 0.0, 0.1),
        Call("summaries", 0, 1, 1, 0.1, 0.4),
        Call("summaries", 1, 1, 2, 0.1, 0.4),
        Call("summaries", 2, 1, 3, 0.1, 0.3),
        Call("summaries", 2, 2, 3, 0.4, 0.5),
    ]
    assert [repr(c.outcome) for c in done.calls_of("summaries", 2)] == [
        "raises(ValueError('boom'), after=0.2)",
        "returns('x', after=0.1)",
    ]


def test_the_last_outcome_repeats() -> None:
    """A script shorter than the attempts repeats its last outcome."""
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "a",
                script(raises(OSError("down"), after=1)),
                retry_config=RetryConfig(max_attempts=3, initial_delay_ms=500),
            )
        ],
    )
    done = run(pipeline)
    assert_timeline(
        done,
        """
        0    a started
        1    a failed attempt=1 OSError: down
        1.5  a started attempt=2
        2.5  a failed attempt=2 OSError: down
        3.5  a started attempt=3
        4.5  a failed attempt=3 OSError: down
        4.5  pipeline failed
        """,
    )


def pages_and_work(
    pages: Any, retry: RetryConfig | None = None, *, limit: int = 2
) -> PipelineDefinition:
    """A scripted stream of pages feeding a FAN_OUT that works one second each."""
    return PipelineDefinition(
        name="stream",
        stages=[
            StageDefinition("pages", pages, retry_config=retry),
            StageDefinition(
                "work",
                script(returns_input(after=1)),
                inputs=["pages"],
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=limit,
            ),
        ],
    )


def test_yields_streams_into_a_fan_out_and_a_retry_skips_what_was_delivered() -> None:
    """Items come every 0.25 s; the retry replays from the start, the library skips 2."""
    pages = script(
        yields([1, 2], every=0.25, then=raises(ValueError("gone"), after=0.1)),
        yields([1, 2, 3], every=0.25),
    )
    assert inspect.isasyncgenfunction(pages)  # a real streaming stage
    done = run(pages_and_work(pages, RetryConfig(max_attempts=2, initial_delay_ms=500)))
    assert done.result.outputs == {"pages": [1, 2, 3], "work": [1, 2, 3]}
    assert_timeline(
        done,
        """
        0.00 pages started
        0.25 work started
        0.25 work[0] started
        0.50 work[1] started
        0.60 pages failed attempt=1 ValueError: gone
        1.10 pages started attempt=2
        1.25 work[0] succeeded
        1.50 work[1] succeeded
        1.85 pages succeeded
        1.85 work[2] started
        2.85 work[2] succeeded
        2.85 work succeeded
        2.85 pipeline succeeded
        """,
    )
    assert done.calls == [
        Call("pages", None, 1, None, 0.0, 0.6),
        Call("work", 0, 1, 1, 0.25, 1.25),
        Call("work", 1, 1, 2, 0.5, 1.5),
        Call("pages", None, 2, None, 1.1, 1.85),
        Call("work", 2, 1, 3, 1.85, 2.85),
    ]
    assert [repr(c.outcome) for c in done.calls_of("pages")] == [
        "yields([1, 2], every=0.25, then=raises(ValueError('gone'), after=0.1))",
        "yields([1, 2, 3], every=0.25)",
    ]


async def test_yields_meets_backpressure_and_is_cancelled_at_a_hang(
    autojump_clock: trio.abc.Clock,
) -> None:
    """One slot downstream: each item waits for it; a hanging stream is cancelled."""
    pages = script(yields([1, 2, 3], every=0.25, then=hangs()))
    done = await arun(pages_and_work(pages, limit=1), faults=[faults.cancel_at(5)])
    assert trio.current_time() == 5
    # Item 2 is ready at 0.5 and taken at 1.25; item 3 at 1.5, taken at 2.25.
    assert [(c.stage, c.item, c.started, c.ended, c.cancelled) for c in done.calls] == [
        ("pages", None, 0.0, 5.0, True),
        ("work", 0, 0.25, 1.25, False),
        ("work", 1, 1.25, 2.25, False),
        ("work", 2, 2.25, 3.25, False),
    ]
    profile = done.result.stage_results["pages"].profile
    assert profile is not None
    assert profile.blocked_ms == 1500
    assert done.result.status is PipelineStatus.CANCELLED


def test_yields_is_a_stream_of_its_own() -> None:
    """yields() does not mix with other outcomes, and ends only by raising or hanging."""
    with pytest.raises(TypeError, match=r"^a script is a stream \(only yields"):
        script(yields([1]), returns(1))  # type: ignore[call-overload]  # refused
    with pytest.raises(
        TypeError, match=r"^yields\(then=\.\.\.\) takes raises\(\.\.\.\) or hangs\(\)"
    ):
        yields([1], then=returns(2))


def test_a_timeline_mismatch_shows_a_diff() -> None:
    """The assertion names both timelines; subsequence mode skips lines."""
    pipeline = PipelineDefinition(
        name="p", stages=[StageDefinition("a", script(returns(1, after=0.25)))]
    )
    done = run(pipeline)
    with pytest.raises(
        AssertionError, match=r"(?s)timeline differs.*\n\+0\.00 a started\n"
    ):
        assert_timeline(done, "0.25 a succeeded")
    assert_timeline(done, "0.25 a succeeded", mode="subsequence")
    with pytest.raises(AssertionError, match="subsequence"):
        assert_timeline(done, "0.3 a succeeded", mode="subsequence")
    with pytest.raises(ValueError, match="starts with its time"):
        assert_timeline(done, "a succeeded")


def test_assert_events_exact_and_subsequence() -> None:
    """Patterns match by type and the fields given; order matters."""
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "a",
                script(raises(ValueError("x"), after=1), returns(2, after=1)),
                retry_config=RetryConfig(max_attempts=2, initial_delay_ms=250),
            )
        ],
    )
    done = run(pipeline)
    assert_events(
        done,
        [
            event(StageStarted, stage_id="a", attempt=1, at_ms=0.0),
            event(StageRetrying, attempt=1, delay_ms=250.0, at_ms=1000.0),
            event(StageFinished, status=StageStatus.SUCCEEDED, at_ms=2250.0),
        ],
        mode="subsequence",
    )
    from actors import PipelineFinished, PipelineStarted

    assert_events(
        done,
        [
            PipelineStarted,
            StageStarted,
            StageRetrying,
            StageStarted,
            StageFinished,
            PipelineFinished,
        ],
    )
    with pytest.raises(AssertionError, match=r"^event 1: expected StageRetrying\(\)"):
        assert_events(done, [PipelineStarted, StageRetrying, *[StageStarted] * 4])
    with pytest.raises(AssertionError, match=r"^no event matching StageFinished"):
        assert_events(
            done,
            [event(StageFinished, status=StageStatus.FAILED)],
            mode="subsequence",
        )


def test_with_stages_refuses_unknown_names_and_invalid_copies() -> None:
    """Unknown names are listed with the known ones; the copy is validated."""
    with pytest.raises(
        ValueError,
        match=r"^pipeline 'summaries' has no stage 'fetsh', 'x'; "
        r"known stages: 'fetch', 'summaries'$",
    ):
        with_stages(summaries(), fetsh=script(returns(1)), x=script(returns(1)))
    with pytest.raises(PipelineValidationError, match="stage 'fetch': stage must be"):
        with_stages(summaries(), fetch=42)  # type: ignore[arg-type]
    original = summaries()
    copy = with_stages(original, fetch=script(returns([])))
    assert original.stages[0].stage is _unused
    assert copy.stages[1] == original.stages[1]


def test_cancel_at_cancels_the_caller_and_stages_stop_promptly() -> None:
    """The caller's cancellation reaches a hanging stage at once."""
    pipeline = with_stages(
        summaries(), fetch=script(returns([1, 2], after=1)), summaries=script(hangs())
    )
    done = run(pipeline, faults=[faults.cancel_at(2.5)])
    assert done.result.status is PipelineStatus.CANCELLED
    assert done.cancelled_at == 2.5
    assert done.raised is None
    assert [(c.item, c.ended, c.cancelled) for c in done.calls_of("summaries")] == [
        (0, 2.5, True),
        (1, 2.5, True),
    ]
    assert_cancelled_promptly(done, "summaries")
    assert done.timeline[-2:] == ["2.50 summaries cancelled", "2.50 pipeline cancelled"]


def test_cancel_token_at_ends_the_run_cancelled() -> None:
    """The runner gives the context a token, and sets it; the caller's is untouched."""
    pipeline = with_stages(
        summaries(), fetch=script(hangs()), summaries=script(returns_input())
    )
    context: PipelineContext[None] = PipelineContext()
    done = run(pipeline, context=context, faults=[faults.cancel_token_at(3)])
    assert context.cancel_token is None
    assert done.result.status is PipelineStatus.CANCELLED
    assert done.result.stage_results["fetch"].error == "cancelled: cancel token set"
    assert_cancelled_promptly(done, "fetch")


def test_interrupt_at_raises_keyboard_interrupt_inside_the_stage() -> None:
    """KeyboardInterrupt replaces the attempt's Cancelled at the fault's time."""
    pipeline = with_stages(
        summaries(),
        fetch=script(returns([1], after=1)),
        summaries=script(returns_input(after=5)),
    )
    done = run(pipeline, faults=[faults.interrupt_at("summaries", 2)])
    assert isinstance(done.raised, InjectedInterrupt)
    assert done.cancelled_at == 2
    assert done.result.status is PipelineStatus.CANCELLED
    assert done.calls_of("summaries") == [
        Call("summaries", 0, 1, 1, 1.0, 2.0, None, True)
    ]
    assert done.timeline[-1] == "2.00 pipeline cancelled"


def test_a_swallowed_cancel_fails_assert_cancelled_promptly() -> None:
    """A stage that swallows Cancelled is caught by the assertion, and reported."""
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("boom", script(raises(ValueError("boom"), after=1))),
            StageDefinition("bad", script(swallows_cancel(for_=0.5))),
        ],
    )
    done = run(pipeline)
    assert done.cancelled_at == 1.0
    with pytest.raises(AssertionError, match=r"^stage 'bad' broke the contract"):
        assert_cancelled_promptly(done, "bad")
    assert done.calls_of("bad") == [Call("bad", None, 1, None, 0.0, 1.5, None, False)]


def test_blocks_sync_holds_the_whole_event_loop() -> None:
    """While a stage blocks from 0.5 s to 3.5 s, a failure due at 1 s waits."""
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("boom", script(raises(ValueError("boom"), after=1))),
            StageDefinition("slow", script(blocks_sync(3, after=0.5))),
        ],
    )
    done = run(pipeline)
    assert done.calls_of("slow") == [Call("slow", None, 1, None, 0.0, 3.5)]
    assert done.result.status is PipelineStatus.FAILED
    assert_timeline(
        done,
        """
        0.00 boom started
        0.00 slow started
        3.50 slow succeeded
        3.50 boom failed attempt=1 ValueError: boom
        3.50 pipeline failed
        """,
    )


def test_a_hanging_run_fails_loudly_on_virtual_time() -> None:
    """give_up_after bounds a run that would never end."""
    pipeline = PipelineDefinition(
        name="p", stages=[StageDefinition("a", script(hangs()))]
    )
    with pytest.raises(
        AssertionError, match=r"^pipeline 'p' had not ended after 60 virtual"
    ):
        run(pipeline, give_up_after=60)


def test_a_scripted_stage_needs_a_recorder() -> None:
    """Outside the kit's runner, a scripted stage says what it needs."""
    pipeline = PipelineDefinition(
        name="p", stages=[StageDefinition("a", script(returns(1)))]
    )
    result = trio.run(PipelineExecutor(log_events=False).execute, pipeline)
    error = result.stage_results["a"].error
    assert error is not None
    assert error.startswith(
        "RuntimeError: a scripted stage runs under actors.testing.run()"
    )


async def test_arun_inside_trio_with_a_recorder_of_ones_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """arun uses the current clock; a user's own Recorder sees the same run."""
    mine = Recorder()
    pipeline = PipelineDefinition(
        name="p", stages=[StageDefinition("a", script(returns(1, after=2)))]
    )
    start = trio.current_time()
    done = await arun(pipeline, observers=[mine])
    assert trio.current_time() - start == 2
    assert (
        mine.timeline()
        == done.timeline
        == [
            "0.00 a started",
            "2.00 a succeeded",
            "2.00 pipeline succeeded",
        ]
    )


def _jittery(seed: int, error: Exception | None = None) -> list[float]:
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "a",
                script(raises(error or ValueError("x"))),
                retry_config=RetryConfig(
                    max_attempts=4, initial_delay_ms=100, jitter=0.5
                ),
            )
        ],
    )
    done = run(pipeline, seed=seed)
    return [e.delay_ms for e in done.events if isinstance(e, StageRetrying)]


def test_retry_jitter_is_drawn_from_the_seeded_rng() -> None:
    """The same seed gives the same delays: those of random.Random(seed)."""
    rng = random.Random(7)
    expected = [
        100 * rng.uniform(0.5, 1.5),
        200 * rng.uniform(0.5, 1.5),
        400 * rng.uniform(0.5, 1.5),
    ]
    assert _jittery(7) == expected
    assert _jittery(7) == expected
    assert _jittery(8) != expected
    # A RateLimited without a Retry-After backs off on the same draws.
    assert _jittery(7, RateLimited("429")) == expected


def test_fake_llm_rules_latency_rate_limits_and_metrics() -> None:
    """Two rate limits are the library's RateLimited: retried after retry_after_s."""
    llm = FakeLLM(latency=0.5).reply(r"^summarise (\w+)", lambda p: p.upper())
    llm.fail(rate_limit(times=2, retry_after_s=1))

    async def summarise(page: str, context: PipelineContext[Any]) -> str:
        completion = await context.provider.complete(f"summarise {page}")
        text: str = completion.text
        return text

    class Pauses(Observer):
        def __init__(self) -> None:
            self.pauses: list[tuple[float, str, float, float]] = []

        def limit_paused(self, event: LimitPaused) -> None:
            self.pauses.append(
                (event.at_ms, event.limit, event.pause_ms, event.until_ms)
            )

    pipeline = PipelineDefinition(
        name="llm",
        stages=[
            StageDefinition(
                "s",
                summarise,
                rate_limit="llm",
                # RateLimited is retried whatever the filters say.
                retry_config=RetryConfig(
                    max_attempts=3, initial_delay_ms=100, retry_on=[ConnectionError]
                ),
            )
        ],
    )
    pauses = Pauses()
    done = run(
        pipeline,
        "home page",
        context=PipelineContext(provider=llm),
        limits={"llm": RateLimit(requests_per_second=10)},
        observers=[pauses],
    )
    assert done.result.outputs == {"s": "SUMMARISE HOME PAGE"}
    assert done.result.metadata == {
        "llm_calls": 1,
        "llm_prompt_tokens": 3,
        "llm_completion_tokens": 3,
    }
    # max(backoff 100 / 200 ms, Retry-After 1 s) between attempts.
    assert_timeline(
        done,
        """
        0.00 s started
        0.00 s failed attempt=1 RateLimited: rate limited; retry after 1 s
        1.00 s started attempt=2
        1.00 s failed attempt=2 RateLimited: rate limited; retry after 1 s
        2.00 s started attempt=3
        2.50 s succeeded
        2.50 pipeline succeeded
        """,
    )
    assert [(c.at, c.reply, c.error) for c in llm.calls] == [
        (0.0, None, "RateLimited: rate limited; retry after 1 s"),
        (1.0, None, "RateLimited: rate limited; retry after 1 s"),
        (2.5, "SUMMARISE HOME PAGE", None),
    ]
    # Each one paused the stage's named limit for its Retry-After.
    assert pauses.pauses == [
        (0.0, "llm", 1000.0, 1000.0),
        (1000.0, "llm", 1000.0, 2000.0),
    ]
    with pytest.raises(LookupError, match=r"^FakeLLM has no rule for prompt 'hi'$"):
        trio.run(FakeLLM().complete, "hi")


def test_a_failing_attempt_hook_is_disabled_and_the_run_goes_on() -> None:
    """An attempt hook that raises is reported once and dropped."""

    class Broken:
        entered = 0

        def around_attempt(self, **info: Any) -> Any:
            Broken.entered += 1
            raise RuntimeError("broken hook")

    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "a",
                script(raises(ValueError("x")), returns(1)),
                retry_config=RetryConfig(max_attempts=2, initial_delay_ms=0),
            )
        ],
    )
    with structlog.testing.capture_logs() as logs:
        done = run(pipeline, observers=[Broken()])  # type: ignore[list-item]
    assert done.result.success
    assert Broken.entered == 1
    assert [(e["event"], e["hook"], e["stage_id"], e["error"]) for e in logs] == [
        ("observer_failed", "around_attempt", "a", "RuntimeError: broken hook")
    ]


def test_importing_the_kit_imports_neither_hypothesis_nor_opentelemetry() -> None:
    """Optional extras stay unimported until a module that needs them is."""
    code = (
        "import sys, actors, actors.testing, actors.abc\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('hypothesis', 'opentelemetry'))\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout == "[]\n"

"""The testing kit with durable runs: run(store=, resume=) and faults.crash_at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog
import trio

from actors import (
    ExecutionPattern,
    LoggingObserver,
    Observer,
    PipelineDefinition,
    PipelineStatus,
    StageDefinition,
    StageFinished,
    StageStarted,
    StageStatus,
)
from actors.checkpoint import FileStore, MemoryStore, Store
from actors.testing import (
    arun,
    assert_timeline,
    faults,
    per_item,
    returns,
    returns_input,
    run,
    script,
)
from actors.testing.faults import CrashAt


def chain() -> PipelineDefinition:
    """a -> b -> c -> d; c runs one second, long after b's entry is written."""
    return PipelineDefinition(
        name="chain",
        stages=[
            StageDefinition("a", script(returns(1, after=0.1))),
            StageDefinition("b", script(returns_input(after=0.2)), inputs=["a"]),
            StageDefinition("c", script(returns_input(after=1)), inputs=["b"]),
            StageDefinition("d", script(returns_input(after=0.5)), inputs=["c"]),
        ],
    )


def journaled(store: Store, run_id: str) -> list[str]:
    """The stages a run's journal holds, in the order written."""
    return [entry.parts.stage for entry in store.read_journal(run_id).entries]


def test_run_journals_into_the_store_and_a_resume_restores_every_stage() -> None:
    """A run given a store journals each stage; resuming it calls nothing."""
    store = MemoryStore()
    first = run(chain(), store=store)
    assert first.result.success
    assert store.get_run(first.run_id).status == "succeeded"
    assert journaled(store, first.run_id) == ["a", "b", "c", "d"]

    again = run(chain(), store=store, resume=first.run_id)
    assert again.result.outputs == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert again.calls == []
    assert_timeline(
        again,
        """
        0.00 a restored
        0.00 a succeeded
        0.00 b restored
        0.00 b succeeded
        0.00 c restored
        0.00 c succeeded
        0.00 d restored
        0.00 d succeeded
        0.00 pipeline succeeded
        """,
    )
    assert store.get_run(again.run_id).resumed_from == first.run_id


def test_a_crash_after_b_was_journaled_resumes_from_c() -> None:
    """Killed as c finishes: c's entry was not flushed yet, a and b's were."""
    store = MemoryStore()
    crashed = run(
        chain(), store=store, faults=[faults.crash_at("stage_finished", stage="c")]
    )
    assert crashed.crashed
    assert crashed.crashed_at == 1.3
    assert crashed.cancelled_at is None  # a crash is no cancellation
    assert crashed.outcome is None
    with pytest.raises(AssertionError, match=r"crashed at 1\.3 s \(crash_at\)"):
        crashed.result  # noqa: B018  # the property raises
    # Events end with the fatal one: no teardown, no pipeline_finished.
    assert crashed.timeline == [
        "0.00 a started",
        "0.10 a succeeded",
        "0.10 b started",
        "0.30 b succeeded",
        "0.30 c started",
        "1.30 c succeeded",
    ]
    assert [(c.stage, c.started, c.ended) for c in crashed.calls] == [
        ("a", 0.0, 0.1),
        ("b", 0.1, 0.3),
        ("c", 0.3, 1.3),
    ]
    # As a kill leaves it: still "running", c's success lost in the
    # recorder's 50 ms flush window.
    info = store.get_run(crashed.run_id)
    assert (info.status, info.finished_at) == ("running", None)
    assert journaled(store, crashed.run_id) == ["a", "b"]

    resumed = run(chain(), store=store, resume="latest")
    assert resumed.result.outputs == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert [(c.stage, c.input, c.started, c.ended) for c in resumed.calls] == [
        ("c", 1, 0.0, 1.0),
        ("d", 1, 1.0, 1.5),
    ]
    assert_timeline(
        resumed,
        """
        0.00 a restored
        0.00 a succeeded
        0.00 b restored
        0.00 b succeeded
        0.00 c started
        1.00 c succeeded
        1.00 d started
        1.50 d succeeded
        1.50 pipeline succeeded
        """,
    )
    info = store.get_run(resumed.run_id)
    assert (info.status, info.resumed_from) == ("succeeded", crashed.run_id)
    assert info.stats == {"restored": 2, "ran": 2}


@pytest.mark.parametrize(
    ("crash", "at", "kept", "rerun"),
    [
        # b's own success is still in the flush window: lost with it.
        (faults.crash_at("stage_finished", stage="b"), 0.3, ["a"], ["b", "c", "d"]),
        # In the middle of c (b flushed at 0.35).
        (faults.crash_at(0.5), 0.5, ["a", "b"], ["c", "d"]),
        (
            faults.crash_at(
                lambda e: isinstance(e, StageStarted) and e.stage_id == "d"
            ),
            1.3,
            ["a", "b"],
            ["c", "d"],
        ),
        (
            faults.crash_at("stage_finished", stage="c", status=StageStatus.SUCCEEDED),
            1.3,
            ["a", "b"],
            ["c", "d"],
        ),
        (
            faults.crash_at("pipeline_finished", status="succeeded"),
            1.8,
            list("abc"),
            ["d"],
        ),
    ],
    ids=["b-finished", "time", "predicate", "status", "pipeline-finished"],
)
def test_what_each_crash_leaves_journaled(
    crash: CrashAt, at: float, kept: list[str], rerun: list[str]
) -> None:
    """A crash keeps what was flushed 50 ms or more before it; the rest runs again."""
    store = MemoryStore()
    crashed = run(chain(), store=store, faults=[crash])
    assert crashed.fired == [(at, crash)]
    assert journaled(store, crashed.run_id) == kept
    assert store.get_run(crashed.run_id).status == "running"
    resumed = run(chain(), store=store, resume=crashed.run_id)
    assert resumed.result.success
    assert [c.stage for c in resumed.calls] == rerun


def test_a_call_running_at_the_crash_never_ends_and_observers_hear_nothing_more() -> (
    None
):
    """Killed mid-call: the call keeps ended=None; the tracer never sees the end."""

    class Heard(Observer):
        def __init__(self) -> None:
            self.heard: list[str] = []

        def stage_started(self, event: StageStarted) -> None:
            self.heard.append(f"{event.stage_id} started")

        def stage_finished(self, event: StageFinished) -> None:
            self.heard.append(f"{event.stage_id} {event.status.value}")

    heard = Heard()
    crashed = run(chain(), observers=[heard], faults=[faults.crash_at(0.5)])
    assert crashed.crashed_at == 0.5
    c = crashed.calls_of("c")
    assert [(x.started, x.ended, x.cancelled) for x in c] == [(0.3, None, False)]
    assert heard.heard == [
        "a started",
        "a succeeded",
        "b started",
        "b succeeded",
        "c started",
    ]
    assert crashed.timeline[-1] == "0.30 c started"


def fan_out() -> PipelineDefinition:
    """load -> work (5 items, 2 at a time, item i takes i + 1 seconds)."""
    return PipelineDefinition(
        name="items",
        stages=[
            StageDefinition("load", script(returns([0, 1, 2, 3, 4], after=0.5))),
            StageDefinition(
                "work",
                per_item({i: returns(i * 10, after=i + 1) for i in range(5)}),
                inputs=["load"],
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=2,
            ),
        ],
    )


async def test_a_fan_out_crashed_between_items_resumes_the_missing_ones(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Items journaled before the crash are restored; the others run again."""
    store = MemoryStore()
    crash = faults.crash_at("item_started", stage="work", item=4)
    crashed = await arun(fan_out(), store=store, faults=[crash])
    # work[0] 0.5-1.5, work[1] 0.5-2.5, work[2] 1.5-4.5, work[3] 2.5-6.5,
    # work[4] would start at 4.5.
    assert crashed.crashed_at == 4.5
    assert trio.current_time() == 4.5
    kept = store.read_journal(crashed.run_id).entries
    assert [json.loads(e.output) for e in kept] == [[0, 1, 2, 3, 4], 0, 10]
    assert [(c.item, c.ended) for c in crashed.calls_of("work")] == [
        (0, 1.5),
        (1, 2.5),
        (2, 4.5),  # ended in the very instant: its entry is not flushed
        (3, None),
    ]

    resumed = await arun(fan_out(), store=store, resume=crashed.run_id)
    assert resumed.result.outputs["work"] == [0, 10, 20, 30, 40]
    assert [(c.item, c.started, c.ended) for c in resumed.calls] == [
        (2, 0.0, 3.0),
        (3, 0.0, 4.0),
        (4, 3.0, 8.0),
    ]
    assert_timeline(
        resumed,
        """
        0.00 load restored
        0.00 load succeeded
        0.00 work started items=5
        0.00 work[0] succeeded
        0.00 work[1] succeeded
        0.00 work[2] started
        0.00 work[3] started
        3.00 work[2] succeeded
        3.00 work[4] started
        4.00 work[3] succeeded
        8.00 work[4] succeeded
        8.00 work restored items=2/5
        8.00 work succeeded
        8.00 pipeline succeeded
        """,
    )
    assert trio.current_time() == 4.5 + 8


def test_a_crash_leaves_a_file_store_as_a_kill_would(tmp_path: Path) -> None:
    """With a FileStore (written in threads) the crash leaves the same journal."""
    store = FileStore(tmp_path / "runs")
    crashed = run(
        chain(), store=store, faults=[faults.crash_at("stage_finished", stage="c")]
    )
    # Read back by a store of its own, as the next process would.
    reopened = FileStore(tmp_path / "runs")
    assert reopened.get_run(crashed.run_id).status == "running"
    assert journaled(reopened, crashed.run_id) == ["a", "b"]
    resumed = run(chain(), store=reopened, resume="latest")
    assert resumed.result.success
    assert [c.stage for c in resumed.calls] == ["c", "d"]
    assert resumed.result.total_duration_ms == 1500


def test_a_run_that_never_reaches_the_crash_is_not_crashed() -> None:
    """A crash whose event never comes changes nothing."""
    store = MemoryStore()
    done = run(chain(), store=store, faults=[faults.crash_at("stage_retrying")])
    assert not done.crashed
    assert done.crashed_at is None
    assert done.result.status is PipelineStatus.SUCCEEDED
    assert store.get_run(done.run_id).status == "succeeded"


def test_crash_at_refuses_what_it_cannot_match() -> None:
    """Unknown events and fields, and filters without an event, are refused."""
    with pytest.raises(
        ValueError, match=r"^crash_at: unknown event 'stage_finish'; known events: "
    ):
        faults.crash_at("stage_finish")
    with pytest.raises(
        ValueError,
        match=(
            r"^crash_at\('limit_waited'\): LimitWaited has no field 'status'; "
            r"fields: at_ms, item, item_index, limit, pipeline, requests, run_id, "
            r"stage, stage_id, tokens, waited_ms$"
        ),
    ):
        faults.crash_at("limit_waited", status="failed")
    with pytest.raises(
        ValueError, match=r"^crash_at: field filters go with an event name, not"
    ):
        faults.crash_at(1.0, stage="b")
    with pytest.raises(ValueError, match=r"^a run crashes once; got "):
        run(chain(), faults=[faults.crash_at(1), faults.crash_at(2)])
    with pytest.raises(ValueError, match=r"^resume='latest' needs a store"):
        run(chain(), resume="latest")


def test_a_predicate_that_raises_fails_the_test() -> None:
    """A broken predicate is not a silent 'never crashed'."""

    def broken(event: object) -> bool:
        raise KeyError("oops")

    with pytest.raises(
        AssertionError, match=r"^the predicate of crash_at\('broken'\) raised$"
    ) as caught:
        run(chain(), faults=[faults.crash_at(broken)])
    assert isinstance(caught.value.__cause__, KeyError)


def test_errors_before_the_run_are_raised_bare() -> None:
    """Validation and resume errors are raised as themselves, not in a group."""
    from actors import PipelineValidationError
    from actors.checkpoint import UnknownRunError

    with pytest.raises(UnknownRunError, match=r"^no run 'nope' in this store$"):
        run(chain(), store=MemoryStore(), resume="nope")
    broken = PipelineDefinition(
        name="broken",
        stages=[StageDefinition("a", script(returns(1)), inputs=["zz"])],
    )
    with pytest.raises(PipelineValidationError, match=r"unknown stage 'zz'"):
        run(broken)


def test_a_logging_observer_logs_nothing_after_the_crash() -> None:
    """Observers that pick their hooks (the logging one) are silenced too."""
    with structlog.testing.capture_logs() as logs:
        run(chain(), observers=[LoggingObserver()], faults=[faults.crash_at(0.5)])
    assert [(line["event"], line.get("stage_id")) for line in logs] == [
        ("pipeline_started", None),
        ("stage_started", "a"),
        ("stage_succeeded", "a"),
        ("stage_started", "b"),
        ("stage_succeeded", "b"),
        ("stage_started", "c"),
    ]

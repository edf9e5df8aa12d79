"""Durable runs end to end: journal, resume, restore, replay, crash."""

from __future__ import annotations

import collections
import os
import pickle
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydantic
import pytest
import trio
import trio.testing
from checkpoint_crash_pipeline import ITEMS, build

from actors import (
    ExecutionPattern,
    Observer,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    StageStatus,
)
from actors._checkpoint._keys import digest
from actors._events import (
    CheckpointCorrupt,
    CheckpointFailed,
    CheckpointSkipped,
    StageRestored,
)
from actors.checkpoint import (
    Entry,
    FileStore,
    MemoryStore,
    SQLiteStore,
    Store,
    UnknownRunError,
)

ROOT = Path(__file__).resolve().parent.parent
CRASHY = Path(__file__).resolve().parent / "checkpoint_crash_pipeline.py"


class Events(Observer):
    """Collects the checkpoint events of a run."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def stage_restored(self, event: StageRestored) -> None:
        self.seen.append(event)

    def checkpoint_skipped(self, event: CheckpointSkipped) -> None:
        self.seen.append(event)

    def checkpoint_corrupt(self, event: CheckpointCorrupt) -> None:
        self.seen.append(event)

    def checkpoint_failed(self, event: CheckpointFailed) -> None:
        self.seen.append(event)


def chain(calls: collections.Counter[str], fail: set[str]) -> PipelineDefinition:
    """a -> b -> c; a stage in *fail* raises; every body call is counted."""

    async def a(value: int, context: PipelineContext) -> int:
        calls["a"] += 1
        if "a" in fail:
            raise RuntimeError("a broke")
        return value + 1

    async def b(value: int, context: PipelineContext) -> int:
        calls["b"] += 1
        if "b" in fail:
            raise RuntimeError("b broke")
        return value * 10

    async def c(value: int, context: PipelineContext) -> str:
        calls["c"] += 1
        if "c" in fail:
            raise RuntimeError("c broke")
        return f"c{value}"

    return PipelineDefinition(
        name="chain",
        stages=[
            StageDefinition("a", a),
            StageDefinition("b", b, inputs=["a"]),
            StageDefinition("c", c, inputs=["b"]),
        ],
    )


async def test_resume_after_a_failure_runs_only_what_did_not_succeed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Stages that succeeded are restored, their bodies not called; the rest run."""
    calls: collections.Counter[str] = collections.Counter()
    executor = PipelineExecutor(store=MemoryStore())
    first = await executor.execute(chain(calls, fail={"c"}), 1)
    assert first.status == "failed"
    assert calls == {"a": 1, "b": 1, "c": 1}
    events = Events()
    again = await executor.execute(
        chain(calls, fail=set()), 1, resume=first.run_id, observers=[events]
    )
    assert again.success
    assert calls == {"a": 1, "b": 1, "c": 2}
    assert again.outputs == {"a": 2, "b": 20, "c": "c20"}
    assert {k: r.restored_from for k, r in again.stage_results.items()} == {
        "a": first.run_id,
        "b": first.run_id,
        "c": None,
    }
    assert all(r.status is StageStatus.SUCCEEDED for r in again.stage_results.values())
    assert [(e.stage_id, e.restored_from) for e in events.seen] == [
        ("a", first.run_id),
        ("b", first.run_id),
    ]
    # Resuming the resumed run restores everything: restored units were
    # journaled again under the new run, naming the run that produced them.
    third = await executor.execute(chain(calls, fail=set()), 1, resume="latest")
    assert calls == {"a": 1, "b": 1, "c": 2}
    assert third.outputs == again.outputs
    assert {k: r.restored_from for k, r in third.stage_results.items()} == {
        "a": first.run_id,
        "b": first.run_id,
        "c": again.run_id,
    }


async def test_without_resume_everything_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A store alone journals but restores nothing (cache is off by default)."""
    calls: collections.Counter[str] = collections.Counter()
    executor = PipelineExecutor(store=MemoryStore())
    await executor.execute(chain(calls, fail=set()), 1)
    await executor.execute(chain(calls, fail=set()), 1)
    assert calls == {"a": 2, "b": 2, "c": 2}


async def test_a_changed_input_reruns_everything_downstream_of_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Resuming with another initial input matches nothing."""
    calls: collections.Counter[str] = collections.Counter()
    executor = PipelineExecutor(store=MemoryStore())
    first = await executor.execute(chain(calls, fail=set()), 1)
    await executor.execute(chain(calls, fail=set()), 2, resume=first.run_id)
    assert calls == {"a": 2, "b": 2, "c": 2}


async def test_resume_without_a_store_is_a_value_error_before_any_stage() -> None:
    """resume= with no store anywhere raises ValueError and runs nothing."""
    calls: collections.Counter[str] = collections.Counter()
    with pytest.raises(ValueError, match=r"^resume='latest' needs a store: pass"):
        await PipelineExecutor().execute(chain(calls, set()), 1, resume="latest")
    assert calls == {}


@pytest.mark.parametrize("resume", ["latest", "0123abcd", "../../etc"])
async def test_unknown_run_is_an_error_before_any_stage(
    tmp_path: Path, resume: str
) -> None:
    """A run the store does not hold raises UnknownRunError and runs nothing."""
    calls: collections.Counter[str] = collections.Counter()
    executor = PipelineExecutor(store=FileStore(tmp_path))
    with pytest.raises(UnknownRunError):
        await executor.execute(chain(calls, set()), 1, resume=resume)
    assert calls == {}


async def test_execute_store_wins_and_checkpoint_dir_is_the_default(
    tmp_path: Path,
) -> None:
    """execute's store beats the executor's; checkpoint_dir gives a FileStore."""
    calls: collections.Counter[str] = collections.Counter()
    mine, theirs = MemoryStore(), MemoryStore()
    result = await PipelineExecutor(store=theirs).execute(
        chain(calls, set()), 1, store=mine
    )
    assert [r.run_id for r in mine.list_runs()] == [result.run_id]
    assert theirs.list_runs() == []
    context = PipelineContext(checkpoint_dir=tmp_path / "ckpt")
    result = await PipelineExecutor().execute(chain(calls, set()), 1, context)
    run = FileStore(tmp_path / "ckpt").get_run(result.run_id)
    assert (run.status, dict(run.stats)) == ("succeeded", {"restored": 0, "ran": 3})


def fan(calls: collections.Counter[Any], fail: set[int]) -> PipelineDefinition:
    """A 10-item fan-out; items in *fail* raise after the others finished."""

    async def item(value: int, context: PipelineContext) -> int:
        calls[value] += 1
        if value in fail:
            await trio.sleep(2)
            raise RuntimeError(f"item {value} broke")
        await trio.sleep(1)
        return value * value

    return PipelineDefinition(
        name="fan",
        stages=[StageDefinition("sq", item, pattern=ExecutionPattern.FAN_OUT)],
    )


async def test_fan_out_resume_reruns_only_the_failed_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Of ten items, the one that failed (item 7) is the only one to run again."""
    calls: collections.Counter[int] = collections.Counter()
    executor = PipelineExecutor(store=MemoryStore())
    items = list(range(10))
    first = await executor.execute(fan(calls, {7}), items)
    assert first.status == "failed"
    assert calls == dict.fromkeys(items, 1)
    events = Events()
    again = await executor.execute(
        fan(calls, set()), items, resume=first.run_id, observers=[events]
    )
    assert again.outputs == {"sq": [i * i for i in items]}
    assert calls == {**dict.fromkeys(items, 1), 7: 2}
    assert again.stage_results["sq"].restored_from is None  # item 7 ran
    assert [(e.stage_id, e.items, e.total) for e in events.seen] == [("sq", 9, 10)]
    # A reordered, longer list: the ten known items match by content.
    calls.clear()
    third = await executor.execute(
        fan(calls, set()), [10, *reversed(items)], resume="latest"
    )
    assert calls == {10: 1}
    assert third.outputs == {"sq": [100, *(i * i for i in reversed(items))]}


async def test_version_bump_reruns_the_stage_and_dependents_only_on_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A new version reruns its stage; its dependents rerun only if its output changed."""
    calls: collections.Counter[str] = collections.Counter()

    def pipeline(version: str) -> PipelineDefinition:
        async def a(value: int, context: PipelineContext[int]) -> int:
            calls["a"] += 1
            return value + context.deps

        async def b(value: int, context: PipelineContext) -> int:
            calls["b"] += 1
            return value * 2

        return PipelineDefinition(
            name="versions",
            stages=[
                StageDefinition("a", a, version=version),
                StageDefinition("b", b, inputs=["a"]),
            ],
        )

    executor = PipelineExecutor(store=MemoryStore())
    first = await executor.execute(pipeline("1"), 1, PipelineContext[int](deps=0))
    second = await executor.execute(
        pipeline("2"), 1, PipelineContext[int](deps=0), resume=first.run_id
    )
    assert calls == {"a": 2, "b": 1}  # same output from a: b restored
    assert second.outputs == first.outputs == {"a": 1, "b": 2}
    third = await executor.execute(
        pipeline("3"), 1, PipelineContext[int](deps=5), resume=second.run_id
    )
    assert calls == {"a": 3, "b": 2}  # a's output changed: b reruns
    assert third.outputs == {"a": 6, "b": 12}


async def test_state_replay_feeds_conditions_and_metrics(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A restored stage's set_state and metric calls are replayed for conditions."""
    calls: collections.Counter[str] = collections.Counter()

    def pipeline(fail: bool) -> PipelineDefinition:
        async def route(value: str, context: PipelineContext) -> str:
            calls["route"] += 1
            context.set_state("lang", value)
            context.increment_metric("routed")
            context.increment_metric("routed", 2)
            context.add_metric("chars", len(value))
            return value.upper()

        async def english(value: str, context: PipelineContext) -> str:
            calls["english"] += 1
            return f"en:{value}"

        async def french(value: str, context: PipelineContext) -> str:
            calls["french"] += 1
            return f"fr:{value}"

        async def last(value: dict[str, Any], context: PipelineContext) -> str:
            calls["last"] += 1
            if fail:
                raise RuntimeError("last broke")
            return str(value)

        return PipelineDefinition(
            name="replay",
            stages=[
                StageDefinition("route", route),
                StageDefinition(
                    "english",
                    english,
                    inputs=["route"],
                    condition=lambda c: c.get_state("lang") == "en",
                ),
                StageDefinition(
                    "french",
                    french,
                    inputs=["route"],
                    condition=lambda c: c.get_state("lang") == "fr",
                ),
                StageDefinition("last", last, inputs=["english", "french"]),
            ],
        )

    executor = PipelineExecutor(store=MemoryStore())
    first = await executor.execute(pipeline(fail=True), "en")
    context = PipelineContext()
    again = await executor.execute(
        pipeline(fail=False), "en", context, resume=first.run_id
    )
    assert calls == {"route": 1, "english": 1, "last": 2}
    assert again.success
    assert again.stage_results["french"].status is StageStatus.SKIPPED
    assert context.state == {"lang": "en"}
    assert again.metadata == first.metadata == {"routed": 3, "chars": 2}


class Report(pydantic.BaseModel):
    title: str
    scores: list[float]


class Opaque:
    def __init__(self, value: int) -> None:
        self.value = value


async def test_model_output_is_restored_equal_and_of_its_type(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """A pydantic output comes back from a FileStore as an equal model."""
    calls: collections.Counter[str] = collections.Counter()

    def pipeline() -> PipelineDefinition:
        async def report(value: str, context: PipelineContext) -> Report:
            calls["report"] += 1
            return Report(title=value, scores=[0.5, 1.0])

        async def use(value: Report, context: PipelineContext) -> str:
            calls["use"] += 1
            assert type(value) is Report
            return value.title

        return PipelineDefinition(
            name="model",
            stages=[
                StageDefinition("report", report),
                StageDefinition("use", use, inputs=["report"], checkpoint=False),
            ],
        )

    executor = PipelineExecutor(store=FileStore(tmp_path))
    first = await executor.execute(pipeline(), "t")
    again = await executor.execute(pipeline(), "t", resume="latest")
    assert calls == {"report": 1, "use": 2}  # checkpoint=False always runs
    restored = again.outputs["report"]
    assert type(restored) is Report
    assert restored == first.outputs["report"]


async def test_undeclared_custom_output_is_skipped_with_a_warning(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An output that cannot be encoded is used, reported, and rerun on resume."""
    calls: collections.Counter[str] = collections.Counter()

    async def make(value: int, context: PipelineContext):  # type: ignore[no-untyped-def]  # undeclared on purpose
        calls["make"] += 1
        return Opaque(value)

    pipeline = PipelineDefinition(name="opaque", stages=[StageDefinition("make", make)])
    executor = PipelineExecutor(store=MemoryStore())
    events = Events()
    first = await executor.execute(pipeline, 1, observers=[events])
    assert first.success
    assert [(type(e), e.stage_id) for e in events.seen] == [(CheckpointSkipped, "make")]
    assert events.seen[0].reason.startswith(
        "an output of type Opaque is not JSON-native and the stage declares no "
        "output type; annotate the stage's return type"
    )
    again = await executor.execute(pipeline, 1, resume=first.run_id)
    assert calls == {"make": 2}
    assert again.stage_results["make"].restored_from is None


async def test_checkpoint_skipped_is_logged_as_a_warning(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """checkpoint_skipped reaches the log at warning level."""

    async def make(value: int, context: PipelineContext):  # type: ignore[no-untyped-def]  # undeclared on purpose
        return Opaque(value)

    pipeline = PipelineDefinition(name="opaque", stages=[StageDefinition("make", make)])
    import structlog

    with structlog.testing.capture_logs() as logs:
        await PipelineExecutor(store=MemoryStore()).execute(pipeline, 1)
    skipped = [e for e in logs if e["event"] == "checkpoint_skipped"]
    assert [(e["log_level"], e["stage_id"]) for e in skipped] == [("warning", "make")]


async def test_cache_reuses_results_of_any_earlier_run(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """cache=True restores a matching success without resume=."""
    calls: collections.Counter[str] = collections.Counter()

    async def slow(value: int, context: PipelineContext) -> int:
        calls["slow"] += 1
        return value * 3

    pipeline = PipelineDefinition(
        name="cached", stages=[StageDefinition("slow", slow, cache=True)]
    )
    executor = PipelineExecutor(store=SQLiteStore(tmp_path / "s.db"))
    first = await executor.execute(pipeline, 2)
    second = await executor.execute(pipeline, 2)
    third = await executor.execute(pipeline, 3)
    assert calls == {"slow": 2}
    assert second.stage_results["slow"].restored_from == first.run_id
    assert (second.outputs, third.outputs) == ({"slow": 6}, {"slow": 9})


class BrokenStore(MemoryStore):
    """A store whose journal writes fail like a full disk."""

    def append(self, run_id: str, entries: Sequence[Entry]) -> None:
        raise OSError(28, "No space left on device")


async def test_failing_store_warns_and_the_run_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A store that fails never fails the run: checkpoint_failed says so."""
    calls: collections.Counter[str] = collections.Counter()
    events = Events()
    result = await PipelineExecutor(store=BrokenStore()).execute(
        chain(calls, set()), 1, observers=[events]
    )
    assert result.success
    assert [(type(e), e.operation, e.error) for e in events.seen] == [
        (CheckpointFailed, "append", "OSError: [Errno 28] No space left on device")
    ]


async def test_tampered_file_store_never_executes_and_never_crashes(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """Pickle payloads over a store's journal rerun the stages; over every file, UnknownRunError."""
    calls: collections.Counter[str] = collections.Counter()
    executor = PipelineExecutor(store=FileStore(tmp_path))
    first = await executor.execute(chain(calls, set()), 1)
    bomb = pickle.dumps(os.system)
    _overwrite(tmp_path / "journal", "*.jsonl", bomb)
    events = Events()
    again = await executor.execute(
        chain(calls, set()), 1, resume=first.run_id, observers=[events]
    )
    assert again.success
    assert calls == {"a": 2, "b": 2, "c": 2}
    assert [(type(e), e.stage_id) for e in events.seen] == [(CheckpointCorrupt, None)]
    _overwrite(tmp_path, "*", bomb)
    with pytest.raises(UnknownRunError):
        await executor.execute(chain(calls, set()), 1, resume="latest")
    assert calls == {"a": 2, "b": 2, "c": 2}


@pytest.mark.parametrize("kill_after", [1, 5, 11])
async def test_sigkill_mid_run_then_resume_latest_reruns_no_journaled_unit(
    tmp_path: Path, kill_after: int
) -> None:
    """A run killed with SIGKILL resumes: no journaled unit runs again; it completes."""
    store_dir, calls_file = tmp_path / "store", tmp_path / "calls.txt"
    process = await trio.lowlevel.open_process(
        [sys.executable, str(CRASHY), str(store_dir), str(calls_file)],
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{CRASHY.parent}"},
    )
    # A real process: wall-clock waiting is unavoidable.
    with trio.fail_after(30):
        while _lines(calls_file) < kill_after:
            assert process.poll() is None, "the pipeline ended before the kill"
            await trio.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    with trio.fail_after(30):
        assert await process.wait() == -signal.SIGKILL

    store = FileStore(store_dir)
    crashed = store.latest_run("crashy")
    assert crashed.status == "running"
    journaled = store.read_journal(crashed.run_id)
    assert journaled.corrupt == 0
    done = {(e.parts.stage, e.parts.item or e.parts.input) for e in journaled.entries}

    resumed_calls = tmp_path / "resumed.txt"
    result = await PipelineExecutor(store=store).execute(
        build(resumed_calls, delay_s=0), resume="latest"
    )
    assert result.success
    assert result.outputs["total"] == sum(i * i for i in ITEMS)
    assert result.metadata == {"worked": len(ITEMS)}
    ran = resumed_calls.read_text().splitlines() if resumed_calls.exists() else []
    for line in ran:
        stage, _, item = line.partition(":")
        if stage == "work":
            assert ("work", digest(int(item))) not in done, line
        else:
            assert stage not in {s for s, _ in done}, line
    # Everything not journaled ran exactly once.
    assert len(ran) == 1 + len(ITEMS) + 1 - len(done)


def _overwrite(root: Path, pattern: str, payload: bytes) -> None:
    for path in root.rglob(pattern):
        if path.is_file():
            path.write_bytes(payload)


def _lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("kind", ["memory", "file", "sqlite"])
async def test_virtual_time_does_not_move_while_the_store_works(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, kind: str
) -> None:
    """Under an autojump clock a durable run keeps the exact times of a plain one."""

    async def nap(value: int, context: PipelineContext) -> int:
        await trio.sleep(0.25)
        return value + 1

    pipeline = PipelineDefinition(
        name="timed",
        stages=[
            StageDefinition("a", nap),
            StageDefinition("b", nap, inputs=["a"]),
            StageDefinition(
                "c", nap, inputs=["b"], pattern=ExecutionPattern.SEQUENTIAL
            ),
        ],
        timeout_ms=800,
    )
    stores: dict[str, Store] = {
        "memory": MemoryStore(),
        "file": FileStore(tmp_path),
        "sqlite": SQLiteStore(tmp_path / "s.db"),
    }
    store = stores[kind]
    begin = trio.current_time()
    with trio.fail_after(10):  # a deadline the clock would jump to
        first = await PipelineExecutor(store=store).execute(pipeline, 0)
    assert first.success
    assert first.total_duration_ms == 750.0
    assert trio.current_time() - begin == 0.75
    again = await PipelineExecutor(store=store).execute(pipeline, 0, resume="latest")
    assert again.total_duration_ms == 0.0
    assert trio.current_time() - begin == 0.75

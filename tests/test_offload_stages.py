"""Stages declared with offload=: validation when the graph is built, and runs."""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
import trio.testing
from offload_work import (
    HoldsLock,
    async_stage,
    existing,
    needs_context,
    pid_then_sleep,
    read_pid,
    square,
    wait_until,
)

from actors import (
    ExecutionPattern,
    Observer,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    PipelineValidationError,
    RetryConfig,
    StageDefinition,
    StageStatus,
    StageTimeoutError,
    offload,
)
from actors._events import OffloadOrphaned


def one_stage(stage: Any, offloader: Any, **options: Any) -> PipelineDefinition:
    return PipelineDefinition(
        name="p", stages=[StageDefinition("work", stage, offload=offloader, **options)]
    )


class StageObject:
    """A stage object: its execute needs the context, so it cannot be offloaded."""

    name = "object"

    async def execute(self, value: Any, context: Any) -> Any:
        return value


def test_every_offload_problem_is_reported_at_build() -> None:
    """Each offloaded stage that cannot run is named, with the fix, all at once."""
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("ok", square, offload=offload.process()),
            StageDefinition("coro", async_stage, offload=offload.thread()),
            StageDefinition("ctx", needs_context, offload=offload.thread()),  # type: ignore[arg-type]  # wrong on purpose
            StageDefinition("lock", HoldsLock(), offload=offload.process()),
            StageDefinition("obj", StageObject(), offload=offload.thread()),
            StageDefinition("cls", StageObject, offload=offload.thread()),  # type: ignore[arg-type]  # wrong on purpose
            StageDefinition("str", square, offload="process"),  # type: ignore[arg-type]  # wrong on purpose
        ],
    )
    errors = pipeline.validate_pipeline()
    assert errors[:3] == [
        "stage 'coro': async_stage is async, but offload=thread() runs a plain "
        "sync function taking the input alone; make it a sync def, or drop "
        "offload= and await offload.to_thread(...) inside the async stage",
        "stage 'ctx': with offload=thread() the function is called with the input "
        "alone, but needs_context(x: 'int', context: 'object') -> 'int' cannot be; "
        "drop the context parameter (the context stays in the supervisor)",
        "stage 'lock': HoldsLock cannot be offloaded: process() sends it to worker "
        "processes with stdlib pickle, which refuses it (TypeError: cannot pickle "
        "'_thread.lock' object); define it at module level (no lambda, closure or "
        "nested function) with picklable defaults and bound objects, or use "
        "offload.thread() or offload.dask(client) (cloudpickle)",
    ]
    assert errors[3:] == [
        "stage 'obj': with offload= the stage must be a plain sync function taking "
        "the input alone, got StageObject",
        "stage 'cls': with offload= the stage must be a plain sync function taking "
        "the input alone, got the class StageObject",
        "stage 'str': offload= expects offload.thread(), offload.process() or "
        "offload.dask(client), got str",
    ]


async def test_execute_refuses_a_closure_for_process() -> None:
    """execute raises the build error for a closure offloaded to processes."""

    def closure(x: int) -> int:
        return x

    with pytest.raises(
        PipelineValidationError,
        match=re.escape("stage 'work': test_execute_refuses_a_closure_for_process"),
    ):
        await PipelineExecutor(log_events=False).execute(
            one_stage(closure, offload.process()), initial_input=1
        )


def test_a_sync_function_without_offload_is_still_refused() -> None:
    """Without offload=, a sync function is not a stage."""
    errors = one_stage(square, None).validate_pipeline()
    assert errors == [
        "stage 'work': stage must be an object with an async execute(input, "
        "context) method or an async function, got function"
    ]


def test_fan_out_with_offload_validates() -> None:
    """A FAN_OUT stage with max_concurrency and offload= is valid."""
    pipeline = one_stage(
        square,
        offload.thread(),
        pattern=ExecutionPattern.FAN_OUT,
        max_concurrency=2,
    )
    assert pipeline.validate_pipeline() == []


class Orphans(Observer):
    """Records every ``offload_orphaned`` event."""

    def __init__(self) -> None:
        self.events: list[OffloadOrphaned] = []

    def offload_orphaned(self, event: OffloadOrphaned) -> None:
        """Record it."""
        self.events.append(event)


async def run(
    pipeline: PipelineDefinition, initial_input: Any = None
) -> tuple[PipelineResult, list[tuple[str, int | None, str, str | None]]]:
    """Run *pipeline*; return its result and the orphans reported."""
    orphans = Orphans()
    result = await PipelineExecutor(log_events=False, observers=[orphans]).execute(
        pipeline, initial_input
    )
    return result, [
        (e.stage_id, e.item_index, e.backend, e.key) for e in orphans.events
    ]


def fails_once(event: threading.Event) -> Any:
    """An async stage that raises once *event* is set (in a thread)."""

    async def stage(value: Any, context: Any) -> Any:
        await trio.to_thread.run_sync(event.wait, 10)
        raise RuntimeError("sibling failed")

    return stage


def fails_when(condition: Any) -> Any:
    """An async stage that raises once ``condition()`` is true."""

    async def stage(value: Any, context: Any) -> Any:
        await trio.to_thread.run_sync(wait_until, condition)
        raise RuntimeError("sibling failed")

    return stage


# --- inline: the default row of the table, in virtual time -------------------


async def test_inline_timeout_and_cancel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Inline: a timeout is a StageTimeoutError at the deadline; nothing orphaned."""

    async def slow(value: Any, context: Any) -> Any:
        await trio.sleep(10)
        return value

    pipeline = PipelineDefinition(
        name="p",
        fail_fast=True,
        stages=[
            StageDefinition("timed", slow, timeout_ms=500),
            StageDefinition("cut", slow),
        ],
    )
    result, orphans = await run(pipeline)
    timed, cut = result.stage_results["timed"], result.stage_results["cut"]
    assert timed.status is StageStatus.FAILED
    assert isinstance(timed.exception, StageTimeoutError)
    assert timed.duration_ms == 500.0
    assert cut.status is StageStatus.CANCELLED
    assert result.total_duration_ms == 500.0
    assert orphans == []


# --- thread() -------------------------------------------------------------------


async def test_thread_run_cancel_abandons_running_and_never_starts_waiting() -> None:
    """A run cancel abandons the running item (reported) and the waiting one never runs."""
    started, release = threading.Event(), threading.Event()
    ran: list[int] = []

    def blocking(x: int) -> int:
        ran.append(x)
        started.set()
        release.wait(10)
        return x

    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "work",
                blocking,
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=2,
                offload=offload.thread(trio.CapacityLimiter(1)),
            ),
            StageDefinition("fail", fails_once(started)),
        ],
    )
    try:
        result, orphans = await run(pipeline, [0, 1])
    finally:
        release.set()
    assert result.stage_results["work"].status is StageStatus.CANCELLED
    assert result.stage_results["fail"].status is StageStatus.FAILED
    assert len(ran) == 1  # one item ran; the one waiting for the thread never did
    assert orphans == [("work", ran[0], "thread", None)]


async def test_thread_timeout_is_retried_and_the_abandoned_thread_reported() -> None:
    """A timed-out thread attempt is abandoned, reported, and the retry succeeds."""
    release = threading.Event()
    calls: list[int] = []

    def first_blocks(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            release.wait(10)
        return x * 10

    pipeline = one_stage(
        first_blocks,
        offload.thread(),
        timeout_ms=200,
        retry_config=RetryConfig(max_attempts=2, initial_delay_ms=0),
    )
    try:
        result, orphans = await run(pipeline, 4)
    finally:
        release.set()
    work = result.stage_results["work"]
    assert (work.status, work.output, work.attempts) == (StageStatus.SUCCEEDED, 40, 2)
    assert orphans == [("work", None, "thread", None)]


async def test_thread_timeout_fails_with_stage_timeout_error() -> None:
    """Without a retry, the timed-out thread attempt fails the stage as a timeout."""
    release = threading.Event()

    def blocking(x: int) -> int:
        release.wait(10)
        return x

    pipeline = one_stage(blocking, offload.thread(), timeout_ms=100)
    try:
        result, orphans = await run(pipeline)
    finally:
        release.set()
    work = result.stage_results["work"]
    assert work.status is StageStatus.FAILED
    assert isinstance(work.exception, StageTimeoutError)
    assert (
        work.error
        == "StageTimeoutError: stage 'work' timed out after 100 ms (attempt 1)"
    )
    assert orphans == [("work", None, "thread", None)]


async def test_two_blocking_items_overlap_with_max_concurrency_2() -> None:
    """Two blocking 0.2 s items in threads, two at a time, overlap."""
    spans: dict[int, tuple[float, float]] = {}

    def blocking(x: int) -> int:
        begin = time.perf_counter()
        time.sleep(0.2)
        spans[x] = (begin, time.perf_counter())
        return x

    pipeline = one_stage(
        blocking,
        offload.thread(),
        pattern=ExecutionPattern.FAN_OUT,
        max_concurrency=2,
    )
    result, _ = await run(pipeline, [1, 2])
    assert result.outputs == {"work": [1, 2]}
    (a0, a1), (b0, b1) = spans[1], spans[2]
    assert a0 < b1  # the two intervals intersect
    assert b0 < a1
    assert result.total_duration_ms < 390


# --- process() ------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Whether process *pid* exists (trio-parallel reaps the workers it kills)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_process_timeout_kills_a_30_s_item() -> None:
    """An item sleeping 30 s with timeout_ms=500 times out within seconds; worker gone."""
    await offload.to_process(square, 1)  # a warm worker: no spawn inside the timeout
    with tempfile.TemporaryDirectory() as folder:
        pid_file = Path(folder, "pid")
        pipeline = one_stage(
            partial(pid_then_sleep, seconds=30.0), offload.process(), timeout_ms=500
        )
        begin = time.perf_counter()
        result, orphans = await run(pipeline, str(pid_file))
        elapsed = time.perf_counter() - begin
        pid = read_pid(pid_file)
    work = result.stage_results["work"]
    assert work.status is StageStatus.FAILED
    assert isinstance(work.exception, StageTimeoutError)
    assert elapsed < 5.0
    assert not alive(pid)
    assert orphans == []


async def test_process_fail_fast_kills_running_workers_and_never_starts_waiting() -> (
    None
):
    """A fail-fast cancel kills both running workers; the item waiting never starts."""
    import trio_parallel  # type: ignore[import-untyped]  # no stubs

    trio_parallel.current_default_worker_limiter().total_tokens = 2
    with tempfile.TemporaryDirectory() as folder:
        paths = [str(Path(folder, f"pid{i}")) for i in range(3)]

        def two_started() -> bool:
            return len(existing(paths)) >= 2

        pipeline = PipelineDefinition(
            name="p",
            stages=[
                StageDefinition(
                    "work",
                    partial(pid_then_sleep, seconds=30.0),
                    pattern=ExecutionPattern.FAN_OUT,
                    max_concurrency=3,
                    offload=offload.process(),
                ),
                StageDefinition("fail", fails_when(two_started)),
            ],
        )
        begin = time.perf_counter()
        result, orphans = await run(pipeline, paths)
        elapsed = time.perf_counter() - begin
        await trio.sleep(0.2)
        written = existing(paths)
        pids = [read_pid(p) for p in written]
    assert result.stage_results["work"].status is StageStatus.CANCELLED
    assert len(written) == 2  # the third waited for a worker and never started
    assert [alive(pid) for pid in pids] == [False, False]
    assert elapsed < 15.0
    assert orphans == []


async def test_process_without_kill_times_out_when_the_item_ends() -> None:
    """kill_on_cancel=False: the timeout is reported when the item ends; worker kept."""
    await offload.to_process(square, 1)
    with tempfile.TemporaryDirectory() as folder:
        pid_file = Path(folder, "pid")
        pipeline = one_stage(
            partial(pid_then_sleep, seconds=0.6),
            offload.process(kill_on_cancel=False),
            timeout_ms=100,
        )
        result, orphans = await run(pipeline, str(pid_file))
        pid = read_pid(pid_file)
    work = result.stage_results["work"]
    assert work.status is StageStatus.FAILED
    assert isinstance(work.exception, StageTimeoutError)
    assert work.duration_ms >= 600  # not at the 100 ms deadline
    assert alive(pid)  # the worker finished the item and lives on
    assert orphans == []


async def test_orphan_is_logged_and_read_back_as_a_library_event() -> None:
    """The ``offload_orphaned`` log line carries its fields; log analysis knows it."""
    import json

    from actors.analysis import parse_log

    release = threading.Event()

    def blocking(x: int) -> int:
        release.wait(10)
        return x

    pipeline = one_stage(blocking, offload.thread(), timeout_ms=100)
    with structlog.testing.capture_logs() as logs:
        try:
            await PipelineExecutor().execute(pipeline, 1)
        finally:
            release.set()
    [orphan] = [log for log in logs if log["event"] == "offload_orphaned"]
    assert {k: v for k, v in orphan.items() if k not in ("run_id", "at_ms")} == {
        "event": "offload_orphaned",
        "log_level": "warning",
        "pipeline": "p",
        "stage_id": "work",
        "item_index": None,
        "backend": "thread",
        "key": None,
    }
    lines = [json.dumps(log, default=str) for log in logs]  # exc_info objects
    report = parse_log(lines)
    assert (report.events, report.other) == (len(lines), 0)

"""The Dask backend on a real two-worker LocalCluster on loopback (wall-clock).

The cluster is started once per session and closed after; when distributed is
missing these tests fail (CI installs it), they are never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
from offload_work import (
    HoldsLock,
    async_stage,
    boom,
    hold,
    mark,
    slow_first_time,
    slow_square,
    square,
    started_then_finished,
    wait_until,
)

from actors import (
    ExecutionPattern,
    Observer,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    RetryConfig,
    StageDefinition,
    StageStatus,
    offload,
)
from actors._events import OffloadOrphaned
from actors._offloader import offload_problem

if TYPE_CHECKING:
    from distributed import Client


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Client]:
    """A client of a 2-worker, 1-thread-each LocalCluster, closed after the session."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - CI installs the extra
        pytest.fail(
            f"the Dask tests need distributed (pip install actors[dask]): {exc}"
        )
    # distributed's constructors are untyped.
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


class Orphans:
    """Records what a backend reports as orphaned."""

    def __init__(self) -> None:
        self.reported: list[tuple[str, str | None]] = []

    def __call__(self, backend: str, key: str | None) -> None:
        self.reported.append((backend, key))


def fails_when(condition: Any) -> Any:
    """An async stage that raises once ``condition()`` is true."""

    async def stage(value: Any, context: Any) -> Any:
        await trio.to_thread.run_sync(wait_until, condition)
        raise RuntimeError("sibling failed")

    return stage


async def wait_for_file(path: Path) -> None:
    """Wait (up to 10 s) until a task has created *path*."""
    await trio.to_thread.run_sync(wait_until, path.exists)


async def test_results_in_order_and_errors(dask_client: Client) -> None:
    """Concurrent calls return their own results; a task's exception is raised."""
    backend, orphans = offload.dask(dask_client), Orphans()
    results: list[int | None] = [None] * 8

    async def one(i: int) -> None:
        results[i] = await backend.call(square, i, on_orphaned=orphans)

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(one, i)
    assert results == [i * i for i in range(8)]
    with pytest.raises(ValueError, match=r"^boom 5$"):
        await backend.call(boom, 5, on_orphaned=orphans)
    assert await offload.to_dask(dask_client, divmod, 9, 4) == (2, 1)
    assert orphans.reported == []


async def test_cancelled_pending_future_never_runs(
    dask_client: Client, tmp_path: Path
) -> None:
    """A task cancelled while queued behind busy workers never runs, and is reported."""
    backend, orphans = offload.dask(dask_client), Orphans()
    for i in range(2):
        (tmp_path / f"w{i}").mkdir()
    blockers = [
        dask_client.submit(
            started_then_finished, str(tmp_path / f"w{i}"), 1.0, pure=False
        )
        for i in range(2)
    ]
    marker = tmp_path / "marker"
    for i in range(2):
        await wait_for_file(tmp_path / f"w{i}" / "started")
    with trio.move_on_after(0.3) as scope:
        await backend.call(mark, str(marker), on_orphaned=orphans)
    assert scope.cancelled_caught
    assert len(orphans.reported) == 1
    backend_name, key = orphans.reported[0]
    assert backend_name == "dask"
    assert key is not None
    assert key.startswith("mark-")
    assert await trio.to_thread.run_sync(dask_client.gather, blockers) == ["done"] * 2
    # Both workers are free again: later work runs, the cancelled task does not.
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(partial(backend.call, hold, 0.05, on_orphaned=orphans))
    await trio.sleep(0.2)
    assert not marker.exists()
    assert len(orphans.reported) == 1


async def test_cancelled_running_task_is_reported_and_finishes(
    dask_client: Client, tmp_path: Path
) -> None:
    """A running task cancelled is reported with its key and finishes on its worker."""
    backend, orphans = offload.dask(dask_client), Orphans()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:

            async def cancel_once_started() -> None:
                await wait_for_file(tmp_path / "started")
                scope.cancel()

            nursery.start_soon(cancel_once_started)
            await backend.call(
                partial(started_then_finished, seconds=0.5),
                str(tmp_path),
                on_orphaned=orphans,
            )
    assert scope.cancelled_caught
    [(backend_name, key)] = orphans.reported
    assert backend_name == "dask"
    assert key is not None
    assert key.startswith("started_then_finished-")
    await wait_for_file(tmp_path / "finished")  # it ran on to its end


async def test_every_attempt_is_its_own_task(dask_client: Client) -> None:
    """Two identical calls are two tasks (pure=False): two distinct keys reported."""
    backend, orphans = offload.dask(dask_client), Orphans()
    for _ in range(2):
        with trio.CancelScope() as scope:
            scope.cancel()
            # Cancelled before submission: nothing reaches the cluster.
            await backend.call(hold, 0.01, on_orphaned=orphans)
    assert orphans.reported == []
    with trio.move_on_after(0.05):
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(
                    partial(backend.call, hold, 0.5, on_orphaned=orphans)
                )
    keys = [key for _, key in orphans.reported]
    assert len(keys) == 2
    assert len(set(keys)) == 2


def test_dask_validation(dask_client: Client) -> None:
    """Cloudpickle ships lambdas and closures, not a lock; async functions are refused."""
    backend = offload.dask(dask_client)
    assert offload_problem("frames", lambda x: x, backend) is None

    def closure(x: int) -> int:
        return x

    assert offload_problem("frames", closure, backend) is None
    problem = offload_problem("frames", HoldsLock(), backend)
    assert problem is not None
    assert problem.startswith(
        "stage 'frames': HoldsLock cannot be offloaded: dask() sends it to the "
        "cluster with cloudpickle, which refuses it (TypeError: "
    )
    assert problem.endswith(
        "); keep locks, open files, sockets and clients out of the function and "
        "what it closes over (create them inside the call)"
    )
    assert offload_problem("frames", async_stage, backend) == (
        "stage 'frames': async_stage is async, but offload=dask() runs a plain sync "
        "function taking the input alone; make it a sync def, or drop offload= and "
        "await offload.to_dask(...) inside the async stage"
    )


def test_dask_refuses_what_is_not_a_sync_client() -> None:
    """offload.dask() takes a synchronous distributed.Client."""
    not_a_client: Any = "tcp://127.0.0.1:8786"
    with pytest.raises(TypeError, match=r"^offload\.dask\(\) takes a synchronous"):
        offload.dask(not_a_client)


# --- stages declared with offload=dask(client) ----------------------------------


class OrphanEvents(Observer):
    """Records every ``offload_orphaned`` event."""

    def __init__(self) -> None:
        self.events: list[OffloadOrphaned] = []

    def offload_orphaned(self, event: OffloadOrphaned) -> None:
        """Record it."""
        self.events.append(event)


async def run(
    pipeline: PipelineDefinition, initial_input: Any = None
) -> tuple[PipelineResult, list[OffloadOrphaned]]:
    """Run *pipeline*; return its result and the orphans reported."""
    orphans = OrphanEvents()
    result = await PipelineExecutor(log_events=False, observers=[orphans]).execute(
        pipeline, initial_input
    )
    return result, orphans.events


class Counting:
    """An Offloader around another that counts the calls in flight."""

    def __init__(self, inner: offload.Offloader) -> None:
        self.inner = inner
        self.now = self.peak = self.calls = 0

    @property
    def backend(self) -> str:
        """The inner backend's name."""
        return self.inner.backend

    async def call(self, fn: Any, arg: Any, *, on_orphaned: Any) -> Any:
        """Count, then delegate."""
        self.now += 1
        self.calls += 1
        self.peak = max(self.peak, self.now)
        try:
            return await self.inner.call(fn, arg, on_orphaned=on_orphaned)
        finally:
            self.now -= 1

    def check(self, fn: Any) -> str | None:
        """Delegate."""
        return self.inner.check(fn)


async def test_fan_out_outputs_in_order_and_futures_bounded(
    dask_client: Client,
) -> None:
    """A fan-out returns outputs in order, never more futures than max_concurrency."""
    counting = Counting(offload.dask(dask_client))
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "work",
                slow_square,
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=3,
                offload=counting,
            )
        ],
    )
    result, orphans = await run(pipeline, list(range(9)))
    assert result.outputs == {"work": [i * i for i in range(9)]}
    assert (counting.calls, counting.peak) == (9, 3)
    assert orphans == []


async def test_fail_fast_cancels_queued_and_running_tasks(
    dask_client: Client, tmp_path: Path
) -> None:
    """Cancelled, running tasks finish on their workers; the queued one never runs.

    Every unfinished future is reported with its key.
    """
    folders = [tmp_path / f"item{i}" for i in range(3)]
    for folder in folders:
        folder.mkdir()

    def two_started() -> bool:
        return sum((f / "started").exists() for f in folders) >= 2

    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "work",
                partial(started_then_finished, seconds=1.0),
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=3,
                offload=offload.dask(dask_client),
            ),
            StageDefinition("fail", fails_when(two_started)),
        ],
    )
    result, orphans = await run(pipeline, [str(f) for f in folders])
    assert result.stage_results["work"].status is StageStatus.CANCELLED
    assert {e.item_index for e in orphans} == {0, 1, 2}
    assert {(e.stage_id, e.backend) for e in orphans} == {("work", "dask")}
    assert len({e.key for e in orphans}) == 3
    started = [i for i, f in enumerate(folders) if (f / "started").exists()]
    assert len(started) == 2
    for i in started:  # the running ones ran on to their end
        await wait_for_file(folders[i] / "finished")
    # Both workers are free again: later work runs, the cancelled one does not.
    assert await offload.to_dask(dask_client, hold, 0.2) == 0.2
    await trio.sleep(0.2)
    never = [i for i, f in enumerate(folders) if i not in started]
    assert [(folders[i] / "started").exists() for i in never] == [False]


async def test_timeout_reports_the_task_and_the_retry_is_a_new_task(
    dask_client: Client, tmp_path: Path
) -> None:
    """A timed-out attempt is reported with its key; the retry, a new task, succeeds."""
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "work",
                slow_first_time,
                timeout_ms=300,
                retry_config=RetryConfig(max_attempts=2, initial_delay_ms=0),
                offload=offload.dask(dask_client),
            )
        ],
    )
    result, orphans = await run(pipeline, str(tmp_path))
    work = result.stage_results["work"]
    assert (work.status, work.output, work.attempts) == (
        StageStatus.SUCCEEDED,
        "fast",
        2,
    )
    [orphan] = orphans
    assert (orphan.stage_id, orphan.item_index, orphan.backend) == (
        "work",
        None,
        "dask",
    )
    assert orphan.key is not None
    assert orphan.key.startswith("slow_first_time-")


async def test_timeout_without_retry_is_a_stage_timeout(
    dask_client: Client,
) -> None:
    """Without a retry, a timed-out Dask attempt fails the stage as a timeout."""
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "work", hold, timeout_ms=200, offload=offload.dask(dask_client)
            )
        ],
    )
    result, orphans = await run(pipeline, 0.6)
    work = result.stage_results["work"]
    assert work.status is StageStatus.FAILED
    assert work.error == (
        "StageTimeoutError: stage 'work' timed out after 200 ms (attempt 1)"
    )
    assert [(e.backend, e.item_index) for e in orphans] == [("dask", None)]


class Submissions(Counting):
    """A Counting offloader that also records when each call is submitted."""

    def __init__(self, inner: offload.Offloader) -> None:
        super().__init__(inner)
        self.at: list[float] = []

    async def call(self, fn: Any, arg: Any, *, on_orphaned: Any) -> Any:
        """Record the submission time (trio's clock), then delegate."""
        self.at.append(trio.current_time())
        return await super().call(fn, arg, on_orphaned=on_orphaned)


async def test_a_rate_limited_fan_out_never_submits_faster_than_its_meter(
    dask_client: Client,
) -> None:
    """The limit is taken before submission: the cluster never sees more than the quota."""
    from actors import RateLimit

    submissions = Submissions(offload.dask(dask_client))
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition(
                "work",
                square,
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=8,  # the limit binds, not the slots
                offload=submissions,
                rate_limit="api",
            )
        ],
    )
    executor = PipelineExecutor(
        log_events=False, limits={"api": RateLimit(requests_per_second=5)}
    )
    result = await executor.execute(pipeline, list(range(8)))
    assert result.outputs == {"work": [i * i for i in range(8)]}
    at = sorted(submissions.at)
    assert len(at) == 8
    # 5 requests/s, burst 1: the k-th submission no earlier than 0.2 s * k
    # after the first (20 ms for the first grant's own way to the cluster).
    for k, when in enumerate(at):
        assert when - at[0] >= 0.2 * k - 0.02, (k, [t - at[0] for t in at])

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
    square,
    started_then_finished,
    wait_until,
)

from actors import offload
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

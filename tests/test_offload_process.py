"""The process backend on real trio-parallel workers (wall-clock, kept short)."""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path

import pytest
import trio
from offload_work import boom, pid_then_sleep, square, wait_until

from actors import offload


def alive(pid: int) -> bool:
    """Whether process *pid* exists (trio-parallel reaps the workers it kills)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def read_pid(path: Path) -> int:
    """Wait (up to 10 s) for a worker to write its pid to *path*; blocks."""
    wait_until(lambda: path.exists() and path.read_text())
    return int(path.read_text())


def never(backend: str, key: str | None) -> None:
    raise AssertionError(f"nothing is orphaned by process(), got {backend} {key}")


async def test_process_returns_results_and_raises_errors() -> None:
    """Results and exceptions come back from the worker process."""
    backend = offload.process()
    assert await backend.call(square, 12, on_orphaned=never) == 144
    with pytest.raises(ValueError, match=r"^boom 3$"):
        await backend.call(boom, 3, on_orphaned=never)
    assert await offload.to_process(divmod, 7, 2) == (3, 1)


async def test_timeout_kills_a_30_s_item_within_seconds(tmp_path: Path) -> None:
    """An item sleeping 30 s under a 0.5 s timeout stops at once; its worker is gone."""
    await offload.to_process(square, 1)  # a warm worker: no spawn inside the timeout
    pid_file = tmp_path / "pid"
    begin = time.perf_counter()
    with pytest.raises(trio.TooSlowError), trio.fail_after(0.5):
        await offload.to_process(pid_then_sleep, str(pid_file), 30.0)
    elapsed = time.perf_counter() - begin
    pid = int(pid_file.read_text())
    assert elapsed < 3.0
    assert pid != os.getpid()
    assert not alive(pid)


async def test_cancel_kills_every_running_worker(tmp_path: Path) -> None:
    """Cancelling two running items kills both worker processes."""
    backend = offload.process()
    files = [tmp_path / "a", tmp_path / "b"]
    begin = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for path in files:
            nursery.start_soon(pid_then_sleep_call, backend, path)
        pids = [await trio.to_thread.run_sync(read_pid, path) for path in files]
        assert all(alive(pid) for pid in pids)
        nursery.cancel_scope.cancel()
    assert time.perf_counter() - begin < 10.0
    assert len(set(pids)) == 2
    assert [alive(pid) for pid in pids] == [False, False]


async def pid_then_sleep_call(backend: offload.Offloader, path: Path) -> None:
    await backend.call(
        partial(pid_then_sleep, seconds=30.0), str(path), on_orphaned=never
    )


async def test_cancelled_before_start_never_runs(tmp_path: Path) -> None:
    """A call cancelled before a worker takes it never runs."""
    marker = tmp_path / "pid"
    with trio.CancelScope() as scope:
        scope.cancel()
        await offload.process().call(
            partial(pid_then_sleep, seconds=0.0), str(marker), on_orphaned=never
        )
    assert scope.cancelled_caught
    await trio.sleep(0.2)
    assert not marker.exists()


async def test_without_kill_the_item_runs_on_and_its_result_is_discarded(
    tmp_path: Path,
) -> None:
    """kill_on_cancel=False: the timeout takes effect when the item ends; worker kept."""
    await offload.to_process(square, 1)
    pid_file = tmp_path / "pid"
    backend = offload.process(kill_on_cancel=False)
    begin = time.perf_counter()
    with trio.move_on_after(0.1) as scope:
        await backend.call(
            partial(pid_then_sleep, seconds=0.6), str(pid_file), on_orphaned=never
        )
    elapsed = time.perf_counter() - begin
    assert scope.cancelled_caught  # the result was discarded
    assert 0.6 <= elapsed < 3.0  # reported only once the item ended
    assert alive(int(pid_file.read_text()))  # the worker lives on, idle

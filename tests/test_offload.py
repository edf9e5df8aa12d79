"""Offload backends without a run: threads, validation, the public namespace."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from functools import partial
from typing import Any

import trio
from offload_work import HoldsLock, async_stage, needs_context, square, wait_until

from actors import offload
from actors._offload import reporting_orphans
from actors._offloader import offload_problem

Orphans = list[tuple[str, str | None]]


def recorder() -> tuple[Orphans, Any]:
    orphans: Orphans = []

    def on_orphaned(backend: str, key: str | None) -> None:
        orphans.append((backend, key))

    return orphans, on_orphaned


def test_import_actors_imports_no_optional_extra() -> None:
    """``import actors.offload`` imports neither trio-parallel nor Dask."""
    code = (
        "import sys, actors, actors.offload\n"
        "heavy = ('trio_parallel', 'distributed', 'dask', 'cloudpickle')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout == "[]\n"


def test_public_names() -> None:
    """The namespace exports the backends, the helpers and the protocol."""
    assert sorted(offload.__all__) == [
        "Offloader",
        "dask",
        "process",
        "thread",
        "to_dask",
        "to_process",
        "to_thread",
    ]
    assert isinstance(offload.thread(), offload.Offloader)
    assert isinstance(offload.process(), offload.Offloader)
    assert offload.to_thread.__module__ == "actors.offload"


async def test_thread_returns_result() -> None:
    """A thread call returns the function's result."""
    orphans, on_orphaned = recorder()
    assert await offload.thread().call(square, 7, on_orphaned=on_orphaned) == 49
    assert orphans == []


async def test_thread_cancel_abandons_a_running_call() -> None:
    """Cancelled mid-call, the thread is abandoned, reported, and runs to its end."""
    orphans, on_orphaned = recorder()
    started, release = threading.Event(), threading.Event()
    finished: list[int] = []

    def blocking(x: int) -> int:
        started.set()
        release.wait(10)
        finished.append(x)
        return x

    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:

            async def cancel_once_started() -> None:
                await trio.to_thread.run_sync(started.wait)
                scope.cancel()

            nursery.start_soon(cancel_once_started)
            await offload.thread().call(blocking, 1, on_orphaned=on_orphaned)
    assert scope.cancelled_caught
    assert orphans == [("thread", None)]
    assert finished == []  # still running, nobody waiting for it
    release.set()
    await trio.to_thread.run_sync(wait_until, lambda: finished == [1])
    assert finished == [1]


async def test_thread_cancelled_before_start_never_runs() -> None:
    """A call still waiting for its limiter when cancelled never runs its function."""
    orphans, on_orphaned = recorder()
    limiter = trio.CapacityLimiter(1)
    ran: list[int] = []
    backend = offload.thread(limiter)
    async with limiter:  # the only thread slot is taken
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def cancel_when_waiting() -> None:
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()

                nursery.start_soon(cancel_when_waiting)
                await backend.call(ran.append, 1, on_orphaned=on_orphaned)
    assert scope.cancelled_caught
    assert ran == []
    assert orphans == []


async def test_two_blocking_thread_calls_overlap() -> None:
    """Two blocking 0.2 s calls in threads run at the same time."""
    spans: dict[int, tuple[float, float]] = {}

    def blocking(x: int) -> int:
        begin = time.perf_counter()
        time.sleep(0.2)
        spans[x] = (begin, time.perf_counter())
        return x

    backend = offload.thread()
    _, on_orphaned = recorder()
    begin = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for x in (1, 2):
            nursery.start_soon(
                partial(backend.call, blocking, x, on_orphaned=on_orphaned)
            )
    elapsed = time.perf_counter() - begin
    (a0, a1), (b0, b1) = spans[1], spans[2]
    assert a0 < b1  # the two intervals intersect
    assert b0 < a1
    assert elapsed < 0.39  # not 0.4 s, one after the other


async def test_to_thread_reports_through_the_installed_reporter() -> None:
    """``to_thread`` inside an attempt reports orphans to the run's reporter."""
    orphans, on_orphaned = recorder()
    started, release = threading.Event(), threading.Event()

    def blocking(a: int, b: int) -> int:
        started.set()
        release.wait(10)
        return a + b

    with trio.CancelScope() as scope, reporting_orphans(on_orphaned):
        async with trio.open_nursery() as nursery:

            async def cancel_once_started() -> None:
                await trio.to_thread.run_sync(started.wait)
                scope.cancel()

            nursery.start_soon(cancel_once_started)
            await offload.to_thread(blocking, 1, 2)
    release.set()
    assert orphans == [("thread", None)]
    assert await offload.to_thread(square, 3) == 9


def test_validation_refuses_async_functions() -> None:
    """An async function with offload= is refused, naming the stage and the fix."""
    for backend in (offload.thread(), offload.process()):
        name = backend.backend
        assert offload_problem("analyse", async_stage, backend) == (
            f"stage 'analyse': async_stage is async, but offload={name}() runs a "
            "plain sync function taking the input alone; make it a sync def, or "
            f"drop offload= and await offload.to_{name}(...) inside the async stage"
        )


def test_validation_refuses_a_function_taking_the_context() -> None:
    """An offloaded function is called with the input alone."""
    assert offload_problem("analyse", needs_context, offload.thread()) == (
        "stage 'analyse': with offload=thread() the function is called with the "
        "input alone, but needs_context(x: 'int', context: 'object') -> 'int' "
        "cannot be; drop the context parameter (the context stays in the supervisor)"
    )


def test_validation_of_what_stdlib_pickle_refuses() -> None:
    """process() refuses lambdas, closures and locks; thread() takes them all."""
    process, thread = offload.process(), offload.thread()

    def closure(x: int) -> int:
        return x

    here = "test_validation_of_what_stdlib_pickle_refuses.<locals>"
    refused: dict[str, Any] = {
        f"{here}.<lambda>": lambda x: x,
        f"{here}.closure": closure,
        "HoldsLock": HoldsLock(),
    }
    for name, fn in refused.items():
        assert offload_problem("frames", fn, thread) is None
        problem = offload_problem("frames", fn, process)
        assert problem is not None
        assert problem.startswith(
            f"stage 'frames': {name} cannot be offloaded: process() sends it to "
            "worker processes with stdlib pickle, which refuses it ("
        )
        assert problem.endswith(
            "); define it at module level (no lambda, closure or nested function) "
            "with picklable defaults and bound objects, or use offload.thread() or "
            "offload.dask(client) (cloudpickle)"
        )
    assert offload_problem("frames", square, process) is None


def test_validation_refuses_what_is_not_an_offloader() -> None:
    """offload= must be one of the backends."""
    assert offload_problem("frames", square, "process") == (
        "stage 'frames': offload= expects offload.thread(), offload.process() or "
        "offload.dask(client), got str"
    )

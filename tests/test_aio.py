"""actors.aio: pipelines run from a real asyncio program through one trio guest run.

These are plain (sync) tests, each calling ``asyncio.run``: the loop is a
real one, so the few sleeps here are real and short. Trio code in a guest
run runs on the loop's own thread, which is why a stage may set an
``asyncio.Event`` directly.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import trio

import actors.aio
from actors import (
    Observer,
    PipelineContext,
    PipelineDefinition,
    PipelineFinished,
    PipelineStatus,
    PipelineValidationError,
    StageDefinition,
)
from actors._host_check import require_trio
from actors.aio import HostClosedError, trio_host

StageFn = Callable[[Any, PipelineContext[Any]], Awaitable[Any]]

# Bound by an asyncio caller, read by a stage: the run sees the caller's context.
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


def one_stage(name: str, fn: StageFn) -> PipelineDefinition:
    """A pipeline of one stage, ``name``, running *fn*."""
    return PipelineDefinition(name=name, stages=[StageDefinition(name, fn)])


def run_asyncio(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run *main* as an asyncio program, with asyncio's debug checks on."""
    asyncio.run(main(), debug=True)


async def double(input: int, context: PipelineContext[Any]) -> int:
    """Return twice the input, after one checkpoint."""
    await trio.lowlevel.checkpoint()
    return input * 2


class Finishes(Observer):
    """Records every run's end: (pipeline, status)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, PipelineStatus]] = []

    def pipeline_finished(self, event: PipelineFinished) -> None:
        """Note the run's end."""
        self.seen.append((event.pipeline, event.result.status))


def test_two_runs_at_once_while_an_asyncio_heartbeat_keeps_ticking() -> None:
    """Two runs from two asyncio tasks overlap, and the loop ticks all along."""
    ticks = 0
    arrived = {"left": trio.Event(), "right": trio.Event()}
    record: list[tuple[str, int]] = []

    def meet(name: str, other: str) -> StageFn:
        async def stage(input: int, context: PipelineContext[Any]) -> int:
            arrived[name].set()
            await arrived[other].wait()  # only returns if the runs overlap
            before = ticks
            await trio.sleep(0.05)
            record.append((name, ticks - before))
            return input + 1

        return stage

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.002)
            ticks += 1

    async def main() -> None:
        beat = asyncio.create_task(heartbeat())
        async with trio_host() as host:
            async with asyncio.timeout(5):  # a deadlock fails, not hangs
                left, right = await asyncio.gather(
                    host.execute(one_stage("left", meet("left", "right")), 1),
                    host.execute(one_stage("right", meet("right", "left")), 10),
                )
        beat.cancel()
        assert (left.status, left.outputs) == (PipelineStatus.SUCCEEDED, {"left": 2})
        assert (right.status, right.outputs) == (
            PipelineStatus.SUCCEEDED,
            {"right": 11},
        )

    run_asyncio(main)
    assert sorted(name for name, _ in record) == ["left", "right"]
    # 50 ms of trio sleep is about 25 heartbeats; a blocked loop would show 0.
    assert all(beats >= 3 for _, beats in record), record


def test_cancelling_the_awaiting_task_cancels_the_run_and_waits_for_it() -> None:
    """The task gets CancelledError only after the stage's finally has run."""
    record: list[str] = []

    async def main() -> None:
        started = asyncio.Event()

        async def stage(input: None, context: PipelineContext[Any]) -> None:
            record.append("started")
            started.set()
            try:
                await trio.sleep_forever()
            finally:
                with trio.move_on_after(1, shield=True):
                    await trio.sleep(0.02)  # unwinding takes a while
                    record.append("unwound")

        finishes = Finishes()
        async with trio_host(actors.PipelineExecutor(observers=[finishes])) as host:
            task = asyncio.create_task(host.execute(one_stage("slow", stage)))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert record == ["started", "unwound"]
            assert finishes.seen == [("slow", PipelineStatus.CANCELLED)]
            # The host goes on serving.
            again = await host.execute(one_stage("double", double), 4)
            assert again.outputs == {"double": 8}
        assert task.cancelled()

    run_asyncio(main)


def test_a_validation_error_surfaces_as_itself() -> None:
    """An invalid definition raises PipelineValidationError in the asyncio task."""
    bad = PipelineDefinition(
        name="bad", stages=[StageDefinition("a", double, inputs=["nope"])]
    )

    async def main() -> None:
        async with trio_host() as host:
            with pytest.raises(PipelineValidationError) as info:
                await host.execute(bad, 1)
            assert type(info.value) is PipelineValidationError
            assert info.value.errors == (
                "stage 'a' depends on unknown stage 'nope'; known stages: 'a'",
            )
            # The failure ended only that call, not the host.
            ok = await host.execute(one_stage("double", double), 1)
            assert ok.outputs == {"double": 2}

    run_asyncio(main)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_from_a_stage_surfaces_unchanged(
    interrupt: type[BaseException],
) -> None:
    """A stage's KeyboardInterrupt or SystemExit is raised bare in the caller."""

    async def stage(input: None, context: PipelineContext[Any]) -> None:
        await trio.lowlevel.checkpoint()
        raise interrupt("stop")

    async def main() -> None:
        async with trio_host() as host:
            with pytest.raises(interrupt) as info:
                await host.execute(one_stage("stops", stage))
            assert type(info.value) is interrupt
            assert info.value.args == ("stop",)

    run_asyncio(main)


def test_leaving_the_host_cancels_outstanding_runs_and_waits_for_them() -> None:
    """Leaving the block unwinds every run first; their callers get HostClosedError."""
    record: list[str] = []
    finishes = Finishes()

    async def main() -> None:
        started = {"a": asyncio.Event(), "b": asyncio.Event()}

        def forever(name: str) -> StageFn:
            async def stage(input: None, context: PipelineContext[Any]) -> None:
                started[name].set()
                try:
                    await trio.sleep_forever()
                finally:
                    with trio.move_on_after(1, shield=True):
                        await trio.sleep(0.02)
                        record.append(f"unwound {name}")

            return stage

        executor = actors.PipelineExecutor(observers=[finishes])
        async with trio_host(executor) as host:
            tasks = [
                asyncio.create_task(host.execute(one_stage(name, forever(name))))
                for name in ("a", "b")
            ]
            await started["a"].wait()
            await started["b"].wait()
        record.append("closed")
        errors = await asyncio.gather(*tasks, return_exceptions=True)
        assert [type(e) for e in errors] == [HostClosedError, HostClosedError]
        assert [str(e) for e in errors] == [
            f"the trio host closed while pipeline {name!r} was running; "
            "the run was cancelled"
            for name in ("a", "b")
        ]

    run_asyncio(main)
    assert sorted(record[:2]) == ["unwound a", "unwound b"]
    assert record[2:] == ["closed"]
    assert sorted(finishes.seen) == [
        ("a", PipelineStatus.CANCELLED),
        ("b", PipelineStatus.CANCELLED),
    ]


def test_the_host_refuses_new_runs_while_closing_and_once_closed() -> None:
    """execute raises HostClosedError (a RuntimeError) from the moment closing begins."""
    refusals: list[BaseException] = []

    async def main() -> None:
        unwinding = asyncio.Event()

        async def stage(input: None, context: PipelineContext[Any]) -> None:
            try:
                await trio.sleep_forever()
            finally:
                unwinding.set()
                with trio.move_on_after(1, shield=True):
                    await trio.sleep(0.05)  # time for the latecomer to try

        async def latecomer(host: actors.aio.TrioHost) -> None:
            await unwinding.wait()
            with pytest.raises(HostClosedError) as info:
                await host.execute(one_stage("late", double), 1)
            refusals.append(info.value)

        async with trio_host() as host:
            running = asyncio.create_task(host.execute(one_stage("long", stage)))
            late = asyncio.create_task(latecomer(host))
            await asyncio.sleep(0)  # let the long run start
        await late
        with pytest.raises(HostClosedError) as info:
            await host.execute(one_stage("after", double), 1)
        refusals.append(info.value)
        with pytest.raises(HostClosedError):
            await running

    run_asyncio(main)
    assert [str(e) for e in refusals] == [
        "the trio host is closing or closed and accepts no new runs; "
        f"pipeline {name!r} was not started"
        for name in ("late", "after")
    ]
    assert all(isinstance(e, RuntimeError) for e in refusals)


def test_a_second_host_on_the_same_thread_is_refused() -> None:
    """One host per thread at a time; after it closes, a new one may open."""

    async def main() -> None:
        async with trio_host() as first:
            with pytest.raises(
                RuntimeError,
                match=r"^a trio host is already open on this thread, and a thread "
                r"can host only one trio guest run; share the host opened first",
            ):
                async with trio_host():
                    pass  # pragma: no cover
            ok = await first.execute(one_stage("double", double), 2)
            assert ok.outputs == {"double": 4}
        async with trio_host() as second:
            ok = await second.execute(one_stage("double", double), 3)
            assert ok.outputs == {"double": 6}

    run_asyncio(main)


def test_hosts_on_two_threads_run_side_by_side() -> None:
    """The rule is per thread: another thread's loop opens its own host meanwhile."""
    outputs: list[Any] = []

    async def other_thread() -> None:
        async with trio_host() as host:
            outputs.append((await host.execute(one_stage("d", double), 5)).outputs)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        other_done = asyncio.Event()

        def in_thread() -> None:
            asyncio.run(other_thread())
            loop.call_soon_threadsafe(other_done.set)

        async with trio_host() as host:
            thread = threading.Thread(target=in_thread)
            thread.start()
            async with asyncio.timeout(5):
                await other_done.wait()
            thread.join()
            outputs.append((await host.execute(one_stage("d", double), 1)).outputs)

    run_asyncio(main)
    assert outputs == [{"d": 10}, {"d": 2}]


def test_execute_mirrors_the_executor() -> None:
    """Input, context, per-call observers and the caller's context variables reach the run."""
    executor_observer, call_observer = Finishes(), Finishes()

    async def stage(input: str, context: PipelineContext[str]) -> str:
        await trio.lowlevel.checkpoint()
        context.add_metric("seen", 1)
        return f"{input} {context.deps} {request_id.get()}"

    async def main() -> None:
        request_id.set("req-7")
        executor = actors.PipelineExecutor(observers=[executor_observer])
        async with trio_host(executor) as host:
            assert host.executor is executor
            result = await host.execute(
                one_stage("echo", stage),
                "hello",
                PipelineContext[str](deps="deps"),
                observers=[call_observer],
            )
        assert result.outputs == {"echo": "hello deps req-7"}
        assert result.metadata == {"seen": 1}

    run_asyncio(main)
    assert executor_observer.seen == [("echo", PipelineStatus.SUCCEEDED)]
    assert call_observer.seen == [("echo", PipelineStatus.SUCCEEDED)]


def test_cancelling_a_task_that_is_opening_a_host_leaves_none_open() -> None:
    """Cancelled while entering (or just after), the host still closes fully."""

    async def opener() -> None:
        async with trio_host():
            await asyncio.sleep(10)  # pragma: no cover

    async def main() -> None:
        task = asyncio.create_task(opener())
        await asyncio.sleep(0)  # the task starts entering
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with trio_host() as host:  # the thread is free again
            ok = await host.execute(one_stage("double", double), 1)
        assert ok.outputs == {"double": 2}

    run_asyncio(main)


def test_execute_before_entering_the_host_is_refused() -> None:
    """A host that was never entered says how to enter it."""

    async def main() -> None:
        with pytest.raises(
            RuntimeError,
            match=r"^enter the host first: async with actors\.aio\.trio_host\(\) as host$",
        ):
            await trio_host().execute(one_stage("double", double), 1)

    run_asyncio(main)


async def test_a_host_under_trio_points_to_the_executor() -> None:
    """Under trio there is no asyncio loop to host: the error says what to use."""
    with pytest.raises(
        RuntimeError,
        match=r"^trio_host\(\) needs a running asyncio loop; under trio, call "
        r"PipelineExecutor\.execute directly$",
    ):
        async with trio_host():
            pass  # pragma: no cover


# require_trio: the check PipelineExecutor.execute makes first.

ASYNCIO_MESSAGE = (
    r"^actors runs pipelines under trio, but this was called from asyncio; use "
    r"actors\.aio: async with actors\.aio\.trio_host\(\) as host: await "
    r"host\.execute\(pipeline, initial_input, context\)$"
)


def test_require_trio_under_asyncio_names_actors_aio() -> None:
    """Called from an asyncio task, it raises a RuntimeError naming actors.aio."""

    async def main() -> None:
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match=ASYNCIO_MESSAGE):
            require_trio()

    run_asyncio(main)


async def test_require_trio_under_trio_is_quiet() -> None:
    """Inside a trio run it returns None."""
    assert require_trio() is None  # type: ignore[func-returns-value]


def test_require_trio_outside_any_loop_is_quiet() -> None:
    """With no loop at all it returns None, leaving the error to trio."""
    assert require_trio() is None  # type: ignore[func-returns-value]


def test_require_trio_inside_a_host_is_quiet() -> None:
    """In a trio guest run on an asyncio loop, stages are under trio."""

    async def stage(input: None, context: PipelineContext[Any]) -> str:
        await trio.lowlevel.checkpoint()
        require_trio()
        return "trio"

    async def main() -> None:
        async with trio_host() as host:
            result = await host.execute(one_stage("check", stage))
        assert result.outputs == {"check": "trio"}

    run_asyncio(main)


def test_the_namespace_exports_documented_public_names() -> None:
    """actors.aio's __all__ is sorted, and each name is documented and public."""
    names = actors.aio.__all__
    assert names == ["HostClosedError", "TrioHost", "trio_host"]
    for name in names:
        obj = getattr(actors.aio, name)
        assert obj.__doc__, name
        assert not obj.__module__.startswith("actors._"), (name, obj.__module__)


def test_the_executor_called_from_asyncio_names_actors_aio() -> None:
    """Without a host, execute from asyncio raises a RuntimeError naming actors.aio."""

    async def main() -> None:
        with pytest.raises(RuntimeError, match=ASYNCIO_MESSAGE):
            await actors.PipelineExecutor().execute(one_stage("double", double), 1)

    run_asyncio(main)


def test_no_path_leaves_reference_cycles() -> None:
    """Success, failure, interrupt, cancellation and closing leave no cyclic garbage.

    A run's exception travels from trio frames to an asyncio frame; kept on
    the job it would hold both (the gc.DEBUG_SAVEALL check of test_gc.py).
    """
    import gc
    from collections import Counter

    async def forever(input: None, context: PipelineContext[Any]) -> None:
        await trio.sleep_forever()

    async def exits(input: None, context: PipelineContext[Any]) -> None:
        await trio.lowlevel.checkpoint()
        raise SystemExit(3)

    bad = PipelineDefinition(
        name="bad", stages=[StageDefinition("a", double, inputs=["nope"])]
    )
    garbage: dict[str, Counter[str]] = {}

    def collect(path: str) -> None:
        gc.collect()
        garbage[path] = Counter(type(obj).__name__ for obj in gc.garbage)
        gc.garbage.clear()

    async def main() -> None:
        executor = actors.PipelineExecutor(log_events=False)
        async with trio_host(executor) as host:
            await host.execute(one_stage("double", double), 1)  # warmed up
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            await host.execute(one_stage("double", double), 1)
            collect("success")
            with pytest.raises(PipelineValidationError):
                await host.execute(bad, 1)
            collect("validation error")
            with pytest.raises(SystemExit):
                await host.execute(one_stage("exits", exits))
            collect("interrupt")
            task = asyncio.create_task(host.execute(one_stage("forever", forever)))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            del task
            collect("cancelled")
            task = asyncio.create_task(host.execute(one_stage("forever", forever)))
            await asyncio.sleep(0.01)
        with pytest.raises(HostClosedError):
            await task
        del task
        collect("host closed")

    flags = gc.get_debug()
    try:
        run_asyncio(main)
    finally:
        gc.set_debug(flags)
        gc.enable()
    paths = ["success", "validation error", "interrupt", "cancelled", "host closed"]
    assert garbage == {path: Counter() for path in paths}

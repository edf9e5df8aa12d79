"""The thread backend: ``trio.to_thread.run_sync``, abandoned on cancel."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from .._offloader import OnOrphaned
from ._orphans import current_reporter

OutputT = TypeVar("OutputT")


class _AbandonedError(Exception):
    """The call was cancelled before its thread began the function."""


class _Start:
    """Decides, under a lock, whether the function starts or is abandoned first.

    A thread that trio starts just as the call is cancelled would otherwise
    run the function with nobody waiting: it either starts before the
    cancellation (and is then reported orphaned) or never starts.
    """

    __slots__ = ("_lock", "abandoned", "finished", "started")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = self.abandoned = self.finished = False

    def run(self, fn: Callable[..., OutputT], args: tuple[Any, ...]) -> OutputT:
        with self._lock:
            if self.abandoned:
                # Nobody waits for this outcome: trio discards it.
                raise _AbandonedError
            self.started = True
        try:
            return fn(*args)
        finally:
            with self._lock:
                self.finished = True

    def abandon(self) -> bool:
        """Mark the call abandoned; return whether the function is still running."""
        with self._lock:
            self.abandoned = True
            return self.started and not self.finished


async def run_in_thread(
    fn: Callable[..., OutputT],
    args: tuple[Any, ...],
    limiter: trio.CapacityLimiter | None,
    on_orphaned: OnOrphaned,
) -> OutputT:
    """Run ``fn(*args)`` in a worker thread; on cancel, abandon and report it."""
    start = _Start()
    try:
        return await trio.to_thread.run_sync(
            start.run, fn, args, abandon_on_cancel=True, limiter=limiter
        )
    except trio.Cancelled:
        if start.abandon():
            on_orphaned("thread", None)
        raise


class ThreadOffloader:
    """Runs a stage's sync function in a thread (see :func:`actors.offload.thread`)."""

    __slots__ = ("limiter",)

    def __init__(self, limiter: trio.CapacityLimiter | None = None) -> None:
        self.limiter = limiter

    @property
    def backend(self) -> str:
        """``"thread"``."""
        return "thread"

    async def call(
        self, fn: Callable[[Any], OutputT], arg: Any, *, on_orphaned: OnOrphaned
    ) -> OutputT:
        """Run ``fn(arg)`` in a thread; a checkpoint. See :class:`Offloader`."""
        return await run_in_thread(fn, (arg,), self.limiter, on_orphaned)

    def check(self, fn: Callable[..., Any]) -> str | None:
        """Any sync callable runs in a thread: always ``None``."""
        return None

    def __repr__(self) -> str:
        return f"offload.thread(limiter={self.limiter!r})"


async def to_thread(fn: Callable[..., OutputT], *args: Any) -> OutputT:
    """Run ``fn(*args)`` in a worker thread from an async stage; return its result.

    Always a checkpoint. Cancelled before the thread starts, *fn* never runs;
    cancelled while it runs, the thread is abandoned (it runs on and its
    result is discarded), reported as ``offload_orphaned`` inside a run, and
    ``trio.Cancelled`` propagates at once. *fn* may call
    ``trio.from_thread.check_cancelled()`` to stop cooperatively. Threads are
    bounded by trio's default thread limiter.
    """
    return await run_in_thread(fn, args, None, current_reporter())

"""Reporting work that a cancelled call left running (``offload_orphaned``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from .._offloader import Offloader, OnOrphaned

_reporter: ContextVar[OnOrphaned | None] = ContextVar(
    "actors_offload_orphan_reporter", default=None
)


@contextlib.contextmanager
def reporting_orphans(on_orphaned: OnOrphaned) -> Iterator[None]:
    """Let ``to_thread``/``to_process``/``to_dask`` in this task report orphans.

    The attempt loop enters it around a stage's call, so the helpers used
    inside an async stage report through the run's ``offload_orphaned`` event.
    """
    token = _reporter.set(on_orphaned)
    try:
        yield
    finally:
        _reporter.reset(token)


def _ignore_orphan(backend: str, key: str | None) -> None:
    """The reporter outside a run: nobody is listening."""


def current_reporter() -> OnOrphaned:
    """Return the orphan reporter installed for this task, or a no-op."""
    return _reporter.get() or _ignore_orphan


def set_orphan_reporter(on_orphaned: OnOrphaned) -> None:
    """Install *on_orphaned* for the current task (the attempt loop's hook).

    Each fan-out worker task runs its items one after another and installs
    the reporter of each item before running it, so it is never reset.
    """
    _reporter.set(on_orphaned)


async def call_offloaded(
    offloader: Offloader, fn: Callable[[Any], Any], value: Any, context: Any
) -> Any:
    """Run one attempt of an offloaded stage: ``fn(value)`` on *offloader*.

    Shaped like a stage call, ``(value, context)``; the context stays here.
    """
    return await offloader.call(fn, value, on_orphaned=current_reporter())

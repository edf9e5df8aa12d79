"""Reporting work that a cancelled call left running (``offload_orphaned``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from functools import partial
from typing import Any

from .._offloader import Offloader, OnOrphaned

_reporter: ContextVar[tuple[Callable[..., None], tuple[Any, ...]] | None] = ContextVar(
    "actors_offload_orphan_reporter", default=None
)
"""The reporter's function and leading arguments, bound only when asked for.

A tuple, not a partial: the attempt loop installs one per fan-out item, and
orphans are rare.
"""


@contextlib.contextmanager
def reporting_orphans(on_orphaned: OnOrphaned) -> Iterator[None]:
    """Let ``to_thread``/``to_process``/``to_dask`` in this task report orphans.

    The attempt loop enters it around a stage's call, so the helpers used
    inside an async stage report through the run's ``offload_orphaned`` event.
    """
    token = _reporter.set((on_orphaned, ()))
    try:
        yield
    finally:
        _reporter.reset(token)


def _ignore_orphan(backend: str, key: str | None) -> None:
    """The reporter outside a run: nobody is listening."""


def current_reporter() -> OnOrphaned:
    """Return the orphan reporter installed for this task, or a no-op."""
    reporter = _reporter.get()
    if reporter is None:
        return _ignore_orphan
    function, args = reporter
    return partial(function, *args) if args else function


def set_orphan_reporter(function: Callable[..., None], *args: Any) -> None:
    """Install ``partial(function, *args)`` for this task (the attempt loop's hook).

    Each fan-out worker task runs its items one after another and installs
    the reporter of each item before running it, so it is never reset.
    Bound only when a helper asks for it.
    """
    _reporter.set((function, args))


async def call_offloaded(
    offloader: Offloader, fn: Callable[[Any], Any], value: Any, context: Any
) -> Any:
    """Run one attempt of an offloaded stage: ``fn(value)`` on *offloader*.

    Shaped like a stage call, ``(value, context)``; the context stays here.
    """
    return await offloader.call(fn, value, on_orphaned=current_reporter())

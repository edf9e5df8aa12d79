"""The Offloader protocol and the validation of offloaded stages.

Declarations only, like ``_definition`` (which types ``offload=`` with it)
and ``_graph`` (which validates with it): no trio, no backend. The backends
live in ``_offload/``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias, TypeVar, runtime_checkable

InputT = TypeVar("InputT")
OutputT = TypeVar("OutputT")

OnOrphaned: TypeAlias = Callable[[str, "str | None"], None]
"""``on_orphaned(backend, key)``: called, synchronously, when a cancelled call
may still be running outside trio's reach (an abandoned thread, a Dask task
whose key is *key*). It must not raise."""


class OffloadedFunction(Protocol):
    """What a stage declared with ``offload=`` is: a sync ``fn(input)``."""

    def __call__(self, value: Any, /) -> Any:
        """Compute the stage's output from its input alone."""
        ...


@runtime_checkable
class Offloader(Protocol):
    """Where an offloaded stage's function runs: a thread, a process, a cluster.

    The supervisor keeps retries, timeouts, limits and the context; an
    offloader only runs one attempt, ``fn(arg)``, somewhere else.
    """

    @property
    def backend(self) -> str:
        """The backend's name in events and logs: ``"thread"``, ``"process"``..."""
        ...

    async def call(
        self, fn: Callable[[InputT], OutputT], arg: InputT, *, on_orphaned: OnOrphaned
    ) -> OutputT:
        """Run ``fn(arg)`` off the event loop and return its result (or raise).

        Always a checkpoint. When cancelled, the call must raise
        ``trio.Cancelled`` promptly; work that may go on running where the
        cancellation cannot reach it is reported through *on_orphaned*
        before the cancellation propagates. Work cancelled before it started
        must never start.
        """
        ...

    def check(self, fn: Callable[..., Any]) -> str | None:
        """Say why this backend cannot run *fn* (say, it cannot be pickled).

        Returns ``None`` when it can, else a short reason that completes the
        sentence "cannot be offloaded: ...". Never raises; never blocks.
        """
        ...


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def offload_problem(
    stage_id: str, fn: Callable[..., Any], offloader: Any
) -> str | None:
    """Return why stage *stage_id* cannot run *fn* with *offloader*, or ``None``.

    The graph builder calls it for every stage declared with ``offload=``:
    the function must be an :class:`Offloader`, the function a plain sync
    callable that takes the input alone, and the backend able to ship it
    (stdlib pickle for ``process()``, cloudpickle for ``dask()``). The
    message names the stage and the fix. Pure and synchronous.
    """
    if not isinstance(offloader, Offloader):
        return (
            f"stage {stage_id!r}: offload= expects offload.thread(), "
            f"offload.process() or offload.dask(client), got "
            f"{type(offloader).__name__}"
        )
    backend = offloader.backend
    if _is_async(fn):
        return (
            f"stage {stage_id!r}: {_name(fn)} is async, but offload={backend}() "
            "runs a plain sync function taking the input alone; make it a sync "
            "def, or drop offload= and await offload.to_"
            f"{backend}(...) inside the async stage"
        )
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        signature = None  # a builtin without a signature: assume it fits
    if signature is not None:
        try:
            signature.bind(None)
        except TypeError:
            return (
                f"stage {stage_id!r}: with offload={backend}() the function is "
                f"called with the input alone, but {_name(fn)}{signature} cannot "
                "be; drop the context parameter (the context stays in the "
                "supervisor)"
            )
    reason = offloader.check(fn)
    if reason is not None:
        return f"stage {stage_id!r}: {_name(fn)} cannot be offloaded: {reason}"
    return None

"""The process backend: trio-parallel worker processes, killed on cancel."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from .._offloader import OnOrphaned

OutputT = TypeVar("OutputT")


async def run_in_process(
    fn: Callable[..., OutputT], args: tuple[Any, ...], *, kill_on_cancel: bool
) -> OutputT:
    """Run ``fn(*args)`` in a trio-parallel worker process."""
    # An optional extra (untyped), imported only when used.
    import trio_parallel  # type: ignore[import-untyped] # noqa: PLC0415

    result: OutputT = await trio_parallel.run_sync(
        fn, *args, kill_on_cancel=kill_on_cancel
    )
    if not kill_on_cancel:
        # trio-parallel shields a call it may not kill and returns its result
        # even when cancelled meanwhile: discard that result and let the
        # cancellation (a timeout, a cancelled run) take effect now.
        await trio.lowlevel.checkpoint_if_cancelled()
    return result


class ProcessOffloader:
    """Runs a stage's sync function in a process; see :func:`actors.offload.process`."""

    __slots__ = ("kill_on_cancel",)

    def __init__(self, *, kill_on_cancel: bool = True) -> None:
        self.kill_on_cancel = kill_on_cancel

    @property
    def backend(self) -> str:
        """``"process"``."""
        return "process"

    async def call(
        self, fn: Callable[[Any], OutputT], arg: Any, *, on_orphaned: OnOrphaned
    ) -> OutputT:
        """Run ``fn(arg)`` in a worker process; a checkpoint. See :class:`Offloader`.

        Nothing is ever orphaned: a cancelled call either kills its worker or
        (``kill_on_cancel=False``) waits for it to finish.
        """
        return await run_in_process(fn, (arg,), kill_on_cancel=self.kill_on_cancel)

    def check(self, fn: Callable[..., Any]) -> str | None:
        """Say why stdlib pickle (trio-parallel's serializer) refuses *fn*."""
        return _pickle_problem(fn)

    def __repr__(self) -> str:
        return f"offload.process(kill_on_cancel={self.kill_on_cancel!r})"


def _pickle_problem(fn: Callable[..., Any]) -> str | None:
    try:
        pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # pickle raises many types (PicklingError, TypeError...)
        return (
            f"process() sends it to worker processes with stdlib pickle, which "
            f"refuses it ({type(exc).__name__}: {exc}); define it at module "
            "level (no lambda, closure or nested function) with picklable "
            "defaults and bound objects, or use offload.thread() or "
            "offload.dask(client) (cloudpickle)"
        )
    return None


async def to_process(fn: Callable[..., OutputT], *args: Any) -> OutputT:
    """Run ``fn(*args)`` in a worker process from an async stage; return its result.

    Always a checkpoint. *fn* and the arguments are sent with stdlib pickle.
    Cancelled before a worker takes it, *fn* never runs; cancelled while it
    runs, its worker process is killed (and replaced later) and
    ``trio.Cancelled`` propagates. Workers are bounded by trio-parallel's
    default limiter (one per CPU).
    """
    return await run_in_process(fn, args, kill_on_cancel=True)

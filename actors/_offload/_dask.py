"""The Dask backend: a user-owned ``distributed.Client``, driven from trio.

The synchronous client runs its own event loop in a thread. ``submit`` only
queues a message for that loop, and a future's done-callback wakes trio
through a ``TrioToken``: no thread waits on a future, no asyncio bridge.
Threads are used only for the client calls that block on the scheduler or a
worker (fetching a finished result, cancelling).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from .._offloader import OnOrphaned
from ._orphans import current_reporter

if TYPE_CHECKING:
    from distributed import Client

OutputT = TypeVar("OutputT")

CANCEL_GRACE_S = 5.0
"""How long a cancelled call waits for the scheduler to accept the cancel."""


async def run_on_dask(
    client: Client,
    fn: Callable[..., OutputT],
    args: tuple[Any, ...],
    on_orphaned: OnOrphaned,
) -> OutputT:
    """Submit ``fn(*args)`` as a new Dask task and wait for it from trio."""
    token = trio.lowlevel.current_trio_token()
    # Cancelled before submission: the cluster never hears of it.
    await trio.lowlevel.checkpoint_if_cancelled()
    done = trio.Event()

    def wake(_future: object) -> None:
        # Runs in distributed's callback thread.
        # The trio run may be gone already: then nobody is waiting.
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    # pure=False: every attempt is its own task (a fresh key), so a retry
    # never gets the failed attempt's result back; retries stay in actors.
    future = client.submit(fn, *args, pure=False)
    future.add_done_callback(wake)  # type: ignore[no-untyped-call] # distributed is untyped here
    try:
        await done.wait()
    except trio.Cancelled:
        # The client cannot tell a queued task from an executing one, so an
        # unfinished cancelled future is always reported. A queued task
        # never runs; an executing one finishes and its result is dropped.
        on_orphaned("dask", str(future.key))
        with trio.move_on_after(CANCEL_GRACE_S) as scope:
            scope.shield = True
            await trio.to_thread.run_sync(
                _cancel_quietly, future, abandon_on_cancel=True
            )
        raise
    # Finished (or failed): fetching the result is one transfer from a worker.
    result: OutputT = await trio.to_thread.run_sync(
        future.result, abandon_on_cancel=True
    )
    return result


def _cancel_quietly(future: Any) -> None:
    """Cancel *future*, best effort: a closed client must not replace Cancelled.

    The orphan is reported before this runs; if the cancel cannot reach the
    scheduler, the task may run on, as reported.
    """
    with contextlib.suppress(Exception):
        future.cancel()


class DaskOffloader:
    """Runs a stage's sync function on Dask; see :func:`actors.offload.dask`."""

    __slots__ = ("client",)

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def backend(self) -> str:
        """``"dask"``."""
        return "dask"

    async def call(
        self, fn: Callable[[Any], OutputT], arg: Any, *, on_orphaned: OnOrphaned
    ) -> OutputT:
        """Run ``fn(arg)`` as a Dask task; a checkpoint. See :class:`Offloader`."""
        return await run_on_dask(self.client, fn, (arg,), on_orphaned)

    def check(self, fn: Callable[..., Any]) -> str | None:
        """Say why cloudpickle (how Dask ships functions) refuses *fn*."""
        # An optional extra's dependency (untyped), imported only when used.
        import cloudpickle  # type: ignore[import-untyped] # noqa: PLC0415

        try:
            cloudpickle.dumps(fn)
        except Exception as exc:  # pickling raises many types
            return (
                f"dask() sends it to the cluster with cloudpickle, which refuses "
                f"it ({type(exc).__name__}: {exc}); keep locks, open files, "
                "sockets and clients out of the function and what it closes "
                "over (create them inside the call)"
            )
        return None

    def __repr__(self) -> str:
        return f"offload.dask({self.client!r})"


async def to_dask(client: Client, fn: Callable[..., OutputT], *args: Any) -> OutputT:
    """Run ``fn(*args)`` as one new Dask task from an async stage; return its result.

    Always a checkpoint. *client* is a synchronous ``distributed.Client`` the
    caller owns. Each call submits its own task (``pure=False``) and never
    uses Dask's retries. Cancelled, the future is cancelled: a task still
    queued never runs; one already executing finishes on its worker and its
    result is discarded; either way, inside a run, ``offload_orphaned`` is
    reported with the task key, and ``trio.Cancelled`` propagates (after at
    most a few seconds' wait for the scheduler to take the cancel).
    """
    return await run_on_dask(client, fn, args, current_reporter())

"""Run stage work off the event loop: in threads, worker processes, or on Dask.

``offload=`` on a stage takes one of :func:`thread`, :func:`process` or
:func:`dask`; the stage's function is then a plain sync callable taking the
input alone. Inside an async stage, :func:`to_thread`, :func:`to_process` and
:func:`to_dask` offload one call. Retries, timeouts and limits stay in the
supervisor. trio-parallel and distributed are imported only when used.
"""

from __future__ import annotations

import contextlib as _contextlib
from typing import TYPE_CHECKING

import trio

from ._offload import (
    DaskOffloader,
    ProcessOffloader,
    ThreadOffloader,
    to_dask,
    to_process,
    to_thread,
)
from ._offloader import Offloader

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "Offloader",
    "dask",
    "process",
    "thread",
    "to_dask",
    "to_process",
    "to_thread",
]


def thread(limiter: trio.CapacityLimiter | None = None) -> Offloader:
    """Run the stage's function in a worker thread (``trio.to_thread``).

    For blocking code that releases the GIL (I/O, C extensions). Threads are
    bounded by *limiter* (trio's default thread limiter if ``None``) and by
    the stage's ``max_concurrency``. Cancelled before its thread starts, an
    attempt never runs; cancelled while running (a timeout, a cancelled run),
    the thread is abandoned: it runs on, its result is discarded, and
    ``offload_orphaned`` is reported. The function may call
    ``trio.from_thread.check_cancelled()`` to stop cooperatively.
    """
    return ThreadOffloader(limiter)


def process(*, kill_on_cancel: bool = True) -> Offloader:
    """Run the stage's function in a worker process (trio-parallel).

    For pure-Python CPU-bound work. The function, input and output cross the
    process boundary with stdlib pickle (a module-level function; no lambdas
    or closures). Cancelled before a worker takes it, an attempt never runs;
    cancelled while running, its worker process is killed. With
    ``kill_on_cancel=False`` the attempt instead runs to its end, its result
    is discarded, and the timeout or cancellation takes effect only then.
    Needs the ``actors[process]`` extra.
    """
    return ProcessOffloader(kill_on_cancel=kill_on_cancel)


def dask(client: Client) -> Offloader:
    """Run the stage's function as Dask tasks through *client*.

    *client* is a synchronous ``distributed.Client`` that the caller creates
    and closes; actors never starts a cluster. Each attempt is a new task
    (``pure=False``); Dask's own retries are never used. The function, input
    and output cross by Dask's pickling (cloudpickle). Cancelled, the future
    is cancelled: a queued task never runs; one already executing finishes on
    its worker and its result is discarded. Every cancelled unfinished
    future is reported as ``offload_orphaned`` with its task key. Needs the
    ``actors[dask]`` extra.

    Raises:
        TypeError: *client* is not a synchronous ``distributed.Client``.
    """
    from distributed import Client  # noqa: PLC0415 - the caller already imported it

    given: object = client  # typed, but the caller may pass anything
    if not isinstance(given, Client) or given.asynchronous:
        raise TypeError(
            "offload.dask() takes a synchronous distributed.Client, got "
            f"{client!r}; create it with Client(address) (not asynchronous=True)"
        )
    return DaskOffloader(client)


for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("actors._"):
        with _contextlib.suppress(AttributeError, TypeError):  # aliases refuse it
            _obj.__module__ = __name__
del _name, _obj

"""Module-level functions that offload tests ship to threads, processes and Dask.

They live in an importable module, not in the test modules, so that stdlib
pickle (trio-parallel) and Dask workers find them by name.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path


def square(x: int) -> int:
    """Return ``x * x``."""
    return x * x


def identity(x: object) -> object:
    """Return *x* unchanged (for overhead measurements)."""
    return x


def boom(x: int) -> int:
    """Raise ``ValueError`` naming *x*."""
    raise ValueError(f"boom {x}")


def hold(seconds: float) -> float:
    """Block the calling thread for *seconds*; return them."""
    time.sleep(seconds)
    return seconds


def pid_then_sleep(path: str, seconds: float) -> int:
    """Write this process's pid to *path*, then block for *seconds*.

    Written to a side file and renamed: *path* never exists half written,
    even when the worker is killed in the middle.
    """
    side = Path(f"{path}.part")
    side.write_text(str(os.getpid()))
    side.replace(path)
    time.sleep(seconds)
    return os.getpid()


def mark(path: str) -> str:
    """Create the file *path* (a side effect a test can look for)."""
    Path(path).write_text("ran")
    return path


def started_then_finished(folder: str, seconds: float) -> str:
    """Write ``started``, block for *seconds*, then write ``finished`` in *folder*."""
    Path(folder, "started").write_text("")
    time.sleep(seconds)
    Path(folder, "finished").write_text("")
    return "done"


class HoldsLock:
    """A callable that holds a lock: no pickler can ship it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, x: int) -> int:
        with self.lock:
            return x


async def async_stage(x: int) -> int:
    """An async function: never offloadable with offload=."""
    return x


def needs_context(x: int, context: object) -> int:
    """Takes the context too: not callable with the input alone."""
    return x


def wait_until(condition: Callable[[], object], seconds: float = 10.0) -> None:
    """Block (in a test's helper thread) until *condition()* is true."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {seconds} s: {condition}")
        time.sleep(0.01)


def slow_first_time(folder: str) -> str:
    """Block 1 s the first time it is called for *folder*; return at once after."""
    first = Path(folder, "first")
    if not first.exists():
        first.write_text("")
        time.sleep(1.0)
        return "slow"
    return "fast"


def read_pid(path: str | Path) -> int:
    """Return the pid a worker wrote to *path*."""
    return int(Path(path).read_text())


def existing(paths: list[str]) -> list[str]:
    """Return those of *paths* that exist."""
    return [p for p in paths if Path(p).exists()]


def slow_square(x: int) -> int:
    """Return ``x * x`` after 0.1 s."""
    time.sleep(0.1)
    return x * x

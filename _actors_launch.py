"""The ``actors`` console script: the command line, guarded while it loads.

Importing :mod:`actors` (pydantic, structlog, trio) takes a moment, and the
command line's own Ctrl-C and SIGTERM handling exists only once it has
loaded. This module lives outside the package so that it is running before
that import starts: an interrupt during it ends the command the way one
while loading a target does, with one line and exit 130 (Ctrl-C) or 143
(SIGTERM), never a traceback.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

__all__ = ["main"]

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class _Terminated(KeyboardInterrupt):
    """SIGTERM arrived while the command line was loading."""


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def main() -> int:
    """Load the command line and run it; return its exit code."""
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        # Imported here, under the guard: the reason this module exists.
        from actors._cli import main as run_command_line  # noqa: PLC0415
    except KeyboardInterrupt as exc:
        print("aborted", file=sys.stderr, flush=True)
        return EXIT_TERMINATED if isinstance(exc, _Terminated) else EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    return run_command_line()

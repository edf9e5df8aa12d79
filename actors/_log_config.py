"""Ready-made structlog configurations, for applications and the command line.

The public names live in :mod:`actors.logging`, whose docstring says when
to use them.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import TextIO

import structlog

# A file configure_json opened from a path: ours to close, when the
# configuration is replaced or at exit.
_opened: TextIO | None = None


def configure_json(
    file: TextIO | str | os.PathLike[str] | None = None,
    *,
    level: int | str = "info",
) -> None:
    """Send every structlog event, the library's and yours, as JSON lines.

    One JSON object per line with ``event`` (the event name), ``level``,
    ``timestamp`` (ISO 8601, UTC) and the event's fields; structlog context
    variables are merged in, so your own events logged inside a stage carry
    its ``run_id``, ``pipeline`` and ``stage_id``. Each line is flushed as it
    is written, so the log of a run that crashes is complete up to the crash.

    Args:
        file: A text stream, or a path to append to (opened as UTF-8; it
            stays open until the next ``configure_*`` call or exit). The
            default is standard error.
        level: The lowest level written, as a name (``"debug"``, ``"info"``,
            ...) or a :mod:`logging` number. Fan-out items log at debug.
    """
    stream = _open(file)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        context_class=dict,
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def configure_console(
    stream: TextIO | None = None,
    *,
    level: int | str = "info",
    colors: bool | None = None,
) -> None:
    """Send every structlog event to a console, one readable line each.

    Args:
        stream: Where to write; standard error by default.
        level: The lowest level written, as a name or a :mod:`logging` number.
        colors: Colour the output; by default only if *stream* is a terminal.
    """
    out = _open(stream)
    if colors is None:
        colors = out.isatty()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S.%f", utc=False),
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.dev.ConsoleRenderer(colors=colors),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        context_class=dict,
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def _open(file: TextIO | str | os.PathLike[str] | None) -> TextIO:
    """Return the stream to write to, closing a file we opened before."""
    global _opened  # noqa: PLW0603  # one configuration per process, like structlog's
    previous, _opened = _opened, None
    if file is None:
        stream: TextIO = sys.stderr
    elif isinstance(file, str | os.PathLike):
        stream = open(file, "a", encoding="utf-8")  # noqa: SIM115  # closed by _close
        _opened = stream
    else:
        stream = file
    if previous is not None and previous is not stream:
        previous.close()
    return stream


@atexit.register
def _close() -> None:
    global _opened  # noqa: PLW0603  # see _open
    if _opened is not None:
        _opened.close()
        _opened = None

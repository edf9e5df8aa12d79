"""Where the library's events go: helpers for applications and the command line.

The library only ever *logs*; deciding where events end up belongs to the
application. With nothing configured, events go to the standard library
logger ``"actors"`` (so only warnings and errors appear, on standard error);
once the application configures structlog, they go through structlog. These
helpers are that decision made for you, in the two shapes people ask for:
JSON lines for machines (and for :mod:`actors.analysis`), and a readable
console format. Each replaces structlog's global configuration, so call one
once, early, from your application's entry point; never from library code.

Example::

    import actors.logging

    actors.logging.configure_json("runs.jsonl")  # then: actors logs summary runs.jsonl
"""

from __future__ import annotations

from ._log_config import configure_console, configure_json
from ._util import fix_module_names as _fix_module_names

__all__ = ["configure_console", "configure_json"]

_fix_module_names(globals(), __all__)

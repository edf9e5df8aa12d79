"""The ``actors`` command line: one module per command.

``_main`` builds the parser and maps errors to exit codes; ``_run``,
``_validate``, ``_graph`` and ``_logs`` are the commands; ``_target`` loads
what a TARGET names; ``_progress`` draws a run while it goes. The console
script points at :func:`actors._cli.main`.
"""

from __future__ import annotations

from ._main import main as main

__all__ = ["main"]

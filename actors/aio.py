"""Run pipelines from asyncio code (FastAPI, LangGraph, any asyncio program).

Open one host per asyncio loop and share it::

    async with actors.aio.trio_host() as host:
        result = await host.execute(pipeline, initial_input, context)

The host runs one trio guest run on the asyncio loop (trio's guest mode);
every pipeline runs inside it in its own cancel scope. See "Using actors from
asyncio" in the docs for the semantics of cancellation and shutdown.
"""

from __future__ import annotations

from ._aio import TrioHost, trio_host
from ._exceptions import HostClosedError
from ._util import fix_module_names as _fix_module_names

__all__ = ["HostClosedError", "TrioHost", "trio_host"]

_fix_module_names(globals(), __all__)

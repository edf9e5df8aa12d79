"""Name the way out when a trio-only entry point is called from asyncio."""

from __future__ import annotations

import sys

import trio


def require_trio() -> None:
    """Raise a RuntimeError naming :mod:`actors.aio` if called under asyncio, not trio.

    Returns quietly inside a trio run (guest runs included), and also when
    no asyncio loop is running either, leaving other callers to trio's own
    error. Cheap enough for every call of ``PipelineExecutor.execute``: one
    thread-local lookup on success. Never checkpoints.
    """
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        pass
    else:
        return
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return  # never imported, so no asyncio loop can be running
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "actors runs pipelines under trio, but this was called from asyncio; "
        "use actors.aio: async with actors.aio.trio_host() as host: "
        "await host.execute(pipeline, initial_input, context)"
    )

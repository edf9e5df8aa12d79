"""Quotas shared by every stage and run of an executor.

Declare them on the executor, take them in a stage::

    from actors import PipelineExecutor, RateLimit

    executor = PipelineExecutor(
        limits={"openai": RateLimit(requests_per_minute=500, tokens_per_minute=200_000)}
    )

    async def summarize(doc, ctx):
        async with ctx.limit("openai", tokens=estimate(doc)) as permit:
            reply = await client.chat(...)
            permit.settle(tokens=reply.usage.total_tokens)
        return reply.text

:class:`RedisBackend` shares a quota between processes; importing this
module never imports its optional dependencies (``actors[redis]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._limits import Permit, RateLimit, RateLimited, retry_after
from ._util import fix_module_names as _fix_module_names

if TYPE_CHECKING:
    from ._limits._redis import RedisBackend

__all__ = ["Permit", "RateLimit", "RateLimited", "RedisBackend", "retry_after"]


def __getattr__(name: str) -> Any:
    if name == "RedisBackend":
        from ._limits._redis import RedisBackend  # noqa: PLC0415  # only when used

        return RedisBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_fix_module_names(globals(), [name for name in __all__ if name != "RedisBackend"])

"""Quotas: GCRA meters, named limits with FIFO admission, Retry-After pauses.

Never imports the optional ``limits`` or ``redis`` packages: the shared
backend lives in ``_redis`` and is imported only when used.
"""

from __future__ import annotations

from ._meter import LimitBackend as LimitBackend
from ._model import RateLimit as RateLimit
from ._model import RateLimited as RateLimited
from ._model import retry_after as retry_after
from ._registry import Limits as Limits
from ._registry import PauseHook as PauseHook
from ._registry import Permit as Permit
from ._registry import WaitHook as WaitHook

"""A quota's declaration (RateLimit), the RateLimited signal, Retry-After parsing."""

from __future__ import annotations

import email.utils
import math
import time
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_FROZEN = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class RateLimit(BaseModel):
    """One named quota: request and token rates, and at most how many at once.

    Each rate given is one GCRA meter: a rate ``r`` per period ``P`` spaces
    grants ``T = P / r`` apart and lets ``burst`` of them through at once
    after an idle spell (``tau = burst * T``). The defaults never burst at
    start-up: one request, and one second's worth of tokens.

    Example::

        RateLimit(
            requests_per_minute=500, tokens_per_minute=200_000, max_concurrency=16
        )
    """

    model_config = _FROZEN

    requests_per_second: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Sustained requests per second."""
    requests_per_minute: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Sustained requests per minute (a provider's RPM)."""
    tokens_per_second: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Sustained tokens per second."""
    tokens_per_minute: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Sustained tokens per minute (a provider's TPM)."""
    max_concurrency: int | None = Field(default=None, gt=0)
    """Requests holding a permit at once (FIFO, like ``trio.CapacityLimiter``)."""
    burst: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Requests let through at once after an idle spell (default 1)."""
    token_burst: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Tokens let through at once after an idle spell.

    Default: one second's worth (``tokens_per_second``, or
    ``tokens_per_minute / 60``), never the whole minute. It is also the
    largest cost one request may have."""
    backend: Any = None
    """A shared backend (:class:`actors.limits.RedisBackend`) so several
    processes share the quota; ``None`` keeps it per process."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_bools(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected a number, got a bool")  # True is no rate
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        requests = (self.requests_per_second, self.requests_per_minute)
        tokens = (self.tokens_per_second, self.tokens_per_minute)
        has_requests = any(rate is not None for rate in requests)
        has_tokens = any(rate is not None for rate in tokens)
        if not (has_requests or has_tokens or self.max_concurrency is not None):
            raise ValueError(
                "a RateLimit needs at least one of requests_per_second, "
                "requests_per_minute, tokens_per_second, tokens_per_minute, "
                "max_concurrency"
            )
        if self.burst is not None:
            if not has_requests:
                raise ValueError(
                    "burst applies to a request rate: give requests_per_second "
                    "or requests_per_minute"
                )
            if self.burst < 1:
                raise ValueError(
                    f"burst must be at least 1 request, got {self.burst:g}"
                )
        if self.backend is not None and not callable(
            getattr(self.backend, "admit", None)
        ):
            raise ValueError(
                "backend must be a shared backend such as "
                f"actors.limits.RedisBackend(url), got {self.backend!r}"
            )
        if self.token_burst is not None and not has_tokens:
            raise ValueError(
                "token_burst applies to a token rate: give tokens_per_second "
                "or tokens_per_minute"
            )
        return self


class RateLimited(Exception):
    """Raised by stage code when a provider pushed back (HTTP 429 and the like).

    The executor pauses the stage's named limit for ``retry_after_s`` (every
    waiter of that limit included) and retries the attempt whatever the
    retry filters say, while attempts remain.

    Attributes:
        retry_after_s: How long the provider asked to wait, if it said.
    """

    retry_after_s: float | None

    def __init__(
        self, message: str = "", *, retry_after_s: float | None = None
    ) -> None:
        if retry_after_s is not None and not (
            math.isfinite(retry_after_s) and retry_after_s >= 0
        ):
            raise ValueError(
                f"retry_after_s must be a finite number >= 0, got {retry_after_s!r}"
            )
        super().__init__(message)
        self.retry_after_s = retry_after_s


def retry_after(exc: BaseException) -> float | None:
    """Return the seconds to wait that *exc*'s HTTP response asks for, if any.

    Reads ``exc.response.headers`` (httpx, requests and the OpenAI and
    Anthropic SDKs all carry one): ``retry-after-ms`` first, then
    ``retry-after`` as seconds or as an HTTP date (compared with the wall
    clock). Returns ``None`` when there is no such header or it cannot be
    read; never negative. A :class:`RateLimited` answers its own
    ``retry_after_s``. Never raises.
    """
    if isinstance(exc, RateLimited):
        return exc.retry_after_s
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        millis = _header(headers, "retry-after-ms")
        if millis is not None:
            value = float(millis) / 1000
            return value if math.isfinite(value) and value >= 0 else None
        text = _header(headers, "retry-after")
    except Exception:
        return None
    if text is None:
        return None
    return _seconds(text)


def _header(headers: Any, name: str) -> str | None:
    """Look *name* up case-insensitively in a mapping of headers."""
    found = headers.get(name)
    if found is None:
        for key, value in headers.items():
            if str(key).lower() == name:
                return str(value)
        return None
    return str(found)


def _seconds(text: str) -> float | None:
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) and value >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None  # an HTTP date is always GMT; a naive one is not one
    return max(0.0, when.timestamp() - time.time())

"""One provider quota shared by a fan-out: zero 429s with a limit, many without.

``FakeProvider`` stands in for an LLM API with two published limits, 60
requests and 6,000 tokens a minute (each a bucket that refills continuously
and holds 10 s worth). Past either, it answers 429 with a ``Retry-After``
header, as real providers do.

* Without a limit, 20 items at a time call it as fast as they can, and on a
  429 sleep the ``Retry-After`` and try again (what an SDK's own retries do):
  the herd meets the provider again and again.
* With ``RateLimit(requests_per_minute=60, tokens_per_minute=6000, burst=10,
  token_burst=1000)`` on the executor (the bursts match the provider's 10 s
  buckets), each item takes ``ctx.limit("llm", tokens=estimate)`` around its
  call, the estimate being an upper bound (prompt plus ``max_tokens``), and
  settles the real usage afterwards: the limit paces every call to what the
  provider accepts, so none is refused, and the run is no slower. Were one
  refused, raising ``RateLimited`` would pause the whole limit for the
  ``Retry-After``.

The provider "works" on trio's clock, so the example runs on a virtual clock
and a minute-long quota demo ends at once; run it with
``python examples/llm_quota.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio
import trio.testing

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    RetryConfig,
    StageDefinition,
)
from actors.limits import RateLimit, RateLimited, retry_after

RPM, TPM = 60, 6000
MAX_TOKENS = 40
"""The completion budget each call asks for."""


class TooManyRequests(Exception):
    """The provider's 429, shaped like an SDK's error: ``.response.headers``."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("429 Too Many Requests")
        self.response = _Response({"retry-after": f"{retry_after_s:g}"})


@dataclass
class _Response:
    headers: dict[str, str]


class _Bucket:
    """A bucket of *capacity* refilled at *rate* per second, on trio's clock."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate, self.capacity = rate, capacity
        self.level, self.at = capacity, trio.current_time()

    def refill(self) -> None:
        now = trio.current_time()
        self.level = min(self.capacity, self.level + (now - self.at) * self.rate)
        self.at = now

    def seconds_for(self, amount: float) -> float:
        return max(0.0, (amount - self.level) / self.rate)


class FakeProvider:
    """Answers a prompt after 0.5 s, or 429 when over its RPM or TPM."""

    def __init__(self) -> None:
        self.requests = _Bucket(RPM / 60, RPM / 6)
        self.tokens = _Bucket(TPM / 60, TPM / 6)
        self.refused = 0
        self.answered = 0

    async def complete(self, prompt: str, max_tokens: int) -> tuple[str, int]:
        """Return a completion and the tokens it used; raise TooManyRequests."""
        await trio.lowlevel.checkpoint()
        used = len(prompt) // 4 + max_tokens // 2  # it never writes the maximum
        for bucket, amount in ((self.requests, 1), (self.tokens, used)):
            bucket.refill()
            if bucket.level < amount:
                self.refused += 1
                raise TooManyRequests(max(1.0, round(bucket.seconds_for(amount))))
        self.requests.level -= 1
        self.tokens.level -= used
        await trio.sleep(0.5)
        self.answered += 1
        return prompt.upper()[:20], used


def estimate(prompt: str) -> int:
    """An upper bound of the tokens a call uses: the prompt, and all of max_tokens."""
    return len(prompt) // 4 + MAX_TOKENS


async def summarize_unlimited(doc: str, context: PipelineContext[Any]) -> str:
    """Call the provider, sleeping its Retry-After on every 429 (an SDK's way)."""
    provider: FakeProvider = context.provider
    while True:
        try:
            text, _ = await provider.complete(doc, MAX_TOKENS)
        except TooManyRequests as exc:
            await trio.sleep(retry_after(exc) or 1.0)
        else:
            return text


async def summarize(doc: str, context: PipelineContext[Any]) -> str:
    """Call the provider inside the shared limit, then settle the real usage."""
    provider: FakeProvider = context.provider
    async with context.limit("llm", tokens=estimate(doc)) as permit:
        try:
            text, used = await provider.complete(doc, MAX_TOKENS)
        except TooManyRequests as exc:
            # Pauses the whole limit, then the attempt is retried.
            raise RateLimited(str(exc), retry_after_s=retry_after(exc)) from exc
        permit.settle(tokens=used)
    return text


def pipeline(stage: Any) -> PipelineDefinition:
    """One FAN_OUT stage over the documents, 20 at a time."""
    return PipelineDefinition(
        name="llm-quota",
        stages=[
            StageDefinition(
                "summaries",
                stage,
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrency=20,
                retry_config=RetryConfig(max_attempts=5),
            )
        ],
    )


DOCUMENTS = [f"document {i}: " + "lorem ipsum " * (5 + i % 7) for i in range(40)]


async def run_once(limited: bool) -> tuple[FakeProvider, float]:
    """Summarize DOCUMENTS; return the provider (its counts) and the seconds taken."""
    provider = FakeProvider()
    if limited:
        executor = PipelineExecutor(
            limits={
                "llm": RateLimit(
                    requests_per_minute=RPM,
                    tokens_per_minute=TPM,
                    # The provider holds 10 s worth: so may we.
                    burst=RPM / 6,
                    token_burst=TPM / 6,
                )
            }
        )
        definition = pipeline(summarize)
    else:
        executor = PipelineExecutor()
        definition = pipeline(summarize_unlimited)
    begin = trio.current_time()
    result = await executor.execute(
        definition, DOCUMENTS, PipelineContext(provider=provider)
    )
    assert result.success, result.failed_stages
    return provider, trio.current_time() - begin


async def main() -> dict[str, tuple[int, int, float]]:
    """Run without and with the limit; print and return (answered, 429s, seconds)."""
    found = {}
    for name, limited in (("without a limit", False), ("with the limit", True)):
        provider, seconds = await run_once(limited)
        found[name] = (provider.answered, provider.refused, round(seconds, 3))
        print(
            f"{name:16} {provider.answered} answers, {provider.refused:3} x 429, "
            f"{seconds:5.1f} s"
        )
    return found


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

"""Retries and timeouts in their smallest useful form.

* ``quote`` fails twice with a ``ConnectionError`` and then succeeds: it is
  retried after 100 ms, then 200 ms (``initial_delay_ms=100``, doubling).
* ``render`` takes too long on its first attempt: ``timeout_ms=200`` cancels
  that attempt, the "timed out" error matches ``retryable_errors``, and the
  second attempt is quick.
* ``translate`` raises a ``ValueError``, which ``retry_on`` does not list, so
  it is not retried; it is non-critical, so the run still succeeds.
* The whole run is bounded by the pipeline's own ``timeout_ms``.

Stages keep their attempt counts in the context's state, so every run starts
afresh. Run it with ``python examples/retries_and_timeouts.py`` or
``actors run examples/retries_and_timeouts.py``.
"""

from __future__ import annotations

import trio

from actors import (
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    RetryConfig,
    StageDefinition,
)


def _attempt(context: PipelineContext, stage: str) -> int:
    """Count this attempt of *stage* in the run's state and return its number."""
    attempt: int = context.get_state(stage, 0) + 1
    context.set_state(stage, attempt)
    return attempt


async def fetch_quote(symbol: str | None, context: PipelineContext) -> float:
    """Fetch a price over a flaky connection: the first two attempts fail."""
    await trio.sleep(0.05)
    if _attempt(context, "quote") <= 2:
        raise ConnectionError("connection reset by peer")
    return 101.25


async def render(price: float, context: PipelineContext) -> str:
    """Render the price; the first attempt hangs until its timeout cancels it."""
    if _attempt(context, "render") == 1:
        await trio.sleep(10)  # cancelled by timeout_ms long before this
    await trio.sleep(0.05)
    return f"price: {price:.2f}"


async def translate(text: str, context: PipelineContext) -> str:
    """Fail with an error that the retry policy does not cover."""
    raise ValueError("no translation for 'price'")


pipeline = PipelineDefinition(
    name="retries_and_timeouts",
    timeout_ms=5000,
    stages=[
        StageDefinition(
            "quote",
            fetch_quote,
            retry_config=RetryConfig(
                max_attempts=4,
                initial_delay_ms=100,
                backoff_multiplier=2.0,
                retry_on=(ConnectionError,),
            ),
        ),
        StageDefinition(
            "render",
            render,
            inputs=["quote"],
            timeout_ms=200,
            retry_config=RetryConfig(
                max_attempts=2, initial_delay_ms=50, retryable_errors=["timed out"]
            ),
        ),
        StageDefinition(
            "translate",
            translate,
            inputs=["render"],
            critical=False,
            retry_config=RetryConfig(max_attempts=3, retry_on=(ConnectionError,)),
        ),
    ],
)


async def main() -> PipelineResult:
    """Run the pipeline and print each stage's attempts and backoff."""
    result = await PipelineExecutor().execute(pipeline, "ACME")
    for stage_id, stage in result.stage_results.items():
        profile = stage.profile
        assert profile is not None
        print(
            f"{stage_id:10} {stage.status:10} attempts={stage.attempts} "
            f"backoff={profile.backoff_ms:g} ms  {stage.error or ''}"
        )
    print(f"success={result.success} in {result.total_duration_ms:g} ms")
    return result


if __name__ == "__main__":
    trio.run(main)

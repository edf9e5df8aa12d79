"""A fake LLM provider: replies by prompt pattern, latency, scripted failures."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from .._context import PipelineContext
from .._limits import RateLimited


def rate_limit_error(message: str, retry_after_s: float) -> Exception:
    """Return the exception a scripted rate limit raises: the library's own.

    :class:`~actors.RateLimited`, so the executor treats it as a provider's
    push-back: retried whatever the retry filters say (while attempts
    remain), after ``max(backoff, retry_after_s)``, and pausing the stage's
    ``rate_limit`` for everyone sharing it.
    """
    return RateLimited(message, retry_after_s=retry_after_s)


@dataclass(frozen=True, slots=True)
class Completion:
    """What the fake answers; tokens are whitespace-separated words."""

    text: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class LLMCall:
    """One call of the fake: the prompt, and the reply or the error raised."""

    prompt: str
    reply: str | None
    error: str | None
    at: float
    """The trio time of the call."""


@dataclass
class Failure:
    """A scripted failure: the next ``times`` matching calls raise."""

    make: Callable[[str], Exception]
    times: int
    pattern: re.Pattern[str] | None = None


def rate_limit(
    times: int = 1, retry_after_s: float = 1.0, *, pattern: str | None = None
) -> Failure:
    """Refuse the next *times* calls (matching *pattern*, if given) at once.

    Each refusal raises :class:`~actors.RateLimited` with *retry_after_s*.
    """
    return Failure(
        lambda prompt: rate_limit_error(
            f"rate limited; retry after {retry_after_s:g} s", retry_after_s
        ),
        times,
        None if pattern is None else re.compile(pattern),
    )


def fails(
    exception: Exception, times: int = 1, *, pattern: str | None = None
) -> Failure:
    """Raise *exception* on the next *times* calls (matching *pattern*, if given)."""
    return Failure(
        lambda prompt: copy.copy(exception),
        times,
        None if pattern is None else re.compile(pattern),
    )


Reply = str | Callable[[str], str]


@dataclass
class FakeLLM:
    """A provider for ``PipelineContext.provider`` that never leaves the process.

    Rules map regular expressions (searched in the prompt, first match wins)
    to a reply, or to a function of the prompt. Each call sleeps ``latency``
    seconds (virtual ones on a mock clock). When attached to a context
    (:func:`actors.testing.run` does it), every answered call adds to the
    metrics ``llm_calls``, ``llm_prompt_tokens`` and ``llm_completion_tokens``.
    """

    rules: dict[str, Reply] = field(default_factory=dict)
    default: str | None = None
    """The reply when no rule matches (``None``: raise LookupError)."""
    latency: float = 0.0
    calls: list[LLMCall] = field(default_factory=list)
    _failures: list[Failure] = field(default_factory=list)
    _context: PipelineContext[Any] | None = None

    def reply(self, pattern: str, text: Reply) -> FakeLLM:
        """Add a rule; returns the fake, so rules chain."""
        self.rules[pattern] = text
        return self

    def fail(self, failure: Failure) -> FakeLLM:
        """Script a failure (:func:`rate_limit`, :func:`fails`); returns the fake."""
        self._failures.append(failure)
        return self

    def attach(self, context: PipelineContext[Any]) -> None:
        """Count calls and tokens into *context*'s metrics from now on."""
        self._context = context

    async def complete(self, prompt: str, **options: Any) -> Completion:
        """Answer *prompt* after ``latency`` seconds; a checkpoint.

        Raises:
            actors.RateLimited: A scripted rate limit applies (at once, no
                latency), with its ``retry_after_s``.
            LookupError: No rule matches and there is no default.
        """
        for failure in self._failures:
            if failure.times > 0 and (
                failure.pattern is None or failure.pattern.search(prompt)
            ):
                failure.times -= 1
                error = failure.make(prompt)
                self.calls.append(
                    LLMCall(prompt, None, f"{type(error).__name__}: {error}", _now())
                )
                await trio.lowlevel.checkpoint()
                raise error
        await trio.sleep(self.latency)
        text = self._answer(prompt)
        self.calls.append(LLMCall(prompt, text, None, _now()))
        completion = Completion(text, len(prompt.split()), len(text.split()))
        context = self._context
        if context is not None:
            context.increment_metric("llm_calls")
            context.increment_metric("llm_prompt_tokens", completion.prompt_tokens)
            context.increment_metric(
                "llm_completion_tokens", completion.completion_tokens
            )
        return completion

    def _answer(self, prompt: str) -> str:
        for pattern, reply in self.rules.items():
            if re.search(pattern, prompt):
                return reply if isinstance(reply, str) else reply(prompt)
        if self.default is not None:
            return self.default
        raise LookupError(f"FakeLLM has no rule for prompt {prompt[:80]!r}")


def _now() -> float:
    return trio.current_time()

"""The reference model's records, and the attempts of one stage or item.

Plain sequential Python: no trio. Times are exact Fractions of virtual
seconds since the run started, or ``NEVER``.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .._definition import ExecutionPattern, RetryConfig
from .._exceptions import StageContractError, StageTimeoutError
from .._limits import RateLimited
from .._util import describe
from ._plan import Act, StagePlan, Step, StreamStep, seconds

Time = Fraction | float
"""A virtual time: a Fraction, or ``NEVER``."""

NEVER: float = math.inf


class Unpredicted(enum.Enum):
    """Marks a detail of a result the model does not predict."""

    UNPREDICTED = "unpredicted"

    def __repr__(self) -> str:
        return "UNPREDICTED"


UNSET = Unpredicted.UNPREDICTED


class End(enum.Enum):
    """How one attempt ended, naturally."""

    OK = "ok"
    RAISE = "raise"
    WRONG = "wrong"
    TIMEOUT = "timeout"
    INTERRUPT = "interrupt"
    HANG = "hang"


FAILURES = (End.RAISE, End.WRONG, End.TIMEOUT)


@dataclass(frozen=True)
class Details:
    """What a stage's result holds besides its status and times."""

    output: Any = UNSET
    error: str | None = None
    """A regex the error text must match (``None``: not predicted)."""
    metadata: Any = UNSET
    item_errors: dict[int, str] | None = None
    """A collecting fan-out: a regex per failed item, and no other failed item."""


@dataclass(frozen=True)
class Alt:
    """One legal outcome of a stage (or item) once cancellation is applied."""

    status: str
    """A StageStatus value, or "interrupt" / "hang" / "never" / an End value."""
    attempts: tuple[int, int]
    """Lowest and highest legal attempt count."""
    finish: Time
    details: Details | None = None
    """What its result holds, when this is the stage's natural outcome."""


@dataclass(frozen=True)
class Spec:
    """One stage as the model sees it: its definition's settings and its plan."""

    index: int
    """Its position in the definition."""
    id: str
    inputs: tuple[int, ...]
    pattern: ExecutionPattern
    critical: bool
    condition: bool | None
    """What its condition returns; ``None``: it has none."""
    retry: RetryConfig | None
    timeout_ms: float | None
    max_concurrency: int | None
    item_failures: str
    min_successes: int | None
    plan: StagePlan
    generator: bool = False
    stream_fed: bool = False
    consumers: tuple[int, ...] = ()
    """Streams: the FAN_OUTs it feeds item by item, in declaration order."""
    buffer: int = 0
    stream_timeout_ms: float | None = None
    resumable: bool = False
    collect: bool = True

    @property
    def timeout(self) -> Fraction | None:
        """The per-attempt (per-item, for a stream) timeout in seconds."""
        return None if self.timeout_ms is None else seconds(self.timeout_ms) / 1000

    @property
    def fan_out(self) -> bool:
        """True for a FAN_OUT stage."""
        return self.pattern is ExecutionPattern.FAN_OUT


@dataclass
class Chain:
    """The natural attempts of one stage or fan-out item, started at ``starts[0]``."""

    starts: list[Time] = field(default_factory=list)
    ends: list[Time] = field(default_factory=list)
    kinds: list[End] = field(default_factory=list)
    error: str | None = None
    """A regex for the last attempt's error text (a failure)."""

    @property
    def end(self) -> Time:
        """When the chain's outcome is known (``NEVER`` if it hangs)."""
        return self.ends[-1]

    @property
    def outcome(self) -> End:
        """How the last attempt ended."""
        return self.kinds[-1]

    @property
    def failed(self) -> bool:
        """True if the chain ends in a failure (not an interrupt or a hang)."""
        return self.outcome in FAILURES


@dataclass
class StageExpect:
    """What the model says about one stage."""

    spec: Spec
    ready: Time = NEVER
    input: Any = None
    natural_status: str = ""
    natural_finish: Time = NEVER
    output: Any = None
    error: str | None = None
    """A regex the error text must match, when the failure is unambiguous."""
    metadata: Any = UNSET
    alternatives: list[Alt] = field(default_factory=list)
    interrupt_at: Time = NEVER
    chain: Chain | None = None
    items: dict[int, tuple[Time, Chain]] = field(default_factory=dict)
    """Fan-out items that started, by index (in the order they started)."""
    item_failure_at: Time = NEVER
    item_interrupt_at: Time = NEVER
    trigger: bool = False
    """Its failure alone cancels the run (so it never sends its result)."""
    item_errors: dict[int, str] | None = None
    """A collecting fan-out that ran all its items: a regex per failed item."""
    slack: int = 0
    """Attempts that may also have started in the instant its items stopped."""
    fed_by_trigger: bool = False
    """A stream-fed FAN_OUT whose stream's failure is what cancels the run."""

    @property
    def details(self) -> Details:
        """What its natural outcome's result holds."""
        status = self.natural_status
        return Details(
            output=self.output if status in ("succeeded", "skipped") else UNSET,
            error=self.error,
            metadata=self.metadata,
            item_errors=self.item_errors,
        )


def check_step(spec: Spec, step: Step, took: Time) -> None:
    """Refuse a step the model cannot predict exactly."""
    if step.act is Act.RAISES and isinstance(step.raised(), RateLimited):
        raise ValueError(
            f"stage {spec.id!r}: the oracle does not model RateLimited "
            "(its Retry-After pauses); plan another exception"
        )
    timeout = spec.timeout
    if timeout is not None and took == timeout:
        raise ValueError(
            f"stage {spec.id!r}: a planned wait of exactly its timeout "
            f"({spec.timeout_ms:g} ms) may end either way; plan another duration"
        )


def play_chain(spec: Spec, item: int | None, start: Time) -> Chain:
    """Play the attempts of one stage or item from *start*, with its retry policy."""
    plan = spec.plan
    if item is None:
        script = plan.script
        extra = Fraction(0)
    else:
        script = plan.item_script(item)
        extra = (item + 1) * seconds(plan.spread)
    timeout = spec.timeout
    retry = spec.retry
    chain = Chain()
    now = start
    number = 0
    while True:
        number += 1
        chain.starts.append(now)
        step = script[min(number, len(script)) - 1]
        took: Time = NEVER if step.act is Act.HANGS else seconds(step.after) + extra
        check_step(spec, step, took)
        exception: BaseException | None = None
        if timeout is not None and took > timeout:
            end, result = now + timeout, End.TIMEOUT
            exception = StageTimeoutError(
                f"stage {spec.id!r} timed out after {spec.timeout_ms:g} ms "
                f"(attempt {number})"
            )
        elif step.act is Act.HANGS:
            end, result = NEVER, End.HANG
        else:
            end = now + took
            result = _END_OF[step.act]
            if result is End.RAISE:
                exception = step.raised()
            elif result is End.WRONG:
                exception = StageContractError(
                    f"stage {spec.id!r} returned a coroutine instead of a value: "
                    "did you forget await?"
                )
        chain.ends.append(end)
        chain.kinds.append(result)
        if exception is None:
            return chain
        text = describe(exception)
        chain.error = error_pattern(spec, result, text)
        if (
            retry is None
            or number >= retry.max_attempts
            or not retry.should_retry(text, exception)
        ):
            return chain
        now = end + seconds(retry.delay_ms(number + 1)) / 1000


_END_OF = {
    Act.RETURNS: End.OK,
    Act.RAISES: End.RAISE,
    Act.BREAKS_CONTRACT: End.WRONG,
    Act.INTERRUPTS: End.INTERRUPT,
}


def error_pattern(spec: Spec, result: End, text: str) -> str:
    """A regex for the error text of a failure ending in *result*."""
    if result is End.WRONG:
        # Any breach of the stage contract (an object's execute returning
        # the wrong type reads differently from a forgotten await).
        return rf"^StageContractError: stage '{escape(spec.id)}'"
    return rf"^{escape(text)}$"


def escape(text: str) -> str:
    """Escape *text* for a regex, leaving its spaces readable."""
    return re.escape(text).replace("\\ ", " ")


def stream_step(spec: Spec, attempt: int) -> StreamStep:
    """Return the step a streaming stage plays on *attempt* (from 1)."""
    steps = spec.plan.stream
    step = steps[min(attempt, len(steps)) - 1]
    if step.then.act not in (Act.RETURNS, Act.RAISES, Act.HANGS):
        raise ValueError(
            f"stage {spec.id!r}: a stream step ends by returning, raising or "
            f"hanging, not {step.then.act.value}"
        )
    return step


def count_attempts(chain: Chain, cut: Time) -> tuple[int, int]:
    """Attempts of *chain* started by *cut* (low, high: high counts a tie at *cut*)."""
    low = sum(1 for start in chain.starts if start < cut)
    ties = sum(1 for start in chain.starts[1:] if start == cut)
    if chain.starts[0] == cut:
        low += 1  # the first attempt is started by whoever started the chain
    return low, low + ties


def chain_alternatives(chain: Chain, cut: Time, trigger: bool) -> list[Alt]:
    """Every legal outcome of *chain* when everything is cancelled at *cut*.

    *trigger* says the chain's own failure is what cancels at *cut*, so that
    failure certainly happens.
    """
    if cut > chain.end or cut == NEVER:
        low, _ = count_attempts(chain, NEVER)
        return [Alt(chain.outcome.value, (low, low), chain.end)]
    # An attempt starting exactly at *cut* (a backoff ending then) may or may
    # not start before the cancellation is seen: *high* counts it.
    low, high = count_attempts(chain, cut)
    cancelled = Alt("cancelled", (low, high), cut)
    if cut < chain.end:
        return [cancelled]
    # The last attempt ends at *cut*. Its sleep ends through trio's deadline
    # machinery, so if the cancellation is processed first, the stage sees
    # Cancelled instead: both are legal, unless its own failure is the cause.
    natural = Alt(chain.outcome.value, (low, low), chain.end)
    if trigger:
        return [natural]
    return [natural, cancelled]

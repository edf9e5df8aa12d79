"""Scripted stages: each attempt follows an outcome, and every call is recorded."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, overload

import trio
import trio.testing

if TYPE_CHECKING:
    from .._context import PipelineContext
    from .._definition import StreamFunction
    from ._recorder import Recorder


@dataclass(frozen=True, slots=True)
class Attempt:
    """The attempt running in this task, as the recorder's hook announced it."""

    recorder: Recorder
    stage_id: str
    item_index: int | None
    attempt: int


CURRENT: ContextVar[Attempt | None] = ContextVar("actors_testing_attempt", default=None)
"""Set by :class:`Recorder` around every attempt, read by scripted stages."""


@dataclass(eq=True, slots=True)
class Call:
    """One call of a scripted stage: who, on what, when, how it ended.

    Times are virtual seconds since the run started.
    """

    stage: str
    item: int | None
    attempt: int
    input: Any
    started: float
    ended: float | None = None
    """``None`` while the call runs, and for a call a crash cut short."""
    outcome: Outcome | Yields | None = field(default=None, compare=False)
    """The scripted outcome it followed."""
    cancelled: bool = False
    """True if it was cancelled (it saw ``trio.Cancelled``)."""


class Outcome:
    """What one attempt does; build them with the functions of this module."""

    __slots__ = ("after",)

    def __init__(self, after: float = 0.0) -> None:
        self.after = after

    async def play(self, value: Any) -> Any:
        """Do it: sleep ``after`` virtual seconds, then act. A checkpoint."""
        raise NotImplementedError  # every outcome below overrides it

    def __repr__(self) -> str:
        return f"{type(self).__name__}(after={self.after:g})"


class _Returns(Outcome):
    __slots__ = ("value",)

    def __init__(self, value: Any, after: float) -> None:
        super().__init__(after)
        self.value = value

    async def play(self, value: Any) -> Any:
        await trio.sleep(self.after)
        return self.value

    def __repr__(self) -> str:
        return f"returns({self.value!r}, after={self.after:g})"


class _ReturnsInput(Outcome):
    __slots__ = ()

    async def play(self, value: Any) -> Any:
        await trio.sleep(self.after)
        return value

    def __repr__(self) -> str:
        return f"returns_input(after={self.after:g})"


class _Raises(Outcome):
    __slots__ = ("exception",)

    def __init__(self, exception: BaseException, after: float) -> None:
        super().__init__(after)
        self.exception = exception

    async def play(self, value: Any) -> Any:
        await trio.sleep(self.after)
        # A fresh copy per attempt: each failure keeps its own traceback.
        raise copy.copy(self.exception)

    def __repr__(self) -> str:
        return f"raises({self.exception!r}, after={self.after:g})"


class _Hangs(Outcome):
    __slots__ = ()

    async def play(self, value: Any) -> Any:
        await trio.sleep_forever()

    def __repr__(self) -> str:
        return "hangs()"


class _SwallowsCancel(Outcome):
    __slots__ = ("for_",)

    def __init__(self, for_: float) -> None:
        super().__init__(0.0)
        self.for_ = for_

    async def play(self, value: Any) -> Any:
        try:  # noqa: SIM105  # spelled out: this swallow is the misbehaviour scripted
            await trio.sleep_forever()
        except trio.Cancelled:  # scripted contract breach, on purpose
            pass
        with trio.CancelScope(shield=True):
            await trio.sleep(self.for_)
        return value  # the shielded sleep above checkpoints

    def __repr__(self) -> str:
        return f"swallows_cancel(for_={self.for_:g})"


class _BlocksSync(Outcome):
    __slots__ = ("seconds",)

    def __init__(self, seconds: float, after: float) -> None:
        super().__init__(after)
        self.seconds = seconds

    async def play(self, value: Any) -> Any:
        await trio.sleep(self.after)
        _block(self.seconds)
        return value  # no checkpoint after: blocking work then an instant return

    def __repr__(self) -> str:
        return f"blocks_sync({self.seconds:g}, after={self.after:g})"


def _block(seconds: float) -> None:
    """Hold the event loop for *seconds*: virtual ones under a MockClock."""
    clock = trio.lowlevel.current_clock()
    if isinstance(clock, trio.testing.MockClock):
        clock.jump(seconds)  # time passes, and no task runs meanwhile
    else:
        time.sleep(seconds)


def returns(value: Any, *, after: float = 0.0) -> Outcome:
    """Sleep *after* seconds, then return *value*."""
    return _Returns(value, after)


def returns_input(*, after: float = 0.0) -> Outcome:
    """Sleep *after* seconds, then return the stage's input."""
    return _ReturnsInput(after)


def raises(exception: BaseException, *, after: float = 0.0) -> Outcome:
    """Sleep *after* seconds, then raise a copy of *exception*."""
    return _Raises(exception, after)


def hangs() -> Outcome:
    """Sleep until cancelled (a stage that never answers)."""
    return _Hangs()


def swallows_cancel(*, for_: float = 0.0) -> Outcome:
    """Wait until cancelled, swallow ``trio.Cancelled``, run on *for_* seconds, return.

    Breaks the cancellation contract on purpose, to test that the run still
    ends and reports the breach.
    """
    return _SwallowsCancel(for_)


def blocks_sync(seconds: float, *, after: float = 0.0) -> Outcome:
    """Sleep *after* seconds, block the event loop for *seconds*, return the input.

    Blocking stands for synchronous work: no other task runs meanwhile.
    Under a MockClock the clock jumps: no real time passes.
    """
    return _BlocksSync(seconds, after)


class Yields:
    """What one attempt of a scripted streaming stage does; see :func:`yields`."""

    __slots__ = ("every", "then", "values")

    def __init__(self, values: Sequence[Any], every: float, then: Outcome | None):
        if then is not None and not isinstance(then, _Raises | _Hangs):
            raise TypeError(
                f"yields(then=...) takes raises(...) or hangs(), got {then!r} "
                "(a generator returns no value)"
            )
        self.values = tuple(values)
        self.every = every
        self.then = then

    def __repr__(self) -> str:
        then = "" if self.then is None else f", then={self.then!r}"
        return f"yields({list(self.values)!r}, every={self.every:g}{then})"


def yields(
    values: Sequence[Any], *, every: float = 0.0, then: Outcome | None = None
) -> Yields:
    """Yield each of *values* after *every* seconds, then end (or play *then*).

    Item ``k`` (from 1) comes at ``k * every`` seconds into the attempt.
    *then* is ``raises(exc, after=s)`` (the stream fails *s* seconds after
    its last item) or ``hangs()``; ``None`` ends the stream. Script a
    streaming stage with it: ``script(yields([1, 2], every=0.25))``.
    """
    return Yields(values, every, then)


def _stream(plan: Sequence[Yields]) -> StreamFunction:
    """Return an async generator function whose attempt ``k`` plays ``plan[k - 1]``."""

    async def scripted_stream(
        value: Any, context: PipelineContext[Any]
    ) -> AsyncIterator[Any]:
        current = _current()
        outcome = plan[min(current.attempt, len(plan)) - 1]
        # Ended also when the library closes it early (GeneratorExit).
        with _recorded(current, value, outcome):
            for item in outcome.values:
                await trio.sleep(outcome.every)
                yield item
            if outcome.then is not None:
                await outcome.then.play(value)

    scripted_stream.__qualname__ = f"script({', '.join(map(repr, plan))})"
    return scripted_stream


@contextlib.contextmanager
def _recorded(
    current: Attempt, value: Any, outcome: Outcome | Yields
) -> Iterator[None]:
    """Record one call of a scripted stage: started now, ended with the block."""
    recorder = current.recorder
    call = Call(
        stage=current.stage_id,
        item=current.item_index,
        attempt=current.attempt,
        input=value,
        started=recorder.now(),
        outcome=outcome,
    )
    if not recorder.stopped:
        recorder.calls.append(call)
    try:
        yield
    except trio.Cancelled:
        if not recorder.stopped:
            call.cancelled = True
        raise
    finally:
        if not recorder.stopped:
            call.ended = recorder.now()


def _current() -> Attempt:
    current = CURRENT.get()
    if current is None:
        raise RuntimeError(
            "a scripted stage runs under actors.testing.run()/arun(), or under "
            "an executor with an actors.testing.Recorder among its observers"
        )
    return current


Plan: TypeAlias = Outcome | Sequence[Outcome]
"""One outcome for every attempt, or one per attempt (the last repeats)."""


class ScriptedStage:
    """A stage whose attempts follow a script; see :func:`script` and :func:`per_item`.

    It runs only under a :class:`~actors.testing.Recorder` (which
    :func:`~actors.testing.run` registers): the recorder tells it which
    stage, item and attempt it is playing, and keeps its calls.
    """

    def __init__(self, plans: Mapping[int | str, Plan]) -> None:
        self._plans = {key: _as_list(plan) for key, plan in plans.items()}
        for key in self._plans:
            if key != "*" and not isinstance(key, int):
                raise TypeError(f"per_item keys are item indices or '*', got {key!r}")

    def _outcome(self, item: int | None, attempt: int) -> Outcome:
        plan = self._plans.get(item) if item is not None else None
        if plan is None:
            plan = self._plans.get("*")
        if plan is None:
            raise LookupError(
                f"no scripted outcome for item {item}; add it or a '*' entry"
            )
        return plan[min(attempt, len(plan)) - 1]

    async def __call__(self, value: Any, context: PipelineContext[Any]) -> Any:
        """Play the outcome of the current attempt; record the call."""
        current = _current()
        outcome = self._outcome(current.item_index, current.attempt)
        with _recorded(current, value, outcome):
            return await outcome.play(value)

    def __repr__(self) -> str:
        return f"ScriptedStage({self._plans!r})"


def _as_list(plan: Plan) -> list[Outcome]:
    outcomes = [plan] if isinstance(plan, Outcome) else list(plan)
    if not outcomes or not all(isinstance(o, Outcome) for o in outcomes):
        raise TypeError("a script needs at least one outcome (returns(...), ...)")
    return outcomes


@overload
def script(first: Yields, /, *outcomes: Yields) -> StreamFunction: ...


@overload
def script(*outcomes: Outcome) -> ScriptedStage: ...


def script(*outcomes: Outcome | Yields) -> ScriptedStage | StreamFunction:
    """Return a stage whose attempt ``k`` follows ``outcomes[k - 1]``.

    The last outcome repeats for later attempts.

    In a fan-out stage, every item follows the same script. Scripted with
    :func:`yields`, it is a streaming stage: a real async generator
    function, whose retries start again from the first value (the library
    skips the items already delivered).

    Raises:
        TypeError: :func:`yields` mixed with other outcomes, or no outcome.
    """
    streams = [o for o in outcomes if isinstance(o, Yields)]
    if not streams:
        return ScriptedStage({"*": outcomes})  # type: ignore[dict-item]  # all Outcome
    if len(streams) != len(outcomes):
        raise TypeError(
            "a script is a stream (only yields(...)) or not (no yields(...))"
        )
    return _stream(streams)


def per_item(plans: Mapping[int | str, Plan]) -> ScriptedStage:
    """Return a fan-out stage scripted per item index; ``"*"`` is every other item.

    Example: ``per_item({0: [raises(ValueError()), returns("ok")], "*":
    returns_input(after=1)})``.
    """
    return ScriptedStage(plans)

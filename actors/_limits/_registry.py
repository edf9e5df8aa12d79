"""The named limits an executor owns, and the permits they grant."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import TracebackType

import trio

from ._meter import LimitState, impossible, meters_of
from ._model import RateLimit, RateLimited

WaitHook = Callable[[str, float, int, float], None]
"""``on_wait(name, waited_s, requests, tokens)``: called once per grant."""
PauseHook = Callable[[str, float, float], None]
"""``on_pause(name, seconds, until)``: called when a limit is paused (trio time)."""


class Permit:
    """What a granted limit hands out: the costs taken, and how to correct them.

    Attributes:
        name: The limit.
        requests: Requests taken.
        tokens: Tokens taken (the estimate, until :meth:`settle`).
        waited_s: Seconds spent queued (slot and meters) before the grant.
    """

    __slots__ = (
        "_on_pause",
        "_settled",
        "_state",
        "name",
        "requests",
        "tokens",
        "waited_s",
    )

    def __init__(
        self,
        state: LimitState,
        requests: int,
        tokens: float,
        waited_s: float,
        on_pause: PauseHook | None,
    ) -> None:
        self._state = state
        self._on_pause = on_pause
        self._settled = False
        self.name = state.name
        self.requests = requests
        self.tokens = tokens
        self.waited_s = waited_s

    def settle(self, *, tokens: float) -> None:
        """Replace the token estimate by the *tokens* actually used.

        The token meters move by ``(tokens - estimate) * T``: a refund when
        the estimate was high, a debt the next waiters pay when it was low.
        Not settling keeps the estimate. Never blocks.

        Raises:
            RuntimeError: The permit was already settled.
            ValueError: *tokens* is negative or not finite.
        """
        if self._settled:
            raise RuntimeError(f"the permit of limit {self.name!r} is already settled")
        if not (math.isfinite(tokens) and tokens >= 0):
            raise ValueError(f"tokens must be a finite number >= 0, got {tokens!r}")
        self._settled = True
        delta = tokens - self.tokens
        self.tokens = tokens
        if delta:
            now = trio.current_time()
            for meter in self._state.token_meters:
                meter.adjust(delta, now)
            self._state.changed()

    def retry_after(self, seconds: float) -> None:
        """Pause the whole limit for *seconds* (the provider's Retry-After).

        Every waiter of the limit, those already queued included, waits
        until then; it resumes with one request, then the sustained rate.
        Never blocks.
        """
        _pause(self._state, seconds, self._on_pause)


def _pause(state: LimitState, seconds: float, on_pause: PauseHook | None) -> float:
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
    before = state.paused_until
    until = state.pause(seconds, trio.current_time())
    if on_pause is not None and until != before:
        on_pause(state.name, seconds, until)
    return until


class _Acquire:
    """``async with limits.limit(...)``: the grant on entry, the slot back on exit."""

    __slots__ = (
        "_entered",
        "_held",
        "_on_pause",
        "_on_wait",
        "_requests",
        "_state",
        "_tokens",
    )

    def __init__(
        self,
        state: LimitState,
        requests: int,
        tokens: float,
        on_wait: WaitHook | None,
        on_pause: PauseHook | None,
    ) -> None:
        self._state = state
        self._requests = requests
        self._tokens = tokens
        self._on_wait = on_wait
        self._on_pause = on_pause
        self._entered = False
        self._held = False

    async def __aenter__(self) -> Permit:
        if self._entered:
            raise RuntimeError("a limit's acquisition is entered once")
        self._entered = True
        state, requests, tokens = self._state, self._requests, self._tokens
        begin = trio.current_time()
        slots = state.slots
        if slots is None:
            if (
                not state.queue
                and state.backend is None
                and state.ready_at(requests, tokens) <= begin
            ):
                # Granted at once (the common case, inlined): still a checkpoint,
                # and cancelled at it, nothing is taken.
                await trio.lowlevel.checkpoint_if_cancelled()
                state.take(requests, tokens, begin)
                await trio.lowlevel.cancel_shielded_checkpoint()
                self._held = True
                permit = Permit(state, requests, tokens, 0.0, self._on_pause)
                if self._on_wait is not None:
                    self._waited(0.0)
                return permit
            await state.admit(requests, tokens, checkpointed=False)
        else:
            await slots.acquire_on_behalf_of(self)
            try:
                await state.admit(requests, tokens, checkpointed=True)
            except BaseException:
                slots.release_on_behalf_of(self)
                raise
        self._held = True
        waited = trio.current_time() - begin
        permit = Permit(state, requests, tokens, waited, self._on_pause)
        if self._on_wait is not None:
            self._waited(waited)
        return permit

    def _waited(self, waited: float) -> None:
        assert self._on_wait is not None
        try:
            self._on_wait(self._state.name, waited, self._requests, self._tokens)
        except BaseException:
            self.release()  # never entered, so never exited: the slot goes back
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
        if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
            # The provider pushed back inside the block: the whole limit waits.
            _pause(self._state, exc.retry_after_s, self._on_pause)

    def release(self) -> None:
        """Give the concurrency slot back (once); never blocks."""
        slots = self._state.slots
        if self._held:
            self._held = False
            if slots is not None:
                slots.release_on_behalf_of(self)


class Limits:
    """The named limits of one executor, shared by all its runs, stages and items.

    Meters, slots and pauses live per trio run (a :class:`trio.lowlevel.RunVar`):
    two runs of the executor inside one ``trio.run`` share them; a new
    ``trio.run`` starts them afresh, on its own clock.
    """

    __slots__ = ("_specs", "_states")

    def __init__(self, mapping: Mapping[str, RateLimit]) -> None:
        specs = dict(mapping)
        for name, spec in specs.items():
            if not name:
                raise TypeError(f"limit names are non-empty strings, got {name!r}")
            if not isinstance(spec, RateLimit):  # a plain dict, say
                raise TypeError(
                    f"limit {name!r}: expected a RateLimit, got {type(spec).__name__}"
                )
        self._specs = specs
        self._states: trio.lowlevel.RunVar[dict[str, LimitState]] = (
            trio.lowlevel.RunVar("actors.limits")
        )

    @property
    def names(self) -> tuple[str, ...]:
        """The limits' names, sorted."""
        return tuple(sorted(self._specs))

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __getitem__(self, name: str) -> RateLimit:
        """Return the declaration of *name* (KeyError naming the known ones)."""
        try:
            return self._specs[name]
        except KeyError:
            raise self._unknown(name) from None

    def _unknown(self, name: str) -> KeyError:
        known = ", ".join(repr(n) for n in self.names) or "none"
        return KeyError(f"unknown limit {name!r}; known limits: {known}")

    def _state(self, name: str) -> LimitState:
        try:
            states = self._states.get()
        except LookupError:
            states = {}
            self._states.set(states)
        state = states.get(name)
        if state is None:
            state = states[name] = LimitState(name, self[name])
        return state

    def limit(
        self,
        name: str,
        *,
        requests: int = 1,
        tokens: float = 0,
        on_wait: WaitHook | None = None,
        on_pause: PauseHook | None = None,
    ) -> _Acquire:
        """Return an async context manager that takes *requests* and *tokens*.

        Entering it waits (FIFO) for a concurrency slot, then until every
        meter conforms, and takes them all at once; it yields a
        :class:`Permit`. Exiting releases the slot; a :class:`RateLimited`
        with a ``retry_after_s`` raised out of the block pauses the limit.
        Entering is always a checkpoint; cancelled while queued, it takes
        nothing.

        Raises:
            KeyError: *name* is not a limit (the message lists the known ones).
            ValueError: A cost is negative, or above its burst (it could never
                be granted); nothing is taken.
        """
        try:
            state = self._states.get()[name]
        except (LookupError, KeyError):
            if name not in self._specs:
                raise self._unknown(name) from None
            state = self._state(name)
        if type(requests) is not int or requests < 0:  # a bool is no count
            raise ValueError(f"requests must be an int >= 0, got {requests!r}")
        if (type(tokens) is not int and not math.isfinite(tokens)) or tokens < 0:
            raise ValueError(f"tokens must be a finite number >= 0, got {tokens!r}")
        state.check(requests, tokens)
        return _Acquire(state, requests, tokens, on_wait, on_pause)

    def impossible(self, name: str, requests: int, tokens: float) -> str | None:
        """Return why such a request could never be granted, or ``None``."""
        return impossible(name, *meters_of(self[name]), requests, tokens)

    def pause(
        self, name: str, seconds: float, *, on_pause: PauseHook | None = None
    ) -> float:
        """Pause *name* for *seconds* from now; return the trio time it resumes.

        See :meth:`Permit.retry_after`. Never blocks.
        """
        return _pause(self._state(name), seconds, on_pause)

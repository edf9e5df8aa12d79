"""Named limits: GCRA meters, FIFO admission, pauses and permits, under virtual time."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
import pytest
import trio
import trio.testing

from actors._limits import Limits, Permit, RateLimit, RateLimited, retry_after

Grant = float | str


def now() -> float:
    """The trio time, rounded to the nanosecond (float sums are not exact)."""
    return round(trio.current_time(), 9)


async def acquire_in_order(
    limits: Limits,
    costs: list[tuple[int, float]],
    *,
    name: str = "api",
    during: Callable[[int, Permit], Awaitable[None]] | None = None,
    cancel: dict[int, float] | None = None,
) -> list[Grant]:
    """Start one acquirer per (requests, tokens), each queued before the next.

    Returns each acquirer's grant time, or ``"cancelled"`` for those whose
    scope was cancelled at the time given in *cancel*.
    """
    grants: list[Grant] = ["pending"] * len(costs)
    cancel = cancel or {}

    async def acquirer(index: int, requests: int, tokens: float) -> None:
        with trio.CancelScope() as scope:
            if index in cancel:
                scope.deadline = cancel[index]
            async with limits.limit(name, requests=requests, tokens=tokens) as permit:
                grants[index] = now()
                if during is not None:
                    await during(index, permit)
        if scope.cancelled_caught:
            grants[index] = "cancelled"

    async with trio.open_nursery() as nursery:
        for index, (requests, tokens) in enumerate(costs):
            nursery.start_soon(acquirer, index, requests, tokens)
            # Queued (or granted) before the next one starts: FIFO is testable.
            await trio.testing.wait_all_tasks_blocked()
    return grants


def one(**rate: Any) -> Limits:
    """A registry of one limit named 'api'."""
    return Limits({"api": RateLimit(**rate)})


# The exact expectations, one test per row.


async def test_two_per_second_burst_one(autojump_clock: trio.testing.MockClock) -> None:
    """2 req/s, burst 1: five acquirers at t=0 are granted every 0.5 s."""
    grants = await acquire_in_order(one(requests_per_second=2), [(1, 0)] * 5)
    assert grants == [0.0, 0.5, 1.0, 1.5, 2.0]


async def test_two_per_second_burst_three(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """2 req/s, burst 3: three at once, then the sustained rate."""
    grants = await acquire_in_order(one(requests_per_second=2, burst=3), [(1, 0)] * 6)
    assert grants == [0.0, 0.0, 0.0, 0.5, 1.0, 1.5]


async def test_token_costs(autojump_clock: trio.testing.MockClock) -> None:
    """100 tokens/s, token_burst 100: costs 100, 50, 50, 100 at 0, 0.5, 1.0, 2.0."""
    limits = one(tokens_per_second=100, token_burst=100)
    grants = await acquire_in_order(limits, [(1, 100), (1, 50), (1, 50), (1, 100)])
    assert grants == [0.0, 0.5, 1.0, 2.0]


async def test_fifo_small_request_never_overtakes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Costs 100, 100, 10: the small one waits behind the big one (1.1, not 0.1)."""
    limits = one(tokens_per_second=100, token_burst=100)
    grants = await acquire_in_order(limits, [(1, 100), (1, 100), (1, 10)])
    assert grants == [0.0, 1.0, 1.1]


async def test_retry_after_pauses_the_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Retry-After 5 s reported at t=1.2: the queued waiters resume at 6.2, then 6.7."""

    async def third_gets_a_429(index: int, permit: Permit) -> None:
        if index == 2:
            await trio.sleep(0.2)
            permit.retry_after(5)

    grants = await acquire_in_order(
        one(requests_per_second=2), [(1, 0)] * 5, during=third_gets_a_429
    )
    assert grants == [0.0, 0.5, 1.0, 6.2, 6.7]


async def test_pause_empties_the_burst(autojump_clock: trio.testing.MockClock) -> None:
    """Pause 5 s at t=0.1, burst 3: one request at 5.1, then 0.5 s apart (no herd)."""
    limits = one(requests_per_second=2, burst=3)

    async def pauser() -> None:
        await trio.sleep(0.1)
        assert limits.pause("api", 5) == 5.1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pauser)
        grants = await acquire_in_order(limits, [(1, 0)] * 6)
    assert grants == [0.0, 0.0, 0.0, 5.1, 5.6, 6.1]


async def test_cancelled_head_hands_on(autojump_clock: trio.testing.MockClock) -> None:
    """Acquirer #2 cancelled at t=0.75 takes nothing; #3 is granted at 1.0."""
    grants = await acquire_in_order(
        one(requests_per_second=2), [(1, 0)] * 5, cancel={2: 0.75}
    )
    assert grants == [0.0, 0.5, "cancelled", 1.0, 1.5]


async def test_requests_and_tokens_together(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each grant waits for the later meter, and neither is charged early.

    2 req/s and 100 tokens/s (burst 100): the second request (100 tokens)
    waits for the token meter until 1.0; its request is charged then, not at
    0.5 when the request meter alone would have admitted it, so the third
    (10 tokens) waits for the request meter until 1.5.
    """
    limits = one(requests_per_second=2, tokens_per_second=100, token_burst=100)
    grants = await acquire_in_order(limits, [(1, 100), (1, 100), (1, 10)])
    assert grants == [0.0, 1.0, 1.5]


# Defaults and the per-minute rates.


async def test_requests_per_minute(autojump_clock: trio.testing.MockClock) -> None:
    """120 requests a minute: one every 0.5 s, no start-up burst."""
    grants = await acquire_in_order(one(requests_per_minute=120), [(1, 0)] * 3)
    assert grants == [0.0, 0.5, 1.0]


async def test_token_burst_defaults_to_one_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """6,000 tokens a minute: 100 tokens at once, never the whole minute."""
    limits = one(tokens_per_minute=6000)
    with pytest.raises(ValueError, match=r"token_burst of 100;"):
        limits.limit("api", tokens=101)
    grants = await acquire_in_order(limits, [(0, 100), (0, 100), (0, 50)])
    assert grants == [0.0, 1.0, 1.5]


async def test_both_request_rates_apply(autojump_clock: trio.testing.MockClock) -> None:
    """Per second and per minute together: every meter must conform.

    10/s with burst 2 would admit the third request at 0.1; 60 a minute
    (also burst 2) holds it to 1.0.
    """
    limits = one(requests_per_second=10, requests_per_minute=60, burst=2)
    grants = await acquire_in_order(limits, [(1, 0)] * 4)
    assert grants == [0.0, 0.0, 1.0, 2.0]


# Impossible requests and bad arguments.


async def test_impossible_requests_fail_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A cost above its burst raises ValueError naming limit, cost and burst; nothing taken."""
    limits = one(requests_per_second=2, tokens_per_second=100, token_burst=100)
    with trio.testing.assert_no_checkpoints():
        with pytest.raises(
            ValueError,
            match=r"^limit 'api': a cost of 101 tokens exceeds its token_burst of 100; "
            r"it could never be granted \(raise token_burst or split the request\)$",
        ):
            limits.limit("api", tokens=101)
        with pytest.raises(
            ValueError,
            match=r"^limit 'api': a cost of 2 requests exceeds its burst of 1; ",
        ):
            limits.limit("api", requests=2)
    assert await acquire_in_order(limits, [(1, 100)]) == [0.0]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"requests": -1}, r"^requests must be an int >= 0, got -1$"),
        ({"requests": True}, r"^requests must be an int >= 0, got True$"),
        ({"tokens": -1}, r"^tokens must be a finite number >= 0, got -1$"),
        ({"tokens": math.nan}, r"^tokens must be a finite number >= 0, got nan$"),
    ],
)
async def test_bad_costs(arguments: dict[str, Any], message: str) -> None:
    """Negative, boolean or non-finite costs are refused."""
    with pytest.raises(ValueError, match=message):
        one(requests_per_second=1).limit("api", **arguments)


async def test_unknown_name_lists_the_known_ones() -> None:
    """An unknown name raises KeyError with every known name."""
    limits = Limits(
        {"b": RateLimit(max_concurrency=1), "a": RateLimit(requests_per_second=1)}
    )
    assert limits.names == ("a", "b")
    with pytest.raises(KeyError, match=r"unknown limit 'c'; known limits: 'a', 'b'"):
        limits.limit("c")
    with pytest.raises(KeyError, match=r"unknown limit 'c'; known limits: 'a', 'b'"):
        limits.pause("c", 1)


def test_registry_refuses_non_limits() -> None:
    """Values must be RateLimit models, names non-empty."""
    with pytest.raises(TypeError, match=r"^limit 'x': expected a RateLimit, got dict$"):
        Limits({"x": {"requests_per_second": 1}})  # type: ignore[dict-item]  # on purpose
    with pytest.raises(TypeError, match=r"^limit names are non-empty strings, got ''$"):
        Limits({"": RateLimit(max_concurrency=1)})


# Cancellation and checkpoints.


async def test_cancelled_behind_the_head(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A waiter cancelled behind the head leaves the queue; the rest keep their turn."""
    grants = await acquire_in_order(
        one(requests_per_second=2), [(1, 0)] * 5, cancel={3: 0.25}
    )
    assert grants == [0.0, 0.5, 1.0, "cancelled", 1.5]


async def test_acquire_is_a_checkpoint(autojump_clock: trio.testing.MockClock) -> None:
    """Entering a limit checkpoints even when it does not wait, with or without slots."""
    limits = Limits(
        {
            "rate": RateLimit(requests_per_second=1),
            "slots": RateLimit(max_concurrency=1),
        }
    )
    for name in ("rate", "slots"):
        with trio.testing.assert_checkpoints():
            async with limits.limit(name):
                pass
    assert trio.current_time() == 0


async def test_cancelled_before_entering_takes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An acquisition in an already-cancelled scope raises and takes nothing."""
    limits = one(requests_per_second=1, max_concurrency=1)
    with trio.CancelScope() as scope:
        scope.cancel()
        async with limits.limit("api"):
            pytest.fail("granted in a cancelled scope")  # pragma: no cover
    assert scope.cancelled_caught
    assert await acquire_in_order(limits, [(1, 0)]) == [0.0]


async def test_cancelled_on_the_fast_path_takes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelled at the checkpoint of an immediate grant: the meter is untouched."""
    limits = one(requests_per_second=1)
    with trio.CancelScope() as scope:
        scope.cancel()
        async with limits.limit("api"):
            pytest.fail("granted in a cancelled scope")  # pragma: no cover
    async with limits.limit("api"):
        assert trio.current_time() == 0


# Concurrency slots.


async def test_slots_are_fifo_and_released_on_exit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """max_concurrency 2, each holding 1 s: granted in pairs, in arrival order."""

    async def hold(index: int, permit: Permit) -> None:
        await trio.sleep(1)

    grants = await acquire_in_order(one(max_concurrency=2), [(1, 0)] * 5, during=hold)
    assert grants == [0.0, 0.0, 1.0, 1.0, 2.0]


async def test_slot_released_when_the_body_raises(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An exception out of the body still gives the slot back."""
    limits = one(max_concurrency=1)
    with pytest.raises(RuntimeError, match="boom"):
        async with limits.limit("api"):
            raise RuntimeError("boom")
    with trio.move_on_after(1) as scope:
        async with limits.limit("api"):
            pass
    assert not scope.cancelled_caught


async def test_no_budget_spent_while_waiting_for_a_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The meters are taken only after the slot: a slot wait of 3 s needs no meter wait."""

    async def hold(index: int, permit: Permit) -> None:
        await trio.sleep(3)

    limits = one(requests_per_second=2, max_concurrency=1)
    grants = await acquire_in_order(limits, [(1, 0)] * 3, during=hold)
    assert grants == [0.0, 3.0, 6.0]


async def test_cancelled_while_metering_gives_the_slot_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelled holding a slot but waiting on the meter: the slot and head pass on."""
    grants = await acquire_in_order(
        one(requests_per_second=2, max_concurrency=1), [(1, 0)] * 3, cancel={1: 0.25}
    )
    assert grants == [0.0, "cancelled", 0.5]


async def test_cancelled_while_waiting_for_a_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelled in the slot queue: it never holds one, the next in line does."""

    async def hold(index: int, permit: Permit) -> None:
        await trio.sleep(1)

    grants = await acquire_in_order(
        one(max_concurrency=1), [(1, 0)] * 3, during=hold, cancel={1: 0.5}
    )
    assert grants == [0.0, "cancelled", 1.0]


# Settling.


async def test_settle_refund(autojump_clock: trio.testing.MockClock) -> None:
    """Estimated 100, used 40: the next 100 tokens come at 0.4 instead of 1.0."""

    async def used_40(index: int, permit: Permit) -> None:
        if index == 0:
            permit.settle(tokens=40)
            assert permit.tokens == 40

    limits = one(tokens_per_second=100, token_burst=100)
    grants = await acquire_in_order(limits, [(1, 100), (1, 100)], during=used_40)
    assert grants == [0.0, 0.4]


async def test_settle_debt(autojump_clock: trio.testing.MockClock) -> None:
    """Estimated 50, used 100: the next 100 tokens come at 1.0 instead of 0.5."""

    async def used_100(index: int, permit: Permit) -> None:
        if index == 0:
            permit.settle(tokens=100)

    limits = one(tokens_per_second=100, token_burst=100)
    grants = await acquire_in_order(limits, [(1, 50), (1, 100)], during=used_100)
    assert grants == [0.0, 1.0]


async def test_settle_debt_wakes_the_queued_head(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A debt settled at 0.2 while the next waiter sleeps moves its grant later."""

    async def late_usage(index: int, permit: Permit) -> None:
        if index == 0:
            await trio.sleep(0.2)
            permit.settle(tokens=150)

    limits = one(tokens_per_second=100, token_burst=100)
    grants = await acquire_in_order(limits, [(1, 100), (1, 50)], during=late_usage)
    # 100 taken at 0 (full again at 1.0), 50 more owed: full at 1.5, and the
    # second request of 50 conforms 0.5 s before that.
    assert grants == [0.0, 1.0]


async def test_settle_twice_is_an_error(autojump_clock: trio.testing.MockClock) -> None:
    """A permit settles once; bad token counts are refused."""
    limits = one(tokens_per_second=100)
    async with limits.limit("api", tokens=10) as permit:
        with pytest.raises(ValueError, match=r"^tokens must be a finite number >= 0"):
            permit.settle(tokens=-1)
        permit.settle(tokens=5)
        with pytest.raises(
            RuntimeError, match=r"^the permit of limit 'api' is already settled$"
        ):
            permit.settle(tokens=5)


async def test_unsettled_keeps_the_estimate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Without settle, the estimate is what the meter charged."""
    limits = one(tokens_per_second=100, token_burst=100)
    assert await acquire_in_order(limits, [(1, 60), (1, 100)]) == [0.0, 0.6]


# Pauses.


async def test_shorter_pause_never_shortens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A pause ending earlier than the current one changes nothing."""
    limits = one(requests_per_second=2)
    assert limits.pause("api", 5) == 5
    assert limits.pause("api", 1) == 5
    assert await acquire_in_order(limits, [(1, 0)] * 2) == [5.0, 5.5]


async def test_burst_refills_after_the_resume(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Idle long after a pause, the burst has refilled at the sustained rate."""
    limits = one(requests_per_second=2, burst=3)
    limits.pause("api", 1)
    await trio.sleep(5)
    assert await acquire_in_order(limits, [(1, 0)] * 4) == [5.0, 5.0, 5.0, 5.5]


async def test_pause_empties_the_token_burst(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After a pause the first request goes at the resume instant, then tokens pace.

    The meter is empty after that first grant, so 50 more tokens take 0.5 s
    (not the burst of 100 a full meter would let through at once).
    """
    limits = one(tokens_per_second=100, token_burst=100)
    limits.pause("api", 2)
    assert await acquire_in_order(limits, [(1, 50), (1, 50)]) == [2.0, 2.5]


async def test_bad_pause(autojump_clock: trio.testing.MockClock) -> None:
    """A negative or infinite pause is refused."""
    limits = one(requests_per_second=2)
    for seconds in (-1, math.inf):
        with pytest.raises(ValueError, match=r"^seconds must be a finite number >= 0"):
            limits.pause("api", seconds)


async def test_callbacks_report_waits_and_pauses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """on_wait reports the time queued per grant; on_pause the pause and its end."""
    limits = one(requests_per_second=2, tokens_per_second=1000)
    waits: list[tuple[str, float, int, float]] = []
    pauses: list[tuple[str, float, float]] = []

    def on_wait(name: str, waited: float, requests: int, tokens: float) -> None:
        waits.append((name, round(waited, 9), requests, tokens))

    def on_pause(name: str, seconds: float, until: float) -> None:
        pauses.append((name, seconds, until))

    for _ in range(2):
        async with limits.limit(
            "api", tokens=7, on_wait=on_wait, on_pause=on_pause
        ) as permit:
            assert (permit.name, permit.requests, permit.tokens) == ("api", 1, 7)
    permit.retry_after(3)
    assert waits == [("api", 0.0, 1, 7), ("api", 0.5, 1, 7)]
    assert pauses == [("api", 3, 3.5)]
    assert permit.waited_s == 0.5


def test_each_trio_run_starts_afresh() -> None:
    """Meters live per trio run: a second trio.run is not throttled by the first."""
    limits = one(requests_per_second=1)

    async def twice() -> list[Grant]:
        return await acquire_in_order(limits, [(1, 0)] * 2)

    clock = trio.testing.MockClock(autojump_threshold=0)
    assert trio.run(twice, clock=clock) == [0.0, 1.0]
    clock = trio.testing.MockClock(autojump_threshold=0)
    assert trio.run(twice, clock=clock) == [0.0, 1.0]


# The declaration.


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "a RateLimit needs at least one of requests_per_second"),
        ({"requests_per_second": 0}, "greater than 0"),
        ({"requests_per_minute": -5}, "greater than 0"),
        ({"tokens_per_second": math.inf}, "finite number"),
        ({"tokens_per_minute": math.nan}, "finite number"),
        ({"max_concurrency": 0}, "greater than 0"),
        ({"max_concurrency": 1.5}, "valid integer"),
        ({"requests_per_second": 1, "burst": 0.5}, "burst must be at least 1 request"),
        ({"requests_per_second": "fast"}, "valid number"),
        ({"requests_per_second": True}, "expected a number, got a bool"),
        ({"tokens_per_second": 1, "burst": 2}, "burst applies to a request rate"),
        (
            {"requests_per_second": 1, "token_burst": 2},
            "token_burst applies to a token",
        ),
        ({"requests_per_second": 1, "rpm": 2}, "Extra inputs are not permitted"),
        (
            {"requests_per_second": 1, "backend": "redis://x"},
            "backend must be a shared",
        ),
    ],
)
def test_rate_limit_validation(fields: dict[str, Any], message: str) -> None:
    """Every bad setting is a pydantic ValidationError that says what is wrong."""
    with pytest.raises(pydantic.ValidationError, match=message):
        RateLimit(**fields)


def test_rate_limit_is_frozen() -> None:
    """A RateLimit cannot change once made."""
    rate = RateLimit(requests_per_minute=500, tokens_per_minute=200_000)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        rate.burst = 3  # refused at run time


# RateLimited and Retry-After.


class _Response:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


class _HTTPError(Exception):
    def __init__(self, headers: dict[str, str] | None) -> None:
        super().__init__("429")
        if headers is not None:
            self.response = _Response(headers)


def test_rate_limited() -> None:
    """RateLimited carries the provider's wait, finite and non-negative."""
    assert RateLimited("429", retry_after_s=12.0).retry_after_s == 12.0
    assert RateLimited("429").retry_after_s is None
    with pytest.raises(ValueError, match=r"^retry_after_s must be a finite number"):
        RateLimited("429", retry_after_s=-1)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "12"}, 12.0),
        ({"Retry-After": "0.5"}, 0.5),
        ({"retry-after": "Fri, 04 Dec 2026 18:00:30 GMT"}, 30.0),
        ({"retry-after": "Fri, 04 Dec 2026 17:59:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-3"}, None),
        ({"retry-after-ms": "inf"}, None),
        ({"content-type": "application/json"}, None),
        (None, None),
    ],
)
def test_retry_after_headers(
    monkeypatch: pytest.MonkeyPatch,
    headers: dict[str, str] | None,
    seconds: float | None,
) -> None:
    """retry-after-ms first, then retry-after as seconds or an HTTP date."""
    noon = email.utils.parsedate_to_datetime("Fri, 04 Dec 2026 18:00:00 GMT")
    monkeypatch.setattr(time, "time", noon.timestamp)
    assert retry_after(_HTTPError(headers)) == seconds


def test_retry_after_of_rate_limited() -> None:
    """A RateLimited answers its own retry_after_s."""
    assert retry_after(RateLimited(retry_after_s=3.0)) == 3.0
    assert retry_after(ValueError("no response")) is None


async def test_rate_limited_out_of_the_block_pauses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A RateLimited with a Retry-After raised out of the block pauses the limit."""
    limits = one(requests_per_second=2)
    pauses: list[tuple[str, float, float]] = []

    def on_pause(name: str, seconds: float, until: float) -> None:
        pauses.append((name, seconds, until))

    with pytest.raises(RateLimited):
        async with limits.limit("api", on_pause=on_pause):
            raise RateLimited("429", retry_after_s=4.0)
    with pytest.raises(RateLimited):
        async with limits.limit("api", on_pause=on_pause):
            raise RateLimited("429 without a Retry-After")
    assert trio.current_time() == 4.0  # granted once the pause ended
    assert pauses == [("api", 4.0, 4.0)]
    assert await acquire_in_order(limits, [(1, 0)] * 2) == [4.5, 5.0]


async def test_a_failing_on_wait_gives_the_slot_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """If on_wait raises, the acquisition fails and its slot is released."""
    limits = one(max_concurrency=1)

    def broken(name: str, waited: float, requests: int, tokens: float) -> None:
        raise RuntimeError("broken hook")

    with pytest.raises(RuntimeError, match="broken hook"):
        async with limits.limit("api", on_wait=broken):
            pytest.fail("entered")  # pragma: no cover
    with trio.move_on_after(1) as scope:
        async with limits.limit("api"):
            pass
    assert not scope.cancelled_caught

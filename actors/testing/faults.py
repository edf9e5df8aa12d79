"""Faults to inject into a test run: cancellations and interrupts at virtual times.

Pass them to :func:`actors.testing.run` (or ``arun``) as ``faults=[...]``;
times are virtual seconds since the run started.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio

from .._observers import Observer


class InjectedInterrupt(KeyboardInterrupt):
    """The KeyboardInterrupt raised by :func:`interrupt_at`.

    A subclass, so the runner catches it and never a real Ctrl-C.
    """


@dataclass(frozen=True, slots=True)
class CancelAt:
    """Cancel the caller's scope at ``at``: ``execute`` raises ``trio.Cancelled``."""

    at: float


@dataclass(frozen=True, slots=True)
class CancelTokenAt:
    """Set the context's ``cancel_token`` at ``at``: the run ends cancelled."""

    at: float


@dataclass(frozen=True, slots=True)
class InterruptAt:
    """Raise KeyboardInterrupt in the attempt of ``stage`` running at ``at``.

    The attempt is cancelled at ``at`` (or as it starts, if it starts later),
    and once it has unwound, KeyboardInterrupt replaces its Cancelled: what
    a Ctrl-C delivered inside that stage looks like to the executor.
    """

    stage: str
    at: float


class Interrupter(Observer):
    """The attempt hook playing an :class:`InterruptAt` in a run started at *start*."""

    __slots__ = ("_deadline", "_fault")

    def __init__(self, fault: InterruptAt, start: float) -> None:
        self._fault = fault
        self._deadline = start + fault.at

    def around_attempt(
        self,
        *,
        run_id: str,
        pipeline: str,
        stage_id: str,
        item_index: int | None,
        attempt: int,
    ) -> Any:
        """Arm the interrupt in the attempts of the fault's stage."""
        return _Interrupt(
            self._fault, self._deadline, armed=stage_id == self._fault.stage
        )


class _Interrupt:
    __slots__ = ("_armed", "_deadline", "_fault", "_scope")

    def __init__(self, fault: InterruptAt, deadline: float, *, armed: bool) -> None:
        self._fault = fault
        self._deadline = deadline
        self._armed = armed
        self._scope: trio.CancelScope | None = None

    def __enter__(self) -> None:
        if self._armed:
            self._scope = trio.CancelScope(deadline=self._deadline)
            self._scope.__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        scope = self._scope
        if scope is None:
            return
        scope.__exit__(*exc_info)
        if scope.cancelled_caught:
            raise InjectedInterrupt(
                f"interrupt_at({self._fault.stage!r}, {self._fault.at:g})"
            )


Fault = CancelAt | CancelTokenAt | InterruptAt
"""Any fault of this module."""


def cancel_at(t: float) -> CancelAt:
    """Cancel the run's caller at *t*, as a surrounding ``move_on_after`` would."""
    return CancelAt(t)


def cancel_token_at(t: float) -> CancelTokenAt:
    """Set the context's cancel token at *t* (the runner provides a token)."""
    return CancelTokenAt(t)


def interrupt_at(stage: str, t: float) -> InterruptAt:
    """Deliver KeyboardInterrupt inside *stage*'s attempt running at *t*."""
    return InterruptAt(stage, t)

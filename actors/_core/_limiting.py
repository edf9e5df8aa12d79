"""The kernel's side of named limits: stage acquisitions, events, throttle time.

A stage's ``rate_limit=`` is taken by the attempt loop around each call of
the stage body; ``ctx.limit(...)`` in stage code finds its stage through a
context variable the actor sets (trio copies it into fan-out item tasks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._context import current_limiter
from .._events import LimitPaused, LimitWaited

if TYPE_CHECKING:
    from .._graph import Graph, Node
    from .._limits import Limits, Permit
    from .._limits._registry import _Acquire
    from ._state import RunState, StageState


class StageLimits:
    """One stage's view of its run's limits: acquisitions report to it.

    Called as ``ctx.limit`` (through :data:`current_limiter`), it returns the
    limit's async context manager, whose waits add to the stage's
    ``throttle_ms`` and emit ``limit_waited``, and whose pauses emit
    ``limit_paused``.
    """

    __slots__ = ("node", "run", "state")

    def __init__(self, run: RunState, node: Node, state: StageState) -> None:
        self.run = run
        self.node = node
        self.state = state

    def __call__(self, name: str, requests: int, tokens: float) -> _Acquire:
        limits = self.run.limits
        assert limits is not None  # set only for runs with limits
        return limits.limit(
            name,
            requests=requests,
            tokens=tokens,
            on_wait=self.waited,
            on_pause=self.paused,
        )

    def waited(
        self,
        name: str,
        waited_s: float,
        requests: int,
        tokens: float,
        item: int | None = None,
    ) -> None:
        """Add a grant's queueing time to the profile; emit ``limit_waited``."""
        state, run = self.state, self.run
        state.throttle_ms = (state.throttle_ms or 0.0) + waited_s * 1000
        if run.dispatch.limit_waited:
            event = LimitWaited(
                run_id=run.run_id,
                pipeline=run.graph.name,
                stage_id=self.node.id,
                limit=name,
                waited_ms=round(waited_s * 1000, 6),
                requests=requests,
                tokens=tokens,
                at_ms=run.now_ms(),
                item_index=item,
            )
            run.dispatch.emit("limit_waited", event)

    def paused(self, name: str, seconds: float, until: float) -> None:
        """Emit ``limit_paused``: the limit admits nothing until *until*."""
        run = self.run
        if run.dispatch.limit_paused:
            event = LimitPaused(
                run_id=run.run_id,
                pipeline=run.graph.name,
                stage_id=self.node.id,
                limit=name,
                pause_ms=round(seconds * 1000, 6),
                until_ms=round((until - run.start) * 1000, 6),
                at_ms=run.now_ms(),
            )
            run.dispatch.emit("limit_paused", event)


def enter_stage(run: RunState, node: Node, state: StageState) -> None:
    """Let ``ctx.limit`` in this task (and its children) reach the run's limits.

    A run without limits clears what a stage of an enclosing run may have
    set: a nested run never takes its host's limits.
    """
    if run.limits is not None:
        current_limiter.set(StageLimits(run, node, state))
    elif current_limiter.get() is not None:
        current_limiter.set(None)


async def acquire_for(
    run: RunState, node: Node, state: StageState, value: Any, item: int | None
) -> _Acquire:
    """Take the stage's ``rate_limit`` for one attempt; return what to release.

    One request, and ``cost`` tokens (a static count, or ``cost(value)``).
    A checkpoint; cancelled while queued, it takes nothing. A cost function
    that raises, or a cost above the limit's burst, raises here (the attempt
    fails with it).
    """
    limits = run.limits
    name = node.definition.rate_limit
    assert limits is not None  # checked by execute
    assert name is not None
    cost = node.definition.cost
    tokens = 0 if cost is None else cost(value) if callable(cost) else cost
    # The actor's own (set by enter_stage), unless this runs elsewhere.
    hooks = current_limiter.get()
    if not isinstance(hooks, StageLimits) or hooks.state is not state:
        hooks = StageLimits(run, node, state)
    acquisition = limits.limit(name, tokens=tokens, on_pause=hooks.paused)
    permit: Permit = await acquisition.__aenter__()
    hooks.waited(name, permit.waited_s, permit.requests, permit.tokens, item)
    return acquisition


def pushed_back(
    run: RunState, node: Node, state: StageState, retry_after_s: float | None
) -> None:
    """A stage raised RateLimited: pause its ``rate_limit`` for the Retry-After."""
    name = node.definition.rate_limit
    limits = run.limits
    if retry_after_s is None or name is None or limits is None:
        return
    limits.pause(name, retry_after_s, on_pause=StageLimits(run, node, state).paused)


def check_limits(graph: Graph, limits: Limits) -> list[str]:
    """Return what is wrong with the stages' ``rate_limit=`` for *limits*."""
    errors: list[str] = []
    known = ""
    for node in graph.nodes:
        name = node.definition.rate_limit
        if name is None:
            continue
        where = f"stage {node.id!r}"
        if name not in limits:
            known = known or ", ".join(repr(n) for n in limits.names) or "none"
            errors.append(
                f"{where}: rate_limit names unknown limit {name!r}; "
                f"known limits: {known} (declare it in PipelineExecutor(limits=...))"
            )
            continue
        cost = node.definition.cost
        if isinstance(cost, int):
            problem = limits.impossible(name, 1, cost)
            if problem is not None:
                errors.append(f"{where}: cost {cost}: {problem}")
    return errors

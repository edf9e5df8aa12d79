"""The context every stage receives: injected dependencies, state, metrics."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic

import trio
from typing_extensions import TypeVar

if TYPE_CHECKING:
    from ._limits import Permit
    from ._results import StageResult

DepsT = TypeVar("DepsT", default=None)

current_limiter: ContextVar[
    Callable[[str, int, float], AbstractAsyncContextManager[Permit]] | None
] = ContextVar("actors_current_limiter", default=None)
"""Set by the kernel in each stage's task: how ``ctx.limit`` reaches its run."""
EFFECTS: ContextVar[list[tuple[str, str, Any]] | None] = ContextVar(
    "actors_effects", default=None
)
"""The set_state and metric calls of the unit running in this task, if journaled.

A durable run sets it around each stage (and fan-out item) so its calls can
be replayed when the unit is restored; tasks the stage starts inherit it.
"""

ResultLookup = Callable[[str], "StageResult[Any] | None"]

# The run whose tasks read it: its context and how to look its results up.
# A context variable, not a field, so that two runs sharing one context
# (an executor may run several at once) each see their own results; trio
# copies it into every task the run starts.
stream_cursor: ContextVar[int] = ContextVar("actors_stream_cursor", default=0)
"""Set by the kernel in a streaming stage's task before each attempt."""

current_emitter: ContextVar[Callable[[Any], None] | None] = ContextVar(
    "actors_current_emitter", default=None
)
"""Set by the kernel in a stage's task of a run with taps: where ``ctx.emit`` goes."""

current_run: ContextVar[tuple[PipelineContext[Any], ResultLookup] | None] = ContextVar(
    "actors_current_run", default=None
)


@dataclass(eq=False)
class PipelineContext(Generic[DepsT]):
    """What every stage of a run receives next to its input.

    All fields are optional. The named slots keep the original framework's
    names; ``deps`` is a typed slot for your own dependencies
    (``PipelineContext[MyDeps](deps=MyDeps(...))``).

    ``state`` and ``metrics`` are plain dicts shared by all stages of the run;
    trio runs one task at a time, so updating them needs no lock. The
    executor copies ``metrics`` into :attr:`PipelineResult.metadata`.
    """

    provider: Any = None
    """An LLM provider or any other client the stages share."""
    app_config: Any = None
    """Application configuration."""
    job_config: Any = None
    """Per-job configuration."""
    llm_logger: Any = None
    """A logger for LLM calls."""
    checkpoint_dir: Path | None = None
    """Where stages may write checkpoints; with no other store, the executor
    journals the run in a :class:`~actors.checkpoint.FileStore` here."""
    output_dir: Path | None = None
    """Where stages may write their outputs."""
    state: dict[str, Any] = field(default_factory=dict)
    """Mutable state shared between stages (see :meth:`set_state`)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Numbers the stages report (see :meth:`add_metric`)."""
    cancel_token: trio.Event | None = None
    """Set it to cancel the run: running stages are cancelled, nothing new starts."""
    # The default None is only right for the default DepsT (None); mypy cannot
    # tie the two together in a dataclass field.
    deps: DepsT = None  # type: ignore[assignment]
    """Your own dependencies, typed by ``PipelineContext[DepsT]``."""
    _cancel_reason: str = field(default="cancel token set", init=False, repr=False)
    _token_watchers: list[Callable[[trio.Event | None], None]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def set_state(self, key: str, value: Any) -> None:
        """Store *value* under *key* for later stages (and conditions) to read.

        In a durable run the call is journaled with the stage's result and
        replayed when the stage is restored (*value* must then be JSON).
        """
        self.state[key] = value
        effects = EFFECTS.get()
        if effects is not None:
            effects.append(("set_state", key, value))

    def get_state(self, key: str, default: Any = None) -> Any:
        """Return the state stored under *key*, or *default*."""
        return self.state.get(key, default)

    def add_metric(self, key: str, value: Any) -> None:
        """Set the metric *key* to *value* (journaled like :meth:`set_state`)."""
        self.metrics[key] = value
        effects = EFFECTS.get()
        if effects is not None:
            effects.append(("add_metric", key, value))

    def increment_metric(self, key: str, delta: float = 1) -> None:
        """Add *delta* to the metric *key* (starting from 0; journaled likewise)."""
        self.metrics[key] = self.metrics.get(key, 0) + delta
        effects = EFFECTS.get()
        if effects is not None:
            effects.append(("increment_metric", key, delta))

    def limit(
        self, name: str, *, requests: int = 1, tokens: float = 0
    ) -> AbstractAsyncContextManager[Permit]:
        """Take *requests* and *tokens* from the executor's limit *name*.

        Use it as ``async with ctx.limit("openai", tokens=estimate) as
        permit:`` around one provider call, then ``permit.settle(tokens=...)``
        with the real usage. Entering waits, in FIFO order, for a
        concurrency slot and then for every meter, and takes them all at
        once; it is always a checkpoint, and cancelled while queued it takes
        nothing. Exiting gives the slot back; a :class:`RateLimited` raised
        out of the block with a ``retry_after_s`` pauses the limit. The wait
        counts in the stage's ``throttle_ms``, not in its timeout.

        Raises:
            KeyError: *name* is not one of the executor's limits (or this is
                not a stage run by a :class:`PipelineExecutor`).
            ValueError: A cost is negative or above its burst.
        """
        limiter = current_limiter.get()
        if limiter is None:
            raise KeyError(
                f"unknown limit {name!r}; known limits: none (declare them with "
                "PipelineExecutor(limits=...); ctx.limit works inside its stages)"
            )
        return limiter(name, requests, tokens)

    @property
    def stream_cursor(self) -> int:
        """In a streaming stage: how many items earlier attempts delivered.

        0 on the first attempt. A retry restarts the generator; one declared
        ``resumable=True`` should start at this item itself, any other has
        its first ``stream_cursor`` items discarded (see the streaming docs).
        """
        return stream_cursor.get()

    def emit(self, value: Any) -> None:
        """Publish *value* as progress of the running stage (tokens, a percentage).

        The caller of :meth:`PipelineExecutor.open_run` reads it through
        ``run.progress()``; a reader that falls behind loses the oldest values,
        so this never blocks and is not a checkpoint. Call it from the
        stage's task or a thread it started with ``trio.to_thread``. Outside
        a run opened with ``open_run`` (or outside a stage) it does nothing.
        """
        emitter = current_emitter.get()
        if emitter is not None:
            emitter(value)

    def upstream_result(self, stage_id: str) -> StageResult[Any] | None:
        """Return the result of stage *stage_id* of the running run, if it has one.

        For a stage that wants more than its input, e.g. which positions of
        an upstream ``item_failures="collect"`` fan-out failed
        (``result.item_errors``). Returns ``None`` for a stage that has not
        finished yet (or is unknown), and outside a run of this context.
        Not a checkpoint; call it from the stage's task (or any task or
        thread it starts).
        """
        current = current_run.get()
        if current is None or current[0] is not self:
            return None
        return current[1](stage_id)

    def is_cancelled(self) -> bool:
        """Return True once the ``cancel_token`` has been set."""
        return self.cancel_token is not None and self.cancel_token.is_set()

    def cancel(self, reason: str = "cancel token set") -> None:
        """Set the ``cancel_token`` (creating one if there is none).

        The runs using this context are cancelled, and their cancelled stages
        say ``cancelled: <reason>``. Does not checkpoint; safe to call from a
        stage, a condition or another task of the same trio run.
        """
        if self.cancel_token is None:
            self.cancel_token = trio.Event()
        if not self.cancel_token.is_set():
            self._cancel_reason = reason
            self.cancel_token.set()

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "cancel_token":
            # A token assigned while runs use this context is watched too.
            for watch in self.__dict__.get("_token_watchers", ()):
                watch(value)

"""The context every stage receives: injected dependencies, state, metrics."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic

import trio
from typing_extensions import TypeVar

if TYPE_CHECKING:
    from ._results import StageResult

DepsT = TypeVar("DepsT", default=None)

ResultLookup = Callable[[str], "StageResult[Any] | None"]

# The run whose tasks read it: its context and how to look its results up.
# A context variable, not a field, so that two runs sharing one context
# (an executor may run several at once) each see their own results; trio
# copies it into every task the run starts.
stream_cursor: ContextVar[int] = ContextVar("actors_stream_cursor", default=0)
"""Set by the kernel in a streaming stage's task before each attempt."""

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
    """Where stages may write checkpoints."""
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

    def set_state(self, key: str, value: Any) -> None:
        """Store *value* under *key* for later stages (and conditions) to read."""
        self.state[key] = value

    def get_state(self, key: str, default: Any = None) -> Any:
        """Return the state stored under *key*, or *default*."""
        return self.state.get(key, default)

    def add_metric(self, key: str, value: Any) -> None:
        """Set the metric *key* to *value*."""
        self.metrics[key] = value

    def increment_metric(self, key: str, delta: float = 1) -> None:
        """Add *delta* to the metric *key* (starting from 0)."""
        self.metrics[key] = self.metrics.get(key, 0) + delta

    @property
    def stream_cursor(self) -> int:
        """In a streaming stage: how many items earlier attempts delivered.

        0 on the first attempt. A retry restarts the generator; one declared
        ``resumable=True`` should start at this item itself, any other has
        its first ``stream_cursor`` items discarded (see the streaming docs).
        """
        return stream_cursor.get()

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

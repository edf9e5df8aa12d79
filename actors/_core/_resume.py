"""Durable runs in the kernel: consult and record the store around each unit.

A *unit* is a stage, or one item of a fan-out stage. Before a unit runs, its
key is computed (``_checkpoint._keys``); a success with that key journaled by
the resumed run (or, for ``cache=True`` stages, by any run in the store) is
restored instead of running the body: its output is decoded by the stage's
declared type and its ``set_state`` and metric calls are replayed. A unit
that runs and succeeds is journaled through the recorder, which writes off
the event loop. Store problems never fail the run; they are events.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._checkpoint import Entry, FileStore, JournalContents, Store
from .._checkpoint._codec import declared_type, decode, encode
from .._checkpoint._keys import KeyParts, UndigestableError, code_fingerprint, stage_key
from .._checkpoint._recorder import Recorder, call_store, open_recorder
from .._context import EFFECTS
from .._events import (
    CheckpointCorrupt,
    CheckpointFailed,
    CheckpointSkipped,
    StageRestored,
)
from .._exceptions import UnencodableOutputError, UnknownRunError
from .._results import StageStatus
from .._util import describe
from ._attempts import Outcome, attempts

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .._context import PipelineContext
    from .._graph import Node
    from .._results import PipelineResult
    from ._state import RunState, StageState

Effects = list[tuple[str, str, Any]]


def choose_store(
    executor_store: Store | None,
    store: Store | None,
    resume: str | None,
    context: PipelineContext[Any],
) -> Store | None:
    """Return the run's store: execute's, else the executor's, else checkpoint_dir's.

    Raises:
        ValueError: *resume* is given but no store is configured.
    """
    chosen = store if store is not None else executor_store
    if chosen is None and context.checkpoint_dir is not None:
        chosen = FileStore(context.checkpoint_dir)
    if resume is not None and chosen is None:
        raise ValueError(
            f"resume={resume!r} needs a store: pass store= to execute() or to "
            "PipelineExecutor(), or set context.checkpoint_dir"
        )
    return chosen


async def read_resumed(store: Store, resume: str, pipeline: str) -> JournalContents:
    """Return the journal of the run to resume (a run id, or ``"latest"``).

    Reads in a worker thread; this is a checkpoint.

    Raises:
        UnknownRunError: the store holds no readable run by that id (or no run
            of *pipeline*, for ``"latest"``), or its journal cannot be read.
    """

    def read() -> JournalContents:
        if resume == "latest":
            return store.read_journal(store.latest_run(pipeline).run_id)
        return store.read_journal(resume)

    if not isinstance(resume, str):
        raise UnknownRunError(f"resume must be a run id or 'latest', got {resume!r}")
    try:
        return await call_store(store, read)
    except UnknownRunError:
        raise
    except Exception as exc:
        raise UnknownRunError(
            f"run {resume!r} cannot be read from {store!r}: {describe(exc)}"
        ) from exc


async def run_recorded(
    run: RunState,
    store: Store,
    resumed: JournalContents | None,
    body: Callable[[], Awaitable[PipelineResult]],
) -> PipelineResult:
    """Run *body* (the supervisor) with the run journaled in *store*.

    Every journaled unit is written before this returns (see
    ``open_recorder`` for cancellation).
    """
    async with _open_durable(run, store, resumed) as durable:
        result = await body()
        durable.recorder.set_status(result.status.value, durable.stats())
    return result


@asynccontextmanager
async def _open_durable(
    run: RunState, store: Store, resumed: JournalContents | None
) -> AsyncIterator[Durable]:
    def report(operation: str, exc: Exception) -> None:
        if run.dispatch.checkpoint_failed:
            event = CheckpointFailed(
                run_id=run.run_id,
                pipeline=run.graph.name,
                operation=operation,
                error=describe(exc),
                at_ms=run.now_ms(),
            )
            run.dispatch.emit("checkpoint_failed", event)

    async with open_recorder(
        store,
        run_id=run.run_id,
        pipeline=run.graph.name,
        report=report,
        resumed_from=None if resumed is None else resumed.run.run_id,
    ) as recorder:
        durable = Durable(run, store, resumed, recorder)
        run.durable = durable
        try:
            yield durable
        finally:
            run.durable = None


@dataclass(eq=False, slots=True)
class _Plan:
    """What a stage's units need for their keys and their outputs."""

    code: str
    declared: Any
    cache: bool


class Durable:
    """One durable run: the resumed journal, the recorder, the counts.

    Installed on :class:`RunState` as ``durable`` while the run lasts; the
    actor and the fan-out call :meth:`stage` and :meth:`item` in place of
    ``attempts``.
    """

    __slots__ = (
        "_damaged",
        "_items_restored",
        "_plans",
        "entries",
        "ran",
        "recorder",
        "restored",
        "resumed_id",
        "run",
        "store",
    )

    def __init__(
        self,
        run: RunState,
        store: Store,
        resumed: JournalContents | None,
        recorder: Recorder,
    ) -> None:
        self.run = run
        self.store = store
        self.recorder = recorder
        self.resumed_id = None if resumed is None else resumed.run.run_id
        self.entries: dict[str, Entry] = (
            {} if resumed is None else {e.key: e for e in resumed.entries}
        )
        self._plans: dict[int, _Plan | None] = {}
        self._items_restored: dict[int, tuple[int, str]] = {}
        self.restored = 0
        self.ran = 0
        # Reported when the first unit asks, so after pipeline_started.
        self._damaged = None
        if resumed is not None and resumed.corrupt:
            self._damaged = (
                f"{resumed.corrupt} damaged record(s) in the journal of run "
                f"{resumed.run.run_id!r} were ignored"
            )

    def stats(self) -> dict[str, int]:
        """Return the run's unit counts: restored and ran."""
        return {"restored": self.restored, "ran": self.ran}

    def _plan(self, node: Node) -> _Plan | None:
        try:
            return self._plans[node.index]
        except KeyError:
            pass
        definition = node.definition
        plan = None
        if definition.checkpoint:
            plan = _Plan(
                code_fingerprint(definition.stage),
                declared_type(definition.stage, definition.output_type),
                definition.cache,
            )
        self._plans[node.index] = plan
        return plan

    async def stage(self, node: Node, state: StageState, value: Any) -> Outcome:
        """Restore the stage, or run its attempts and journal a success."""
        return await self._unit(node, state, value, None)

    async def item(
        self, node: Node, state: StageState, value: Any, index: int
    ) -> Outcome:
        """Restore one fan-out item, or run its attempts and journal a success."""
        return await self._unit(node, state, value, index)

    def fan_out_done(self, node: Node, outcome: Outcome, count: int) -> None:
        """After a fan-out: report restored items; a wholly restored stage says so."""
        restored, source = self._items_restored.pop(node.index, (0, ""))
        if not restored:
            return
        if restored == count and outcome.ok:
            outcome.restored_from = source
        self._emit_restored(node, source, restored, count)

    async def _unit(
        self, node: Node, state: StageState, value: Any, index: int | None
    ) -> Outcome:
        if self._damaged is not None:
            self.corrupt(None, self._damaged)
            self._damaged = None
        plan = self._plan(node)
        parts = None
        if plan is not None:
            definition = node.definition
            try:
                parts = stage_key(
                    self.run.graph.name,
                    node.id,
                    definition.version,
                    plan.code,
                    value,
                    item=index is not None,
                )
            except UndigestableError as exc:
                self._skipped(node, index, f"its input cannot be digested: {exc}")
            else:
                restored = await self._restore(node, plan, parts, index)
                if restored is not None:
                    return restored
        self.ran += 1
        effects: Effects = []
        token = EFFECTS.set(effects)
        try:
            outcome = await attempts(self.run, node, state, value, index)
        finally:
            EFFECTS.reset(token)
        if outcome.ok and parts is not None and plan is not None:
            self._record(
                node,
                plan=plan,
                parts=parts,
                outcome=outcome,
                effects=effects,
                index=index,
            )
        return outcome

    async def _restore(
        self, node: Node, plan: _Plan, parts: KeyParts, index: int | None
    ) -> Outcome | None:
        key = parts.key
        entry = self.entries.get(key)
        if entry is None and plan.cache:
            try:
                entry = await call_store(self.store, lambda: self.store.find(key))
            except Exception as exc:  # a failing store is a miss, never an error
                self.recorder._fail("find", exc)
                entry = None
        if entry is None:
            return None
        try:
            output = decode(entry.output, plan.declared)
        except ValueError as exc:
            self.corrupt(node.id, f"stored output of run {entry.run_id!r}: {exc}")
            return None
        _replay(self.run.context, entry.effects)
        self.restored += 1
        # Journaled again under this run, so resuming this run restores it too.
        source = entry.origin or entry.run_id
        self.recorder.record(
            Entry(
                self.run.run_id,
                parts,
                entry.output,
                entry.effects,
                time.time(),
                origin=source,
            )
        )
        now = self.run.clock.current_time()
        outcome = Outcome(True, output=output, begin=now, end=now)
        outcome.restored_from = source
        if index is None:
            self._emit_restored(node, source, None, None)
        else:
            count, _ = self._items_restored.get(node.index, (0, ""))
            self._items_restored[node.index] = (count + 1, source)
        return outcome

    def _record(
        self,
        node: Node,
        *,
        plan: _Plan,
        parts: KeyParts,
        outcome: Outcome,
        effects: Effects,
        index: int | None,
    ) -> None:
        returned = outcome.returned
        if returned is not None and returned.status is not StageStatus.SUCCEEDED:
            return  # a stage that reported itself skipped decides that again
        output = outcome.output
        try:
            text = encode(output, plan.declared)
            for _, _, effect in effects:
                encode(effect)
        except UnencodableOutputError as exc:
            self._skipped(node, index, str(exc))
            return
        self.recorder.record(
            Entry(self.run.run_id, parts, text, tuple(effects), time.time())
        )

    def _skipped(self, node: Node, index: int | None, reason: str) -> None:
        run = self.run
        if run.dispatch.checkpoint_skipped:
            event = CheckpointSkipped(
                run_id=run.run_id,
                pipeline=run.graph.name,
                stage_id=node.id,
                reason=reason,
                at_ms=run.now_ms(),
                item_index=index,
            )
            run.dispatch.emit("checkpoint_skipped", event)

    def corrupt(self, stage_id: str | None, reason: str) -> None:
        """Report stored records that could not be used."""
        run = self.run
        if run.dispatch.checkpoint_corrupt:
            event = CheckpointCorrupt(
                run_id=run.run_id,
                pipeline=run.graph.name,
                stage_id=stage_id,
                reason=reason,
                at_ms=run.now_ms(),
            )
            run.dispatch.emit("checkpoint_corrupt", event)

    def _emit_restored(
        self, node: Node, source: str, items: int | None, total: int | None
    ) -> None:
        run = self.run
        if run.dispatch.stage_restored:
            event = StageRestored(
                run_id=run.run_id,
                pipeline=run.graph.name,
                stage_id=node.id,
                restored_from=source,
                at_ms=run.now_ms(),
                items=items,
                total=total,
            )
            run.dispatch.emit("stage_restored", event)


def _replay(
    context: PipelineContext[Any], effects: tuple[tuple[str, str, Any], ...]
) -> None:
    """Apply a restored unit's context calls again, without journaling them twice."""
    for op, key, value in effects:
        if op == "set_state":
            context.state[key] = value
        elif op == "add_metric":
            context.metrics[key] = value
        else:
            # Checked numeric when read; a metric the run itself set to
            # something else would have failed the original call too.
            with contextlib.suppress(TypeError):
                context.metrics[key] = context.metrics.get(key, 0) + value

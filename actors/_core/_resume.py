"""Durable runs in the kernel: consult and record the store around each unit.

A *unit* is a stage, one item of a fan-out stage, or one produced item (or
the end) of a streaming stage. Before a unit runs, its
key is computed (``_checkpoint._keys``); a success with that key journaled by
the resumed run (or, for ``cache=True`` stages, by any run in the store) is
restored instead of running the body: its output is decoded by the stage's
declared type and its ``set_state`` and metric calls are replayed. A unit
that runs and succeeds is journaled through the recorder, which writes off
the event loop. Store problems never fail the run; they are events.

A streaming stage is journaled item by item (:class:`StreamJournal`): a
resumed run feeds the items journaled before to its consumers first, then
restarts the generator at ``stream_cursor`` (or not at all, if the stream's
end was journaled).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._checkpoint import Entry, FileStore, JournalContents, Store
from .._checkpoint._codec import declared_item_type, declared_type, decode, encode
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
    """The output's declared type; for a streaming stage, each item's."""
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
            declare = declared_item_type if node.generator else declared_type
            plan = _Plan(
                code_fingerprint(definition.stage),
                declare(definition.stage, definition.output_type),
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

    async def stream(
        self,
        node: Node,
        state: StageState,
        value: Any,
        produce: Callable[[StreamJournal | None], Awaitable[Outcome]],
    ) -> Outcome:
        """Run a streaming stage through *produce*, journaled item by item.

        Items the resumed run journaled (a prefix of the stream, with a key
        that still matches) are restored and handed to *produce* to deliver
        first; the stream's end, if journaled, means the generator is not
        called at all. Each new item is journaled as it is produced, and the
        end once the stream succeeds. Cancellation propagates (what was
        journaled stays journaled).
        """
        self._report_damaged()
        journal = await self._open_stream(node, value)
        if journal is None:
            self.ran += 1
            return await produce(None)
        token = EFFECTS.set(journal.effects)
        try:
            outcome = await produce(journal)
        finally:
            EFFECTS.reset(token)
        journal.ended(outcome, state.items or 0)
        return outcome

    async def _open_stream(self, node: Node, value: Any) -> StreamJournal | None:
        """Return the stream's journal, with what the resumed run journaled of it.

        ``None`` when the stage is not checkpointed or its input has no key.
        """
        plan = self._plan(node)
        if plan is None:
            return None
        definition = node.definition
        try:
            parts = stage_key(
                self.run.graph.name, node.id, definition.version, plan.code, value
            )
        except UndigestableError as exc:
            self._skipped(node, None, f"its input cannot be digested: {exc}")
            return None
        journal = StreamJournal(self, node, plan, parts)
        end_key = journal.parts_of("end").key
        entries = self.entries
        end = entries.get(end_key)
        cached = False
        if end is None and plan.cache:
            # Only a finished stream is reused from another run: its items
            # come from that run's journal.
            store = self.store
            try:
                end = await call_store(store, lambda: store.find(end_key))
                if end is not None:
                    run_id = end.run_id
                    contents = await call_store(
                        store, lambda: store.read_journal(run_id)
                    )
                    entries = {e.key: e for e in contents.entries}
                    cached = True
            except UnknownRunError:  # pruned meanwhile, say: a miss
                end = None
            except Exception as exc:  # a failing store is a miss, never an error
                self.recorder._fail("find", exc)
                end = None
        found: list[Entry] = []
        items: list[Any] = []
        while True:
            entry = entries.get(journal.parts_of(len(items)).key)
            if entry is None:
                break
            try:
                items.append(decode(entry.output, plan.declared))
            except ValueError as exc:
                self.corrupt(node.id, f"stored item of run {entry.run_id!r}: {exc}")
                break
            found.append(entry)
        if end is not None:
            count = _count(end.output)
            if count is None:
                self.corrupt(node.id, f"stored end of run {end.run_id!r} is damaged")
                end = None
            elif count > len(items):
                end = None  # an item is missing (damaged): the stream runs on
            else:
                del items[count:]
                del found[count:]
        if cached and end is None:
            items, found = [], []
        if not found and end is None:
            return journal
        # Journaled again under this run (so resuming it restores them too),
        # and their context calls replayed, in order.
        restored = [*found, end] if end is not None else found
        for entry in restored:
            _replay(self.run.context, entry.effects)
            self.recorder.record(
                Entry(
                    self.run.run_id,
                    entry.parts,
                    entry.output,
                    entry.effects,
                    time.time(),
                    origin=entry.origin or entry.run_id,
                )
            )
        self.restored += len(restored)
        last = restored[-1]
        journal.source = last.origin or last.run_id
        journal.restored = items
        journal.complete = end is not None
        self._emit_restored(
            node,
            journal.source,
            len(items),
            len(items) if journal.complete else None,
        )
        return journal

    def _report_damaged(self) -> None:
        if self._damaged is not None:
            self.corrupt(None, self._damaged)
            self._damaged = None

    async def _unit(
        self, node: Node, state: StageState, value: Any, index: int | None
    ) -> Outcome:
        self._report_damaged()
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


class StreamJournal:
    """A durable run's record of one streaming stage.

    Made by :meth:`Durable.stream`. The stream's producer delivers
    ``restored`` first (as if an earlier attempt had), runs the generator
    only if the stream is not ``complete``, and calls :meth:`record` with
    each item it produces.
    """

    __slots__ = (
        "_durable",
        "_node",
        "_plan",
        "broken",
        "complete",
        "effects",
        "parts",
        "restored",
        "source",
    )

    def __init__(self, durable: Durable, node: Node, plan: _Plan, parts: KeyParts):
        self._durable = durable
        self._node = node
        self._plan = plan
        self.parts = parts
        """The stage's key parts; each item's and the end's differ in ``item``."""
        self.restored: list[Any] = []
        """Items the resumed run journaled, decoded, in production order."""
        self.complete = False
        """The resumed run journaled the stream's end: nothing more to produce."""
        self.source: str | None = None
        """The run that produced the last restored item (or the end)."""
        self.effects: Effects = []
        """Context calls made since the last journaled item."""
        self.broken = False
        """An item could not be journaled: nothing later is (a gap would be)."""

    def parts_of(self, index: int | str) -> KeyParts:
        """Return the key parts of item *index*, or of the stream's end (``"end"``)."""
        p = self.parts  # not dataclasses.replace: 3x slower, once per item
        return KeyParts(
            p.pipeline, p.stage, p.version, p.code, p.input, f"stream:{index}"
        )

    def record(self, index: int, item: Any) -> None:
        """Journal produced item *index*; never blocks, never raises.

        Restored items are already journaled. An item (or a context call)
        that cannot be encoded is reported once (``checkpoint_skipped``) and
        ends the journaling of this stream.
        """
        if index < len(self.restored) or self.broken:
            return
        self._write(index, item)

    def ended(self, outcome: Outcome, count: int) -> None:
        """After the stream: journal its end if it succeeded; mark it restored."""
        if self.complete:
            if outcome.ok:
                outcome.restored_from = self.source
            return
        if outcome.ok and not self.broken:
            self._write("end", count)

    def _write(self, index: int | str, output: Any) -> None:
        durable = self._durable
        declared = self._plan.declared if index != "end" else None
        effects = tuple(self.effects)
        self.effects.clear()
        try:
            text = encode(output, declared)
            for _, _, effect in effects:
                encode(effect)
        except UnencodableOutputError as exc:
            self.broken = True
            where = index if isinstance(index, int) else None
            durable._skipped(self._node, where, str(exc))
            return
        durable.ran += 1
        durable.recorder.record(
            Entry(durable.run.run_id, self.parts_of(index), text, effects, time.time())
        )


def _count(text: str) -> int | None:
    """Return the item count a stream's end record holds, or None if damaged."""
    try:
        count = decode(text)
    except ValueError:
        return None
    return count if type(count) is int and count >= 0 else None


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

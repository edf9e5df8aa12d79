"""Chaos with durable runs: crash a random faulty run at a random write, then resume.

Each example runs a random plan (``tests/strategies.py``) journaled in a store
that "crashes" after its first ``cut`` writes: everything later is lost, as
if the process had been killed then. The plan is then healed (every fault
made OK, no timeouts or cancellation) and resumed from the crashed run. The
resumed run must end as the reference model (``tests/model.py``) predicts
for the healed plan, and no unit journaled before the crash may run again.

``ACTORS_CHAOS=large`` runs many more examples, as for ``test_chaos.py``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model import expect
from strategies import Fault, Kind, Plan, StageSpec, plans
from test_chaos import WATCHDOG, Trace, build

from actors import ExecutionPattern, PipelineExecutor, PipelineResult
from actors._checkpoint._keys import code_fingerprint, stage_key
from actors.checkpoint import Entry, MemoryStore

_LARGE = os.environ.get("ACTORS_CHAOS", "fast") == "large"
RESUME_CHAOS = settings(
    max_examples=1_000 if _LARGE else 60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class CrashingStore(MemoryStore):
    """A MemoryStore that keeps only its first *cut* journal writes, then fails."""

    def __init__(self, cut: int) -> None:
        super().__init__()
        self.cut = cut

    def append(self, run_id: str, entries: Sequence[Entry]) -> None:
        if self.cut <= 0:
            raise OSError("crashed")
        self.cut -= 1
        super().append(run_id, entries)


def _healed(plan: Plan) -> Plan:
    """Return *plan* with every fault OK and nothing that cancels the run."""

    def heal(fault: Fault) -> Fault:
        return Fault(Kind.OK, fault.base)

    stages = tuple(
        replace(
            spec,
            fault=heal(spec.fault),
            item_faults={i: heal(f) for i, f in spec.item_faults.items()},
            timeout_ms=None,
            # A collecting fan-out asking for more successes than items
            # arrive fails too; with every item healed, the default minimum
            # never does.
            min_successes=None,
        )
        for spec in plan.stages
    )
    return replace(plan, stages=stages, timeout_ms=None, cancel_at=None)


def _run(
    plan: Plan, store: MemoryStore, resume: str | None
) -> tuple[PipelineResult | None, Trace, str | None]:
    """Run *plan* journaled in *store*; return its result, trace and run id."""
    trace = Trace()
    pipeline = build(plan, trace)
    executor = PipelineExecutor(log_events=False, store=store)
    outcome: list[PipelineResult | None] = [None]

    async def main() -> None:
        # An INTERRUPT fault raises KeyboardInterrupt: the crash needs only
        # the journal.
        with trio.move_on_after(WATCHDOG), contextlib.suppress(KeyboardInterrupt):
            outcome[0] = await executor.execute(
                pipeline, list(range(plan.initial)), resume=resume
            )

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    runs = store.list_runs("chaos")
    return outcome[0], trace, runs[-1].run_id if runs else None


def _unit_key(plan: Plan, trace_stage: str, value: Any, item: bool) -> str:
    spec = next(s for s in plan.stages if s.id == trace_stage)
    pipeline = build(plan, Trace())
    stage = next(d.stage for d in pipeline.stages if d.id == spec.id)
    return stage_key(
        "chaos", spec.id, None, code_fingerprint(stage), value, item=item
    ).key


@RESUME_CHAOS
@given(plan=plans(max_stages=12), cut=st.integers(0, 40))
def test_crash_at_a_random_write_then_resume_matches_the_model(
    plan: Plan, cut: int
) -> None:
    """The resumed run ends as the model says, and reruns no journaled unit."""
    store = CrashingStore(cut)
    _, _, crashed = _run(plan, store, resume=None)
    assert crashed is not None
    journaled = {entry.key for entry in store.read_journal(crashed).entries}

    healed = _healed(plan)
    store.cut = 1_000_000  # the resumed run is not crashed
    result, trace, _ = _run(healed, store, resume=crashed)
    assert result is not None
    expected = expect(healed)
    for stage in expected.stages:
        actual = result.stage_results[stage.spec.id]
        assert actual.status.value == stage.natural_status, stage.spec.id
        if stage.natural_status == "succeeded":
            assert result.outputs[stage.spec.id] == stage.output, stage.spec.id
    specs: dict[str, StageSpec] = {s.id: s for s in healed.stages}
    seen: set[tuple[str, int | None]] = set()
    for attempt in trace.attempts:
        unit = (attempt.stage, attempt.item)
        assert unit not in seen, f"{unit} ran twice on resume"
        seen.add(unit)
        fan_out = specs[attempt.stage].pattern is ExecutionPattern.FAN_OUT
        key = _unit_key(healed, attempt.stage, attempt.input, item=fan_out)
        assert key not in journaled, f"{unit} was journaled but ran again"

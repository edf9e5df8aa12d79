"""Chaos with durable runs: crash a random faulty run at a random write, then resume.

Each example runs a random case (``tests/strategies.py``) journaled in a store
that "crashes" after its first ``cut`` writes: everything later is lost, as
if the process had been killed then. The plan is then healed (every fault
made OK, no timeouts or cancellation) and resumed from the crashed run. The
resumed run must end as the oracle (``actors.testing.oracle``) predicts
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
from strategies import Case, cases
from test_chaos import WATCHDOG, build

from actors import ExecutionPattern, PipelineExecutor, PipelineResult
from actors._checkpoint._keys import code_fingerprint, stage_key
from actors.checkpoint import Entry, MemoryStore
from actors.testing import Call, Recorder
from actors.testing.oracle import Act, FaultPlan, Step, expect

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


def _heal(script: tuple[Step, ...]) -> tuple[Step, ...]:
    """Every attempt returns, after the first one's duration."""
    return (Step(Act.RETURNS, script[0].after),)


def _healed(case: Case) -> Case:
    """Return *case* with every fault OK and nothing that cancels the run."""
    definition = case.definition
    stages = tuple(
        stage.model_copy(
            # A collecting fan-out asking for more successes than items
            # arrive fails too; with every item healed, the default minimum
            # never does.
            update={"timeout_ms": None, "min_successes": None}
        )
        for stage in definition.stages
    )
    plan = case.plan
    healed = {
        stage_id: replace(
            stage,
            script=_heal(stage.script),
            items={i: _heal(script) for i, script in stage.items.items()},
        )
        for stage_id, stage in plan.stages.items()
    }
    return replace(
        case,
        definition=definition.model_copy(update={"stages": stages, "timeout_ms": None}),
        plan=FaultPlan(healed, initial=plan.initial),
    )


def _run(
    case: Case, store: MemoryStore, resume: str | None
) -> tuple[PipelineResult | None, list[Call], str | None]:
    """Run *case* journaled in *store*; return its result, calls and run id."""
    recorder = Recorder()
    pipeline = build(case)
    executor = PipelineExecutor(log_events=False, store=store, observers=[recorder])
    outcome: list[PipelineResult | None] = [None]

    async def main() -> None:
        # An interrupt raises KeyboardInterrupt: the crash needs only the
        # journal.
        with trio.move_on_after(WATCHDOG), contextlib.suppress(KeyboardInterrupt):
            outcome[0] = await executor.execute(
                pipeline, case.plan.initial_input, resume=resume
            )

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    runs = store.list_runs("chaos")
    return outcome[0], recorder.calls, runs[-1].run_id if runs else None


def _unit_key(case: Case, stage_id: str, value: Any, item: bool) -> str:
    pipeline = build(case)
    stage = next(d.stage for d in pipeline.stages if d.id == stage_id)
    return stage_key(
        "chaos", stage_id, None, code_fingerprint(stage), value, item=item
    ).key


@RESUME_CHAOS
@given(case=cases(max_stages=12, streams=False), cut=st.integers(0, 40))
def test_crash_at_a_random_write_then_resume_matches_the_model(
    case: Case, cut: int
) -> None:
    """The resumed run ends as the oracle says, and reruns no journaled unit."""
    store = CrashingStore(cut)
    _, _, crashed = _run(case, store, resume=None)
    assert crashed is not None
    journaled = {entry.key for entry in store.read_journal(crashed).entries}

    healed = _healed(case)
    store.cut = 1_000_000  # the resumed run is not crashed
    result, calls, _ = _run(healed, store, resume=crashed)
    assert result is not None
    expectation = expect(healed.definition, healed.plan)
    for stage_id, stage in expectation.stages.items():
        # Restored units take no time: statuses and outputs only.
        alternative = stage.exact
        assert alternative is not None, stage_id
        actual = result.stage_results[stage_id]
        assert actual.status is alternative.status, stage_id
        assert actual.output == alternative.output, stage_id
    fan_outs = {
        s.id for s in healed.definition.stages if s.pattern is ExecutionPattern.FAN_OUT
    }
    seen: set[tuple[str, int | None]] = set()
    for call in calls:
        unit = (call.stage, call.item)
        assert unit not in seen, f"{unit} ran twice on resume"
        seen.add(unit)
        key = _unit_key(healed, call.stage, call.input, item=call.stage in fan_outs)
        assert key not in journaled, f"{unit} was journaled but ran again"

"""Microseconds per stage from 100 to 100,000 stages, validation included."""

from __future__ import annotations

import gc
import time

import trio

from actors import PipelineDefinition, PipelineExecutor

from ._common import Row, baseline_dag, layered, median, pipeline_of, timed, verdict

FLAT = 1.3
VALIDATION_S = 1.0


async def _measure(quick: bool) -> list[Row]:
    rows: list[Row] = []
    executor = PipelineExecutor(log_events=False)
    per_stage: dict[int, float] = {}
    per_stage_quiet: dict[int, float] = {}
    per_stage_base: dict[int, float] = {}
    sizes = {100: 41, 1_000: 15, 10_000: 5, 100_000: 3}
    for n, full in sizes.items():
        repeats = max(3, full // 3) if quick else full
        deps = layered(n)
        pipeline = pipeline_of(deps)

        async def validate_and_run(p: object = pipeline) -> None:
            errors = p.validate_pipeline()  # type: ignore[attr-defined]  # p is the pipeline
            assert not errors
            result = await executor.execute(p)  # type: ignore[arg-type]  # same
            assert result.success

        await validate_and_run()
        ours: list[float] = []
        base: list[float] = []
        validation: list[float] = []
        quiet: list[float] = []
        quiet_base: list[float] = []
        for _ in range(repeats):
            base.append(await timed(lambda d=deps: baseline_dag(d)))  # type: ignore[misc]  # default binds the loop value
            ours.append(await timed(validate_and_run))
            begin = time.perf_counter()
            pipeline.validate_pipeline()
            validation.append(time.perf_counter() - begin)
            # The same with the cycle collector paused: what is left is the
            # executor's own per-stage work.
            gc.disable()
            try:
                quiet_base.append(await timed(lambda d=deps: baseline_dag(d)))  # type: ignore[misc]  # same
                quiet.append(await timed(validate_and_run))
            finally:
                gc.enable()
        per_stage[n] = median(ours) / n
        per_stage_quiet[n] = median(quiet) / n
        per_stage_base[n] = median(base) / n
        rows.append(
            Row(
                "scaling",
                f"layered n={n:,} (validate + execute)",
                f"{per_stage[n] * 1e6:.1f} us/stage (baseline "
                f"{median(base) / n * 1e6:.1f}; validation "
                f"{median(validation) / n * 1e6:.1f}); gc paused: "
                f"{per_stage_quiet[n] * 1e6:.1f} (baseline "
                f"{median(quiet_base) / n * 1e6:.1f})",
                "flat",
            )
        )
    ratio = per_stage[100_000] / per_stage[1_000]
    rows.append(
        Row(
            "scaling",
            "per-stage cost, 100,000 vs 1,000",
            f"{ratio:.2f}x (hand-written baseline: "
            f"{per_stage_base[100_000] / per_stage_base[1_000]:.2f}x)",
            f"<= {FLAT}x",
            verdict(ratio <= FLAT),
        )
    )
    quiet_ratio = per_stage_quiet[100_000] / per_stage_quiet[1_000]
    rows.append(
        Row(
            "scaling",
            "per-stage cost, 100,000 vs 1,000, gc paused",
            f"{quiet_ratio:.2f}x",
            f"<= {FLAT}x",
            verdict(quiet_ratio <= FLAT),
        )
    )
    # The first validation of a new definition, as an application does it
    # (the graph is cached on the definition afterwards).
    stages = pipeline_of(layered(100_000)).stages
    took = []
    for _ in range(3 if quick else 5):
        fresh = PipelineDefinition(name="validate", stages=stages)
        gc.collect()
        begin = time.perf_counter()
        errors = fresh.validate_pipeline()
        took.append(time.perf_counter() - begin)
        assert not errors
        del fresh
    rows.append(
        Row(
            "scaling",
            "validation of 100,000 stages",
            f"{median(took):.3f} s (min {min(took):.3f})",
            f"< {VALIDATION_S:g} s",
            verdict(median(took) < VALIDATION_S),
        )
    )
    return rows


def run(quick: bool = False) -> list[Row]:
    """Measure the per-stage cost of layered DAGs from 100 to 100,000 stages."""
    return trio.run(_measure, quick)

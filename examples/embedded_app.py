"""A pipeline inside a larger trio application.

The application owns the nursery, the shutdown signal and the deadlines; the
pipelines are just two more things it runs:

* ``ingest`` is cancelled when the application is asked to stop (SIGINT or
  SIGTERM): its context's ``cancel_token`` is the application's own stop event.
* ``report`` has a deadline: a task of the application sets its cancel token
  after ``report_deadline_s`` (or as soon as the application stops), and the
  slow report is cancelled cleanly.
* Both run at the same time, next to a heartbeat task, with one executor and
  one observer that counts finished stages.

Run it with ``python examples/embedded_app.py`` (Ctrl-C stops it early).
"""

from __future__ import annotations

import signal

import trio

from actors import (
    ExecutionPattern,
    Observer,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    StageDefinition,
    StageFinished,
)


async def fetch(source: str, context: PipelineContext) -> list[str]:
    """Fetch the new records of *source*."""
    await trio.sleep(0.1)
    return [f"{source}/record-{n}" for n in range(6)]


async def parse(record: str, context: PipelineContext) -> dict[str, str]:
    """Parse one record."""
    await trio.sleep(0.05)
    return {"id": record.rpartition("/")[2]}


async def store(records: list[dict[str, str]], context: PipelineContext) -> int:
    """Store the parsed records; return how many."""
    await trio.sleep(0.05)
    context.increment_metric("stored", len(records))
    return len(records)


async def crunch(period: str, context: PipelineContext) -> str:
    """A report that takes longer than the application will wait."""
    await trio.sleep(5)
    return f"report for {period}"


ingest = PipelineDefinition(
    name="ingest",
    stages=[
        StageDefinition("fetch", fetch),
        StageDefinition(
            "parse",
            parse,
            pattern=ExecutionPattern.FAN_OUT,
            inputs=["fetch"],
            max_concurrency=2,
        ),
        StageDefinition("store", store, inputs=["parse"]),
    ],
)

report = PipelineDefinition(
    name="report",
    stages=[StageDefinition("crunch", crunch)],
)

pipeline = ingest  # what ``actors run examples/embedded_app.py`` runs


class FinishedStages(Observer):
    """Counts the stages that finished, per pipeline (an application metric)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def stage_finished(self, event: StageFinished) -> None:
        """Count one more finished stage of ``event.pipeline``."""
        self.counts[event.pipeline] = self.counts.get(event.pipeline, 0) + 1


async def stop_on_signals(stop: trio.Event) -> None:
    """Set *stop* when the process receives SIGINT or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            print(f"received {signal.Signals(signum).name}: stopping")
            stop.set()


async def deadline(seconds: float, stop: trio.Event, token: trio.Event) -> None:
    """Set *token* after *seconds*, or as soon as *stop* is set if that is sooner."""
    with trio.move_on_after(seconds):
        await stop.wait()
    token.set()


async def heartbeat(beats: list[float]) -> None:
    """The application's own work, going on while the pipelines run."""
    while True:
        beats.append(trio.current_time())
        await trio.sleep(0.1)


async def main(report_deadline_s: float = 0.5) -> dict[str, PipelineResult]:
    """Run both pipelines next to the application's tasks; return their results."""
    stop = trio.Event()
    finished = FinishedStages()
    executor = PipelineExecutor(observers=[finished])
    results: dict[str, PipelineResult] = {}
    beats: list[float] = []

    async def run(
        name: str, pipeline: PipelineDefinition, source: str, context: PipelineContext
    ) -> None:
        results[name] = await executor.execute(pipeline, source, context)

    async with trio.open_nursery() as app:
        app.start_soon(stop_on_signals, stop)
        app.start_soon(heartbeat, beats)
        report_token = trio.Event()
        app.start_soon(deadline, report_deadline_s, stop, report_token)
        async with trio.open_nursery() as pipelines:
            pipelines.start_soon(
                run, "ingest", ingest, "sensors", PipelineContext(cancel_token=stop)
            )
            pipelines.start_soon(
                run,
                "report",
                report,
                "2026-Q4",
                PipelineContext(cancel_token=report_token),
            )
        app.cancel_scope.cancel()  # the pipelines are done: stop the helpers

    for name, result in results.items():
        print(f"{name}: {result.status} after {result.total_duration_ms:g} ms")
    print(f"stages finished: {finished.counts}; heartbeats: {len(beats)}")
    return results


if __name__ == "__main__":
    trio.run(main)

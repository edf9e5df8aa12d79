"""FAN_OUT in its smallest useful form: one stage per item, a few at a time.

``pages`` returns a list; ``thumbnails`` runs once per page, at most four at
a time, and its output is the list of results in the order of the pages,
whichever finished first. ``album`` receives that list.

Run it with ``python examples/fan_out.py`` or ``actors run
examples/fan_out.py``.
"""

from __future__ import annotations

from typing import Any

import trio

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    StageDefinition,
)


async def pages(document: Any, context: PipelineContext) -> list[int]:
    """Return the page numbers of the document (ten of them)."""
    return list(range(1, 11))


async def thumbnail(page: int, context: PipelineContext) -> str:
    """Render one page; odd pages take longer, so items finish out of order."""
    await trio.sleep(0.05 if page % 2 == 0 else 0.08)
    return f"thumb-{page:02}.png"


async def album(thumbnails: list[str], context: PipelineContext) -> str:
    """Put the thumbnails, in page order, into one album."""
    return " ".join(thumbnails)


pipeline = PipelineDefinition(
    name="fan_out",
    stages=[
        StageDefinition("pages", pages),
        StageDefinition(
            "thumbnails",
            thumbnail,
            pattern=ExecutionPattern.FAN_OUT,
            inputs=["pages"],
            max_concurrency=4,
        ),
        StageDefinition("album", album, inputs=["thumbnails"]),
    ],
)


async def main() -> PipelineResult:
    """Run the pipeline and show how the items were spread over time."""
    result = await PipelineExecutor().execute(pipeline)
    profile = result.stage_results["thumbnails"].profile
    assert profile is not None
    print(result.outputs["album"])
    print(
        f"{profile.items} items, 4 at a time: p50 {profile.item_p50_ms:g} ms, "
        f"p95 {profile.item_p95_ms:g} ms, stage {result.total_duration_ms:g} ms"
    )
    return result


if __name__ == "__main__":
    trio.run(main)

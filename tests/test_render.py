"""Diagrams: Mermaid and DOT output compared with golden files in tests/golden/.

Set ``ACTORS_UPDATE_GOLDEN=1`` to rewrite the golden files after a deliberate
change, then review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from actors import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    RetryConfig,
    StageDefinition,
    StageResult,
    StageStatus,
    render_diagram,
)
from actors._diagram import format_for_path, stage_notes

GOLDEN = Path(__file__).parent / "golden"


def check_golden(name: str, text: str) -> None:
    """Compare *text* with the golden file *name* (or rewrite it when asked)."""
    path = GOLDEN / name
    if os.environ.get("ACTORS_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text


async def load(value: object, context: PipelineContext) -> list[int]:
    """Return three items."""
    await trio.sleep(1)
    return [1, 2, 3]


async def enrich(value: object, context: PipelineContext) -> str:
    """Fail: this stage is non-critical."""
    await trio.sleep(2)
    raise RuntimeError("enrichment service down")


async def square(item: int, context: PipelineContext) -> int:
    """Square one item."""
    await trio.sleep(0.25)
    return item * item


async def merge(inputs: dict[str, object], context: PipelineContext) -> object:
    """Return both inputs."""
    return inputs


async def never(value: object, context: PipelineContext) -> None:
    """Be skipped."""


def showcase() -> PipelineDefinition:
    """Return a pipeline with every pattern, a non-critical stage and odd text."""
    return PipelineDefinition(
        name="showcase",
        stages=[
            StageDefinition("load", load, description='reads "data" <fast> #1'),
            StageDefinition(
                "enrich",
                enrich,
                pattern=ExecutionPattern.CONDITIONAL,
                condition=lambda context: True,
                inputs=["load"],
                critical=False,
            ),
            StageDefinition(
                "squares",
                square,
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["load"],
                max_concurrency=2,
                timeout_ms=500,
                retry_config=RetryConfig(max_attempts=3),
            ),
            StageDefinition("merge", merge, inputs=["squares", "enrich"]),
            StageDefinition(
                "optional",
                never,
                pattern=ExecutionPattern.CONDITIONAL,
                condition=lambda context: False,
                inputs=["merge"],
            ),
        ],
    )


@pytest.mark.parametrize(("fmt", "suffix"), [("mermaid", "mmd"), ("dot", "dot")])
def test_definition_matches_golden_file(fmt: str, suffix: str) -> None:
    """A definition renders to the golden diagram: shapes, notes and dashed edges."""
    check_golden(f"showcase.{suffix}", render_diagram(showcase(), fmt))


@pytest.mark.parametrize(("fmt", "suffix"), [("mermaid", "mmd"), ("dot", "dot")])
async def test_run_colours_match_golden_file(
    fmt: str, suffix: str, autojump_clock: trio.testing.MockClock
) -> None:
    """After a run, every stage is coloured by its final status."""
    pipeline = showcase()
    result = await PipelineExecutor(log_events=False).execute(pipeline)
    statuses = {k: r.status for k, r in result.stage_results.items()}
    assert statuses == {
        "load": StageStatus.SUCCEEDED,
        "enrich": StageStatus.FAILED,
        "squares": StageStatus.SUCCEEDED,
        "merge": StageStatus.SUCCEEDED,
        "optional": StageStatus.SKIPPED,
    }
    check_golden(f"showcase_run.{suffix}", render_diagram(pipeline, fmt, result=result))


def test_every_status_has_a_colour() -> None:
    """Each status gets its own Mermaid class, so no stage is left uncoloured."""
    pipeline = PipelineDefinition(
        name="five",
        stages=[StageDefinition(status.value, never) for status in StageStatus],
    )
    result = PipelineResult(
        success=False,
        outputs={},
        stage_results={
            status.value: StageResult(success=False, status=status)
            for status in StageStatus
        },
        failed_stages=[],
        total_duration_ms=0,
    )
    text = render_diagram(pipeline, "mermaid", result=result)
    for n, status in enumerate(StageStatus):
        assert f"    class s{n} {status.value}" in text.splitlines()


def test_stage_ids_are_escaped_in_both_formats() -> None:
    """Quotes, backslashes and Mermaid keywords in stage ids cannot break a diagram."""
    pipeline = PipelineDefinition(
        name='say "hi"',
        stages=[
            StageDefinition("end", never),
            StageDefinition('a"b\\c', never, inputs=["end"]),
        ],
    )
    mermaid = render_diagram(pipeline, "mermaid").splitlines()
    assert mermaid[:4] == [
        '%% pipeline: say "hi"',
        "flowchart LR",
        '    s0["<b>end</b>"]',
        '    s1["<b>a#quot;b\\c</b>"]',
    ]
    dot = render_diagram(pipeline, "dot").splitlines()
    assert dot[0] == 'digraph "say \\"hi\\"" {'
    assert '    "end" -> "a\\"b\\\\c";' in dot


def test_unknown_input_is_drawn_as_a_marked_node() -> None:
    """An input naming no stage (an invalid definition) is drawn, marked with '?'."""
    pipeline = PipelineDefinition(
        name="broken", stages=[StageDefinition("sink", never, inputs=["lod"])]
    )
    lines = render_diagram(pipeline, "mermaid").splitlines()
    assert lines[3:] == ['    u0["lod?"]', "    u0 --> s0"]


def test_notes_name_pattern_limits_retries_timeout_and_criticality() -> None:
    """The notes under a stage id summarise how it runs."""
    assert stage_notes(showcase().stages[2]) == [
        "fan-out, max 2",
        "retry x3",
        "timeout 500 ms",
    ]
    assert stage_notes(showcase().stages[1]) == ["conditional", "non-critical"]
    assert stage_notes(showcase().stages[0]) == []


def test_unknown_format_is_refused() -> None:
    """Asking for a format that does not exist names the known ones."""
    with pytest.raises(
        ValueError, match=r"^unknown diagram format 'png'; known formats: mermaid, dot$"
    ):
        render_diagram(showcase(), "png")


@pytest.mark.parametrize(
    ("path", "fmt"),
    [("g.dot", "dot"), ("G.GV", "dot"), ("g.mmd", "mermaid"), ("g.md", "mermaid")],
)
def test_format_follows_the_file_suffix(path: str, fmt: str) -> None:
    """``.dot`` and ``.gv`` files get DOT; anything else gets Mermaid."""
    assert format_for_path(path) == fmt

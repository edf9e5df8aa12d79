"""Result records: the helpers, the fast constructor, and serialization."""

from __future__ import annotations

from typing import Any

import pytest

from actors import (
    PipelineResult,
    PipelineStatus,
    StageProfile,
    StageResult,
    StageStatus,
    cancelled_result,
    failure_result,
    skipped_result,
    success_result,
)
from actors._results import construct, critical_path


def test_helpers_set_status_and_success() -> None:
    """Each helper builds the status its name says."""
    assert (success_result(1, "s").status, success_result(1).success) == (
        StageStatus.SUCCEEDED,
        True,
    )
    failed = failure_result("bad", "s", {"k": 1})
    assert (failed.status, failed.success, failed.error, failed.metadata) == (
        StageStatus.FAILED,
        False,
        "bad",
        {"k": 1},
    )
    skipped = skipped_result("s", reason="no lyrics")
    assert (skipped.status, skipped.success, skipped.metadata) == (
        StageStatus.SKIPPED,
        True,
        {"skipped": True, "reason": "no lyrics"},
    )
    cancelled = cancelled_result("s", reason="stop")
    assert (cancelled.status, cancelled.success, cancelled.error) == (
        StageStatus.CANCELLED,
        False,
        "stop",
    )


def test_generic_stage_result_validates_output() -> None:
    """StageResult[int] is a real generic model: the output type is checked."""
    assert StageResult[int](success=True, output=3).output == 3
    with pytest.raises(ValueError, match="output"):
        StageResult[int](success=True, output="three")  # type: ignore[arg-type]  # on purpose


@pytest.mark.parametrize(
    ("cls", "fields"),
    [
        (
            StageResult,
            {"success": True, "output": [1], "status": StageStatus.SUCCEEDED},
        ),
        (StageResult, {"success": False, "error": "x", "metadata": {"a": 1}}),
        (StageProfile, {"ready_at_ms": 1.0, "attempt_ms": (2.0,), "items": 3}),
        (
            PipelineResult,
            {
                "success": True,
                "outputs": {},
                "stage_results": {},
                "failed_stages": [],
                "total_duration_ms": 5.0,
                "status": PipelineStatus.SUCCEEDED,
            },
        ),
    ],
)
def test_construct_matches_validated_construction(
    cls: type[Any], fields: dict[str, Any]
) -> None:
    """The executor's fast constructor builds the same model as validation does."""
    fast = construct(cls, **fields)
    slow = cls(**fields)
    assert fast == slow
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_fields_set == slow.model_fields_set


def test_construct_gives_each_instance_fresh_factory_defaults() -> None:
    """Defaults made by a factory (metadata) are never shared between results."""
    first = construct(StageResult, success=True)
    second = construct(StageResult, success=True)
    first.metadata["x"] = 1
    assert second.metadata == {}


def test_exception_is_excluded_from_serialization() -> None:
    """The exception is for debugging only; JSON never carries it."""
    result = failure_result("boom", exception=ValueError("boom"))
    assert isinstance(result.exception, ValueError)
    assert "exception" not in result.model_dump_json()


def test_critical_path_follows_the_latest_input() -> None:
    """The walk goes back through whichever input finished last."""
    finished: dict[str, float | None] = {
        "a": 1.0,
        "b": 5.0,
        "c": 2.0,
        "d": 6.0,
        "e": None,
    }
    dependencies = {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c"), "e": ("d",)}
    assert critical_path(finished, dependencies) == ["a", "b", "d"]
    assert critical_path({}, {}) == []

"""The public surface: every exported name exists and says it lives in actors."""

from __future__ import annotations

import inspect
from pathlib import Path

import actors


def test_all_names_exist() -> None:
    """Every name in __all__ is importable from actors."""
    missing = [name for name in actors.__all__ if not hasattr(actors, name)]
    assert missing == []


def test_all_is_sorted_and_unique() -> None:
    """__all__ is kept sorted, without duplicates."""
    assert list(actors.__all__) == sorted(set(actors.__all__))


def test_public_objects_claim_the_public_module() -> None:
    """Classes and functions report actors as their module, not a private one."""
    wrong = {
        name: obj.__module__
        for name in actors.__all__
        if (inspect.isclass(obj := getattr(actors, name)) or inspect.isfunction(obj))
        and obj.__module__ != "actors"
    }
    assert wrong == {}


def test_public_classes_and_functions_have_docstrings() -> None:
    """Every public class and function documents itself."""
    undocumented = [
        name
        for name in actors.__all__
        if (inspect.isclass(obj := getattr(actors, name)) or inspect.isfunction(obj))
        and not inspect.getdoc(obj)
    ]
    assert undocumented == []


def test_original_api_names_are_kept() -> None:
    """The wave executor's names are all here, so migrating is changing imports."""
    original = {
        "PipelineDefinition",
        "StageDefinition",
        "ExecutionPattern",
        "RetryConfig",
        "PipelineContext",
        "PipelineStage",
        "PipelineExecutor",
        "PipelineResult",
        "StageResult",
        "StageStatus",
        "success_result",
        "failure_result",
        "skipped_result",
        "cancelled_result",
        "PipelineValidationError",
        "run",
    }
    assert original <= set(actors.__all__)
    assert {p.name for p in actors.ExecutionPattern} == {
        "SEQUENTIAL",
        "PARALLEL",
        "FAN_OUT",
        "CONDITIONAL",
    }


def test_package_ships_py_typed() -> None:
    """The package is marked as typed."""
    assert actors.__file__ is not None
    assert Path(actors.__file__).with_name("py.typed").is_file()

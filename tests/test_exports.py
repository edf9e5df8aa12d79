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


def test_no_public_namespace_imports_an_optional_extra() -> None:
    """``import actors`` and its namespaces leave every optional extra unloaded.

    ``actors.opentelemetry`` is left out: it is the code path that uses its
    extra. ``rich`` is not checked: structlog imports it whenever installed.
    """
    import subprocess
    import sys

    code = (
        "import sys, actors, actors.abc, actors.aio, actors.analysis, "
        "actors.checkpoint, actors.limits, actors.logging, actors.offload, "
        "actors.testing\n"
        "extras = ('dask', 'distributed', 'trio_parallel', 'limits', 'redis', "
        "'opentelemetry', 'hypothesis', 'cloudpickle')\n"
        "print(sorted(m for m in extras if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout == "[]\n"

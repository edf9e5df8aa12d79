"""The package's layering: no module imports from a later layer.

Modules of one layer may import each other (the kernel keeps a stricter
order of its own). A back edge is allowed only under ``if TYPE_CHECKING:``. A new module must be
given a layer here, which is the point: where it sits is a decision.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import actors

ROOT = Path(actors.__file__).parent

LAYERS: dict[str, int] = {
    # 1: no dependencies inside the package
    "_version": 1,
    "_util": 1,
    "_exceptions": 1,
    "_sketch": 1,
    "_host_check": 1,
    "_arity": 1,
    # 2: declarations and results
    "_context": 2,
    "_results": 2,
    "_definition": 2,
    "_offloader": 2,  # the Offloader protocol: declarations types offload= with it
    # 3: build, events, observers, logging
    "_graph": 3,
    "_events": 3,
    "_observers": 3,
    "_logging": 3,
    "_log_config": 3,
    # 4: the kernel, in its own order (see KERNEL)
    "_core": 4,
    "_limits": 4,
    "_offload": 4,  # the backends; the attempt loop calls them
    "_checkpoint": 4,
    # 5: tools built on runs and logs
    "_diagram": 5,
    "_analysis": 5,
    "_cli": 5,
    "__main__": 5,
    "_aio": 5,
    # 6: the public namespaces
    "__init__": 6,
    "analysis": 6,
    "logging": 6,
    "aio": 6,
    "limits": 6,
    "offload": 6,
    "checkpoint": 6,
    "abc": 6,
    "testing": 6,
    "opentelemetry": 6,
    "_otel": 6,  # the private half of actors.opentelemetry
}

# Inside the kernel: what the supervisor and actors share comes first, the
# supervisor that owns everything last.
KERNEL = [
    "_state",
    "_live",
    "_limiting",
    "_wiring",
    "_attempts",
    "_resume",
    "_fan_out",
    "_streaming",
    "_actor",
    "_supervisor",
    "__init__",
]

# The reference model of actors.testing.oracle is independent of what it
# checks: plain sequential Python that imports neither trio nor the kernel.
MODEL = ["_model_chain", "_model_streams", "_model"]

# The one module that imports hypothesis (an optional dependency).
HYPOTHESIS = ("testing", "strategies")

# Back edges taken at call time, each with its reason.
ALLOWED = {
    # PipelineDefinition.validate_pipeline() is the declaration's own method,
    # and the builder it calls imports the declarations.
    ("_definition", "_graph"),
}


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def _name(path: Path) -> tuple[str, ...]:
    return path.relative_to(ROOT).with_suffix("").parts


def _runtime_imports(path: Path) -> list[tuple[str, ...]]:
    """Return the package modules *path* imports outside ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _name(path)[:-1]  # the package the module is in
    found: list[tuple[str, ...]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = here[: len(here) - (child.level - 1)]
                    target = (
                        (*base, *(child.module or "").split("."))
                        if child.module
                        else base
                    )
                    if child.module is None:
                        found.extend((*base, alias.name) for alias in child.names)
                    else:
                        found.append(tuple(p for p in target if p))
                elif child.module and child.module.split(".")[0] == "actors":
                    found.append(tuple(child.module.split(".")[1:]) or ("__init__",))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    parts = alias.name.split(".")
                    if parts[0] == "actors":
                        found.append(tuple(parts[1:]) or ("__init__",))
            visit(child)

    visit(tree)
    return found


def _layer(parts: tuple[str, ...]) -> int:
    top = parts[0] if parts else "__init__"
    if top not in LAYERS:
        pytest.fail(
            f"module actors.{'.'.join(parts)} has no layer in tests/test_layers.py"
        )
    return LAYERS[top]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: ".".join(_name(p)))
def test_no_import_from_a_later_layer(path: Path) -> None:
    here = _name(path)
    own = _layer(here)
    for target in _runtime_imports(path):
        if target[:1] == here[:1] and len(here) > 1:
            continue  # inside one package: checked below for the kernel
        if (here[0], target[0]) in ALLOWED:
            continue
        assert _layer(target) <= own, (
            f"actors.{'.'.join(here)} (layer {own}) imports actors.{'.'.join(target)} "
            f"(layer {_layer(target)}): a module may not import from a later layer"
        )


@pytest.mark.parametrize(
    "path", sorted((ROOT / "_core").glob("*.py")), ids=lambda p: p.stem
)
def test_kernel_modules_import_only_earlier_kernel_modules(path: Path) -> None:
    assert path.stem in KERNEL, f"kernel module {path.stem} has no place in KERNEL"
    for target in _runtime_imports(path):
        if target[:1] == ("_core",) and len(target) > 1:
            assert KERNEL.index(target[1]) < KERNEL.index(path.stem), (
                f"actors._core.{path.stem} imports actors._core.{target[1]}, "
                "which comes after it"
            )


def test_the_check_sees_a_back_edge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The walker must find imports at any depth, and skip TYPE_CHECKING ones.
    module = tmp_path / "_graph.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "def f():\n    from ._core import run\n"
        "if TYPE_CHECKING:\n    from ._cli import main\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _runtime_imports(module) == [("_core",)]


def _imported(path: Path) -> set[str]:
    """Top-level names of every module *path* imports, at any depth."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("name", MODEL)
def test_the_reference_model_imports_neither_trio_nor_the_kernel(name: str) -> None:
    path = ROOT / "testing" / f"{name}.py"
    assert "trio" not in _imported(path), f"actors.testing.{name} imports trio"
    for target in _runtime_imports(path):
        assert target[:1] != ("_core",), f"actors.testing.{name} imports the kernel"


def test_only_the_strategies_module_imports_hypothesis() -> None:
    importers = [_name(p) for p in _modules() if "hypothesis" in _imported(p)]
    assert importers == [HYPOTHESIS]

"""The distribution: an sdist and a wheel named trio-actors, with every module in them.

Built with ``python -m build`` from a copy of the project's packaged files
(so the work tree gains no build/ or egg-info), without build isolation: no
network is needed, but the build backend (setuptools) must be installed next
to ``build`` (both are in the test dependency group). The wheel is built from
the sdist, so a file the sdist leaves out is missing from the wheel too.
"""

from __future__ import annotations

import ast
import email.parser
import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "actors"
LAUNCHER = "_actors_launch.py"
DIST_NAME = "trio-actors"
FILE_PREFIX = "trio_actors"  # the normalised name in file names


def _version() -> str:
    """The version, read from actors/_version.py without importing it."""
    tree = ast.parse((PACKAGE / "_version.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [ast.unparse(t) for t in node.targets] == ["__version__"]
            and isinstance(node.value, ast.Constant)
        ):
            return str(node.value.value)
    raise AssertionError("actors/_version.py defines no __version__ string")


def _package_files() -> set[str]:
    """Every file of the import package in the source tree, and the launcher."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix in {".py", ".typed"}
    } | {LAUNCHER}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the sdist and, from it, the wheel; return the output folder."""
    backend = importlib.metadata.version("setuptools")
    assert int(backend.split(".")[0]) >= 77, (
        f"setuptools {backend} is installed; building needs setuptools>=77 "
        "next to build (pip install the test dependency group)"
    )
    source = tmp_path_factory.mktemp("source")
    shutil.copy2(ROOT / "pyproject.toml", source)
    shutil.copy2(ROOT / "README.md", source)
    shutil.copy2(ROOT / LAUNCHER, source)
    shutil.copytree(
        PACKAGE, source / "actors", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path_factory.mktemp("dist")
    completed = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return out


def test_the_built_files_are_named_trio_actors(dist: Path) -> None:
    """One sdist and one pure-Python wheel, named for the distribution and version."""
    version = _version()
    assert sorted(p.name for p in dist.iterdir()) == [
        f"{FILE_PREFIX}-{version}-py3-none-any.whl",
        f"{FILE_PREFIX}-{version}.tar.gz",
    ]


def test_the_wheel_holds_every_module_and_py_typed(dist: Path) -> None:
    """Every module of actors/, py.typed and the script's launcher; nothing else."""
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"{FILE_PREFIX}-{_version()}.dist-info"
        metadata = email.parser.Parser().parsestr(
            archive.read(f"{info}/METADATA").decode()
        )
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    packaged = {n for n in names if not n.startswith(f"{info}/")}
    assert packaged == _package_files()
    assert "actors/py.typed" in packaged
    subpackages = {
        p.parent.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("__init__.py")
    }
    assert {"actors", "actors/_core"} <= subpackages
    assert all(f"{sub}/__init__.py" in packaged for sub in subpackages)
    assert (metadata["Name"], metadata["Version"]) == (DIST_NAME, _version())
    # The script starts outside the package, so Ctrl-C while it imports is
    # handled (see _actors_launch.py).
    assert "actors = _actors_launch:main" in entry_points.splitlines()


def test_the_sdist_holds_the_sources_and_the_metadata(dist: Path) -> None:
    """The sdist carries pyproject, README and every module, under one folder."""
    (sdist,) = dist.glob("*.tar.gz")
    top = f"{FILE_PREFIX}-{_version()}"
    with tarfile.open(sdist) as archive:
        names = {
            name.removeprefix(f"{top}/")
            for name in archive.getnames()
            if name.startswith(f"{top}/")
        }
        member = archive.extractfile(f"{top}/PKG-INFO")
        assert member is not None
        metadata = email.parser.Parser().parsestr(member.read().decode())
    assert {"pyproject.toml", "README.md", "PKG-INFO"} <= names
    assert _package_files() <= names
    assert (metadata["Name"], metadata["Version"]) == (DIST_NAME, _version())

"""Loading what the command line names: ``module:attr`` or ``path/file.py:attr``.

A TARGET names a :class:`PipelineDefinition` (or a zero-argument function
returning one); ``--context`` names a :class:`PipelineContext` (or a function
returning one) the same way. Every way this can go wrong is a
:class:`TargetError` whose message is one line for the user.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .._context import PipelineContext
from .._definition import PipelineDefinition
from .._util import describe


class TargetError(Exception):
    """A TARGET (or ``--context``) cannot be loaded; the message says why."""


def split_target(spec: str) -> tuple[str, str]:
    """Split ``module:attr`` or ``file.py:attr`` into its two parts.

    The last colon separates them (so ``C:\\x.py:attr`` works); a spec with no
    attribute (``file.py``, ``module``) names the attribute ``pipeline``.
    """
    where, colon, attr = spec.rpartition(":")
    if not colon or (len(where) == 1 and where.isalpha() and "\\" in attr):
        return spec, "pipeline"
    return where, attr or "pipeline"


def _is_path(where: str) -> bool:
    return where.endswith(".py") or "/" in where or os.sep in where


_loaded: dict[Path, ModuleType] = {}


def load_module(where: str) -> ModuleType:
    """Import the module named by *where*: a dotted name or a ``.py`` path.

    A file is imported once per process (the target and its context factory
    share one module, hence one set of classes), with its directory put first
    on ``sys.path`` as ``python file.py`` would. A module name is imported with
    the working directory on ``sys.path``, as ``python -m`` would.

    Raises:
        TargetError: It does not exist, or importing it raised.
    """
    if _is_path(where):
        path = Path(where).resolve()
        if path in _loaded:
            return _loaded[path]
        if not path.is_file():
            raise TargetError(f"no such file: {where}")
        known = sys.modules.get(path.stem)
        known_file = getattr(known, "__file__", None)
        if known is not None and known_file and Path(known_file).resolve() == path:
            _loaded[path] = known  # already imported under its own name: reuse it
            return known
        name = path.stem if known is None else f"_actors_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise TargetError(f"cannot import {where}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        sys.modules[name] = module  # dataclasses and pydantic look their module up
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise TargetError(f"importing {where} failed: {describe(exc)}") from exc
        _loaded[path] = module
        return module
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (
            where == exc.name or where.startswith(exc.name + ".")
        ):
            raise TargetError(
                f"no module named {exc.name!r} (a TARGET is module:attr "
                "or path/to/file.py:attr)"
            ) from exc
        raise TargetError(f"importing {where} failed: {describe(exc)}") from exc
    except Exception as exc:
        raise TargetError(f"importing {where} failed: {describe(exc)}") from exc


def _attribute(
    module: ModuleType, attr: str, spec: str, *, context: bool = False
) -> Any:
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            if context:
                found, what = _context_factories(module), "context factories"
            else:
                found = sorted(
                    name
                    for name, obj in vars(module).items()
                    if isinstance(obj, PipelineDefinition)
                )
                what = "pipelines"
            hint = f"; {what} defined there: {', '.join(found)}" if found else ""
            raise TargetError(f"{spec}: no attribute {attr!r}{hint}") from None
    return value


def _context_factories(module: ModuleType) -> list[str]:
    """Names in *module* that look like what ``--context`` takes.

    A context instance, or a function of the module whose return annotation
    names ``PipelineContext``. Nothing is called to find out.
    """
    found = []
    for name, obj in vars(module).items():
        if isinstance(obj, PipelineContext):
            found.append(name)
        elif inspect.isfunction(obj) and obj.__module__ == module.__name__:
            returns = obj.__annotations__.get("return")
            text = (
                returns
                if isinstance(returns, str)
                else getattr(returns, "__name__", "")
            )
            if "PipelineContext" in str(text):
                found.append(name)
    return sorted(found)


def _call_factory(value: Any, spec: str, what: str) -> Any:
    try:
        inspect.signature(value).bind()
    except TypeError:
        raise TargetError(
            f"{spec}: expected {what} or a function taking no arguments "
            f"that returns one; it needs arguments"
        ) from None
    except ValueError:
        pass  # no signature to inspect (some builtins): just call it
    try:
        return value()
    except Exception as exc:
        raise TargetError(f"{spec}: calling it raised {describe(exc)}") from exc


def load_pipeline(spec: str) -> tuple[PipelineDefinition, ModuleType]:
    """Return the pipeline named by *spec*, and the module it came from.

    Raises:
        TargetError: It cannot be loaded, or is not a pipeline (nor a
            zero-argument function returning one).
    """
    where, attr = split_target(spec)
    module = load_module(where)
    value = _attribute(module, attr, spec)
    what = "a PipelineDefinition"
    if not isinstance(value, PipelineDefinition):
        if not callable(value):
            raise TargetError(
                f"{spec}: expected {what} or a function returning one, "
                f"got {type(value).__name__}"
            )
        value = _call_factory(value, spec, what)
        if not isinstance(value, PipelineDefinition):
            raise TargetError(
                f"{spec}: the function returned {type(value).__name__}, expected {what}"
            )
    return value, module


def load_context_factory(
    spec: str, target_module: ModuleType | None
) -> Callable[[], PipelineContext[Any]]:
    """Return a function that makes the run's context, from ``--context`` *spec*.

    *spec* names a zero-argument function returning a
    :class:`PipelineContext` (called inside the run, so it may use trio) or a
    context instance; ``:attr`` looks in *target_module*.

    Raises:
        TargetError: It cannot be loaded or is neither of those.
    """
    where, attr = split_target(spec)
    if spec.startswith(":"):
        if target_module is None:
            raise TargetError(f"--context {spec}: no target module to look in")
        module = target_module
    else:
        module = load_module(where)
    value = _attribute(module, attr, spec, context=True)
    what = "a PipelineContext"
    if isinstance(value, PipelineContext):
        instance: PipelineContext[Any] = value
        return lambda: instance
    if not callable(value):
        raise TargetError(
            f"{spec}: expected {what} or a function returning one, "
            f"got {type(value).__name__}"
        )

    def make() -> PipelineContext[Any]:
        context = _call_factory(value, spec, what)
        if not isinstance(context, PipelineContext):
            raise TargetError(
                f"{spec}: the function returned {type(context).__name__}, "
                f"expected {what}"
            )
        return context

    return make

"""Helpers shared across the package: exception text, group leaves, module names."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any


def describe(exc: BaseException) -> str:
    """Return the error text of *exc*: its type name, then its message.

    Never raises: an exception whose ``__str__`` raises (or returns a
    non-string) is described by its type name and a note saying so.
    """
    name = type(exc).__name__
    try:
        message = str(exc)
    except Exception:
        return f"{name}: <message could not be rendered>"
    return f"{name}: {message}" if message else name


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """Return the exceptions inside *group*, nested groups flattened."""
    found, pending = [], [group]
    while pending:
        for exc in pending.pop().exceptions:
            if isinstance(exc, BaseExceptionGroup):
                pending.append(exc)
            else:
                found.append(exc)
    return found


def fix_module_names(namespace: dict[str, Any], names: Iterable[str]) -> None:
    """Make public objects say they live in the namespace that exports them.

    ``actors.PipelineExecutor.__module__`` reads ``actors``, not the private
    module that defines it, so reprs, docs and pickles name the public path.
    """
    public = namespace["__name__"]
    for name in names:
        obj = namespace[name]
        if getattr(obj, "__module__", "").startswith("actors._"):
            with contextlib.suppress(AttributeError, TypeError):  # aliases refuse it
                obj.__module__ = public

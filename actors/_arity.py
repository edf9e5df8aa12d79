"""Whether a callable can be called the way the executor will call it."""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Sequence
from typing import Any

_POSITIONAL = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
)


def arity_problem(
    fn: Callable[..., Any], arguments: Sequence[str] = ("input", "context")
) -> str | None:
    """Return why *fn* cannot be called with *arguments* by position, or None.

    The executor calls a stage function as ``fn(input, context)`` and a stage
    object's method as ``stage.execute(input, context)``, so a callable that
    accepts fewer positional arguments, or requires more (positional or
    keyword-only, without defaults), would fail on every attempt. The message
    names the callable and its parameters; the caller prefixes the stage.
    Returns None when the signature cannot be read (some builtins), leaving
    such callables to fail, if at all, at run time.
    """
    if _fits(fn, len(arguments)):
        return None
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in _POSITIONAL]
    variadic = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    wanted = len(arguments)
    call = f"({', '.join(arguments)})"
    shown = f"{_name(fn)}({_parameters(params)})"
    if len(positional) < wanted and not variadic:
        return (
            f"{shown} accepts {_count(len(positional))}, but it is called with "
            f"{_count(wanted)}: {call}"
        )
    required = [p.name for p in positional[wanted:] if p.default is p.empty]
    required += [
        p.name
        for p in params
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is p.empty
    ]
    if required:
        names = ", ".join(repr(name) for name in required)
        return (
            f"{shown} requires {names} as well, but it is called with only "
            f"{call}; give {'it a default' if len(required) == 1 else 'them defaults'}"
        )
    return None


def _fits(fn: Callable[..., Any], wanted: int) -> bool:
    """Return True if a plain function or method surely takes *wanted* arguments.

    Read off the code object: validation checks every stage, and at 100,000
    stages ``inspect.signature`` alone would take about two seconds. Anything
    else (a wrapper, a partial, a callable object) gets False: look closer.
    """
    if isinstance(fn, types.MethodType):
        fn, wanted = fn.__func__, wanted + 1  # self is bound
    if type(fn) is not types.FunctionType or "__wrapped__" in fn.__dict__:
        return False
    code = fn.__code__
    defaults = len(fn.__defaults__ or ())
    varargs = bool(code.co_flags & inspect.CO_VARARGS)
    return (
        (code.co_argcount >= wanted or varargs)
        and code.co_argcount - defaults <= wanted
        and code.co_kwonlyargcount == len(fn.__kwdefaults__ or {})
    )


def _name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return name.rpartition("<locals>.")[2]  # Class.method, or the function
    return type(fn).__name__  # a callable object, a functools.partial


def _parameters(params: list[inspect.Parameter]) -> str:
    """The parameter list by name: annotations and defaults would only add length."""
    shown: list[str] = []
    starred = False
    for param in params:
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            shown.append(f"*{param.name}")
            starred = True
        elif param.kind is inspect.Parameter.VAR_KEYWORD:
            shown.append(f"**{param.name}")
        else:
            if param.kind is inspect.Parameter.KEYWORD_ONLY and not starred:
                shown.append("*")
                starred = True
            default = "" if param.default is param.empty else "=..."
            shown.append(param.name + default)
    return ", ".join(shown)


def _count(n: int) -> str:
    return f"{n} positional argument" + ("" if n == 1 else "s")

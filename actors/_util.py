"""Helpers shared across the package: exception text, group leaves, module names,
durations and tables for people, control characters made visible."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable, Sequence
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


def format_ms(ms: float | None) -> str:
    """Return a duration for people: three significant digits, adaptive units.

    ``412 ms``, ``1.76 s``, ``3.2 min``, ``1.5 h`` (trailing zeros dropped);
    ``-`` for an unknown (``None``) or non-finite duration.
    """
    if ms is None or not math.isfinite(ms):
        return "-"
    sign = "-" if ms < 0 else ""
    value = abs(ms)
    for unit, scale, limit in _UNITS:
        text = _three_digits(value / scale)
        if float(text) < limit:
            return f"{sign}{text} {unit}"
    raise AssertionError("unreachable: the last unit has no limit")


_UNITS = (
    ("ms", 1.0, 1000.0),
    ("s", 1e3, 60.0),
    ("min", 6e4, 60.0),
    ("h", 3.6e6, math.inf),
)


def _three_digits(value: float) -> str:
    if value >= 1e5:
        return f"{value:.3g}"
    if value < 0.0005:
        return "0"
    decimals = min(3, max(0, 2 - math.floor(math.log10(value))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def plain_table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    right: Iterable[int] = (),
    indent: str = "",
) -> list[str]:
    """Return *rows* under *header* as aligned plain-text lines.

    Columns whose index is in *right* are right-aligned; every line starts
    with *indent* and has no trailing spaces.
    """
    rows = list(rows)
    aligned = set(right)
    widths = [len(cell) for cell in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in (header, *rows):
        cells = [
            cell.rjust(width) if n in aligned else cell.ljust(width)
            for n, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


_CONTROL = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def printable(text: str, *, newlines: bool = False) -> str:
    """Return *text* with control characters shown, never sent to a terminal.

    ESC becomes ``\\x1b`` (and so on), so a stage id or an error message
    cannot move the cursor, recolour the terminal or write the clipboard.
    Newlines and tabs are kept only when *newlines* is true.
    """
    text = _CONTROL.sub(_escape, text)
    if not newlines:
        text = text.replace("\n", "\\n").replace("\t", "\\t")
    return text


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

"""Checkpoint keys: content digests, code fingerprints, and why a key missed.

A unit of work (a stage, or one item of a fan-out stage) is identified by the
sha256 of a canonical *key document*: the pipeline's name, the stage id, the
stage's ``version``, the fingerprint of its code, the digest of its input
and, for a fan-out item, the digest of that item (and not of the whole list,
so reordering or extending the list keeps the other items' keys). A
streaming stage's produced items are units too: each keyed by the stage's
parts and its index, and its end by the same parts (see ``KeyParts.item``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import math
import types
from collections.abc import Callable
from typing import Any

import pydantic_core

KEY_FORMAT = 1
"""Bumped when the key document's shape changes: every older key then misses."""

PARTS = ("pipeline", "stage", "version", "code", "input", "item")
"""The parts of a key document, in the order a miss is explained."""


class UndigestableError(TypeError):
    """A value has no canonical JSON form, so it cannot be part of a key."""


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of a JSON-native *value*.

    Keys sorted, no whitespace, UTF-8 kept; NaN and infinities are refused
    (:func:`plain` turns them into tagged strings first).
    """
    return _CANONICAL(value)


# Built once: json.dumps with options builds a new encoder on every call.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def sha256_hex(text: str) -> str:
    """Return the hex sha256 of *text* encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def digest(value: Any) -> str:
    """Return the content digest of *value* (see :func:`plain` for what it sees).

    Raises:
        UndigestableError: *value* (or something inside it) has no JSON form.
    """
    return sha256_hex(canonical_json(plain(value)))


def plain(value: Any) -> Any:
    """Return a JSON-native value that stands for *value* in a digest.

    JSON values are themselves (a dict key starting with ``$`` gains one more
    ``$``, so it never reads as a tag). Anything else becomes a one-key tagged
    object: tuples ``{"$tuple": [...]}``, sets ``{"$set": [...]}`` sorted by
    their canonical text, dicts with non-string keys ``{"$dict": [[k, v],
    ...]}`` sorted likewise, non-finite floats ``{"$float": "nan"}``, and
    other objects (pydantic models, dataclasses, enums, dates, paths...)
    ``{"$type": "module.QualName", "value": ...}`` with pydantic's JSON form
    as the value. The type's name is only text: nothing is ever imported.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return {"$tuple": [plain(v) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {
                ("$" + k if k.startswith("$") else k): plain(v)
                for k, v in value.items()
            }
        pairs = [[plain(k), plain(v)] for k, v in value.items()]
        pairs.sort(key=canonical_json)
        return {"$dict": pairs}
    if isinstance(value, set | frozenset):
        members = [plain(v) for v in value]
        members.sort(key=canonical_json)
        return {"$set": members}
    kind = type(value)
    try:
        converted = pydantic_core.to_jsonable_python(value)
    except Exception as exc:
        raise UndigestableError(
            f"a value of type {kind.__qualname__} has no JSON form"
        ) from exc
    return {
        "$type": f"{kind.__module__}.{kind.__qualname__}",
        "value": plain(converted),
    }


def stage_callable(stage: Any) -> Callable[..., Any] | None:
    """Return the function whose code identifies *stage*: ``execute`` or itself.

    An object streaming stage (no ``execute``, an async generator ``stream``
    method) is identified by its ``stream``.
    """
    execute = getattr(type(stage), "execute", None)
    if execute is None and not isinstance(stage, types.FunctionType):
        stream = getattr(type(stage), "stream", None)
        if stream is not None and inspect.isasyncgenfunction(stream):
            execute = stream
    target: Any = execute if execute is not None else stage
    while isinstance(target, functools.partial):
        target = target.func
    target = getattr(target, "__func__", target)  # bound and class methods
    if isinstance(target, types.FunctionType):
        return target
    call = getattr(type(target), "__call__", None)  # noqa: B004  # the class's method
    return call if isinstance(call, types.FunctionType) else None


def code_fingerprint(stage: Any) -> str:
    """Return the sha256 of the stage callable's code, recursively.

    Covers the bytecode, constants (nested functions, lambdas and
    comprehensions included), and the names it uses. Not covered: the values
    its closure, default arguments or globals hold, the helpers it calls,
    its file name and line numbers. Declare what else must invalidate a
    result with the stage's ``version``.
    """
    function = stage_callable(stage)
    if function is None:
        return sha256_hex(
            f"uncallable:{type(stage).__module__}.{type(stage).__qualname__}"
        )
    return _code_digest(function.__code__)


@functools.lru_cache(maxsize=1024)
def _code_digest(code: types.CodeType) -> str:
    hasher = hashlib.sha256()
    _feed(hasher, code)
    return hasher.hexdigest()


def _feed(hasher: Any, code: types.CodeType) -> None:
    hasher.update(b"code\0")
    hasher.update(code.co_code)
    for names in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
        hasher.update(("\0".join(names) + "\1").encode())
    hasher.update(
        f"{code.co_argcount},{code.co_kwonlyargcount},{code.co_flags}".encode()
    )
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed(hasher, const)
        else:
            hasher.update(b"const\0" + _const_text(const).encode())


def _const_text(const: Any) -> str:
    # Frozenset constants iterate in hash order, which varies per process.
    if isinstance(const, frozenset):
        return "frozenset(" + ",".join(sorted(_const_text(c) for c in const)) + ")"
    if isinstance(const, tuple):
        return "(" + ",".join(_const_text(c) for c in const) + ")"
    return f"{type(const).__name__}:{const!r}"


@dataclasses.dataclass(frozen=True, slots=True)
class KeyParts:
    """The parts of one unit's key document, each as recorded."""

    pipeline: str
    stage: str
    version: str | None
    code: str
    input: str | None
    """Digest of the stage's input (``None`` for a fan-out item)."""
    item: str | None = None
    """Digest of the fan-out item (``None`` for a whole stage); for a streaming
    stage, ``"stream:<index>"`` for each produced item and ``"stream:end"``
    for its end."""
    key: str = dataclasses.field(init=False, repr=False, compare=False)
    """The unit's key: sha256 of the canonical key document."""

    def __post_init__(self) -> None:
        # Computed once: the key is read several times per unit.
        object.__setattr__(self, "key", sha256_hex(canonical_json(self.document())))

    def parts(self) -> dict[str, str | None]:
        """Return the parts by name, as recorded (the key excluded)."""
        return {part: getattr(self, part) for part in PARTS}

    def document(self) -> dict[str, Any]:
        """Return the key document, as hashed."""
        return {
            "format": KEY_FORMAT,
            "pipeline": self.pipeline,
            "stage": self.stage,
            "version": self.version,
            "code": self.code,
            "input": self.input,
            "item": self.item,
        }


def stage_key(
    pipeline: str,
    stage_id: str,
    version: str | None,
    code: str,
    value: Any,
    *,
    item: bool = False,
) -> KeyParts:
    """Return the key parts of a stage run on *value* (or of one fan-out item).

    Raises:
        UndigestableError: *value* has no JSON form.
    """
    if item:
        return KeyParts(pipeline, stage_id, version, code, None, digest(value))
    return KeyParts(pipeline, stage_id, version, code, digest(value))


_WHY = {
    "pipeline": "the pipeline's name changed",
    "stage": "the stage id changed",
    "version": "the stage's version changed",
    "code": "the stage's code changed",
    "input": "its input changed",
    "item": "the item changed",
}


def explain_miss(wanted: KeyParts, recorded: KeyParts | None) -> str:
    """Say in words why *wanted* did not match what the earlier run *recorded*.

    ``recorded`` is ``None`` when the earlier run has no success for the
    unit (it failed, was cancelled, never started, or was in flight at a crash).
    """
    if recorded is None:
        return "no recorded success"
    changed = [
        _WHY[part] for part in PARTS if getattr(wanted, part) != getattr(recorded, part)
    ]
    if recorded.key != wanted.key and not changed:
        changed = ["the key format changed"]
    return "; ".join(changed) if changed else "matches"

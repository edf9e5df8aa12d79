"""The checkpoint codec: JSON by the type a stage declares, never pickle.

An output is stored as JSON text. JSON-native outputs (dicts with string
keys, lists, strings, numbers, booleans, ``None``) need nothing. Any other
output is encoded and decoded by a pydantic ``TypeAdapter`` of the type the
stage *declares*: its ``output_type``, else the return annotation of the
stage function, else the ``T`` of ``StageResult[T]`` on an object stage's
``execute``. The stored text never names a type: decoding validates plain
JSON against the declared type, so nothing read from a store can import a
module, instantiate a class it names, or call anything.
"""

from __future__ import annotations

import collections.abc
import functools
import json
import math
import typing
from typing import Any

import pydantic

from .._exceptions import UnencodableOutputError
from .._results import StageResult
from ._keys import stage_callable


def declared_type(stage: Any, output_type: Any = None) -> Any:
    """Return the output type *stage* declares, or ``None`` if it declares none.

    ``output_type`` wins; then the return annotation of a function stage, or
    the ``T`` of ``StageResult[T]`` returned by an object stage's
    ``execute``. ``Any``, a bare ``StageResult`` or an annotation that cannot
    be resolved count as no declaration.
    """
    if output_type is not None:
        return output_type
    function = stage_callable(stage)
    if function is None:
        return None
    return _declared_by(function, getattr(type(stage), "execute", None) is not None)


_ASYNC_ITERATORS = (
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
)


def declared_item_type(stage: Any, output_type: Any = None) -> Any:
    """Return the type of the items a streaming *stage* declares, or ``None``.

    For a streaming stage ``output_type`` is the type of each item, and it
    wins; then the ``T`` of the ``AsyncIterator[T]``, ``AsyncIterable[T]``
    or ``AsyncGenerator[T, ...]`` its generator is annotated to return.
    """
    if output_type is not None:
        return output_type
    annotation = declared_type(stage)
    if typing.get_origin(annotation) in _ASYNC_ITERATORS:
        args = typing.get_args(annotation)
        if args and args[0] is not Any:
            return args[0]
    return None


@functools.lru_cache(maxsize=4096)
def _declared_by(function: Any, object_stage: bool) -> Any:
    # Cached: resolving string annotations compiles them, per call.
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # an unresolvable forward reference: no declaration
        return None
    annotation = hints.get("return")
    if object_stage:
        metadata = getattr(annotation, "__pydantic_generic_metadata__", None)
        if (
            metadata
            and metadata.get("origin") is StageResult
            and len(metadata.get("args", ())) == 1
        ):
            annotation = metadata["args"][0]
        else:
            return None
    if annotation is None or annotation is Any or annotation is type(None):
        return None
    return annotation


@functools.lru_cache(maxsize=512)
def _adapter(declared: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(declared)


def _adapter_of(declared: Any) -> pydantic.TypeAdapter[Any]:
    try:
        return _adapter(declared)
    except TypeError:  # unhashable annotation (rare): build it each time
        return pydantic.TypeAdapter(declared)


def encode(value: Any, declared: Any = None) -> str:
    """Return *value* as JSON text, by its *declared* type if there is one.

    Raises:
        UnencodableOutputError: the value is not JSON-native and no type is
            declared, or it does not fit the declared type. The message says
            how to fix it.
    """
    if declared is None:
        if not _is_json_native(value):
            raise UnencodableOutputError(
                f"an output of type {type(value).__qualname__} is not JSON-native "
                "and the stage declares no output type; annotate the stage's "
                "return type (or StageResult[T]) or pass output_type="
            )
        return _COMPACT(value)
    try:
        if isinstance(declared, type) and not isinstance(value, declared):
            raise TypeError(f"it is not a {_name(declared)}")
        adapter = _adapter_of(declared)
        text = adapter.dump_json(value, warnings="error").decode("utf-8")
        # Lossy serialisations exist (a model serialises any object as its
        # fields, a custom class as {}): only what comes back equal is kept.
        if adapter.validate_json(text) != value:
            raise ValueError("it does not decode back equal")
    except Exception as exc:
        raise UnencodableOutputError(
            f"an output of type {type(value).__qualname__} cannot be stored as "
            f"its declared type {_name(declared)}: {exc}; make the stage return "
            "that type, or pass an output_type= that fits its output"
        ) from exc
    return text


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def decode(text: str, declared: Any = None) -> Any:
    """Return the output stored as *text*, validated as its *declared* type.

    Raises:
        ValueError: the text is not valid JSON or does not fit the type.
    """
    if declared is None:
        return json.loads(text)
    try:
        return _adapter_of(declared).validate_json(text)
    except pydantic.ValidationError as exc:
        raise ValueError(f"stored output does not fit {_name(declared)}") from exc


def _name(declared: Any) -> str:
    return getattr(declared, "__qualname__", None) or repr(declared)


def _is_json_native(value: Any) -> bool:
    """Return whether *value* survives a JSON round trip equal and of the same type.

    Tuples, non-string keys and non-finite floats do not; subclasses of the
    JSON types (enums, named tuples) do not either.
    """
    pending = [value]
    while pending:
        current = pending.pop()
        kind = type(current)
        if current is None or kind is str or kind is bool or kind is int:
            continue
        if kind is float:
            if not math.isfinite(current):
                return False
        elif kind is list:
            pending.extend(current)
        elif kind is dict:
            for key, item in current.items():
                if type(key) is not str:
                    return False
                pending.append(item)
        else:
            return False
    return True

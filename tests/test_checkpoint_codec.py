"""The checkpoint codec: JSON by declared type, never pickle, never a named class."""

from __future__ import annotations

import dataclasses
import datetime
import json
import pickle
from typing import Any

import pydantic
import pytest

from actors import PipelineContext, StageResult, success_result
from actors._checkpoint._codec import declared_type, decode, encode
from actors.checkpoint import UnencodableOutputError


class Transcript(pydantic.BaseModel):
    text: str
    words: list[str]
    at: datetime.datetime


@dataclasses.dataclass
class Summary:
    title: str
    score: float


class Custom:
    def __init__(self, value: int) -> None:
        self.value = value


async def transcribe(path: str, context: PipelineContext) -> Transcript:
    return Transcript(text=path, words=[path], at=datetime.datetime(2026, 1, 2))


async def summarise(text: str, context: PipelineContext) -> Summary:
    return Summary(text, 0.5)


async def untyped(value, context):  # type: ignore[no-untyped-def]  # undeclared on purpose
    return Custom(value)


async def native(value: Any, context: PipelineContext) -> Any:
    return {"a": [1, 2.5, None, True, "x"]}


class ObjectStage:
    name = "object"

    async def execute(
        self, value: str, context: PipelineContext
    ) -> StageResult[Transcript]:
        return success_result(await transcribe(value, context))


class BareObjectStage:
    name = "bare"

    async def execute(self, value: str, context: PipelineContext) -> StageResult:
        return success_result(value)


def test_declared_type_of_each_stage_form() -> None:
    """Return annotation, StageResult[T], output_type, or nothing."""
    assert declared_type(transcribe) is Transcript
    assert declared_type(summarise) is Summary
    assert declared_type(ObjectStage()) is Transcript
    assert declared_type(BareObjectStage()) is None
    assert declared_type(native) is None
    assert declared_type(untyped) is None
    assert declared_type(untyped, output_type=list[int]) == list[int]


async def test_pydantic_model_round_trips_equal_and_of_its_type() -> None:
    """A model output decodes equal to, and of the same type as, the original."""
    output = await transcribe("a.wav", PipelineContext())
    declared = declared_type(transcribe)
    text = encode(output, declared)
    assert json.loads(text) == {
        "text": "a.wav",
        "words": ["a.wav"],
        "at": "2026-01-02T00:00:00",
    }
    back = decode(text, declared)
    assert type(back) is Transcript
    assert back == output


def test_dataclass_and_generic_types_round_trip() -> None:
    """Dataclasses, tuples and sets round-trip through their declared types."""
    cases: list[tuple[Any, Any]] = [
        (Summary("t", 0.25), Summary),
        ((1, "a"), tuple[int, str]),
        ({1, 2, 3}, set[int]),
        ({"k": Summary("x", 1.0)}, dict[str, Summary]),
    ]
    for value, declared in cases:
        back = decode(encode(value, declared), declared)
        assert back == value
        assert type(back) is type(value)


def test_json_native_outputs_need_no_declaration() -> None:
    """JSON values round-trip with no declared type."""
    value = {"a": [1, 2.5, None, True, "x"], "b": {"c": []}}
    assert decode(encode(value)) == value


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (Custom(1), "Custom"),
        ((1, 2), "tuple"),
        ({1: "a"}, "dict"),
        (float("inf"), "float"),
        ([Summary("x", 1.0)], "list"),
    ],
)
def test_undeclared_non_json_output_is_refused(value: Any, kind: str) -> None:
    """Without a declared type, anything that would not round-trip is refused."""
    with pytest.raises(
        UnencodableOutputError,
        match=rf"^an output of type {kind} is not JSON-native and the stage "
        r"declares no output type; annotate",
    ):
        encode(value)


def test_output_not_fitting_its_declared_type_is_refused() -> None:
    """An output of another type than declared is refused, with the fix."""
    with pytest.raises(
        UnencodableOutputError,
        match=r"^an output of type Custom cannot be stored as its declared type "
        r"Transcript: .*; make the stage return that type",
    ):
        encode(Custom(1), Transcript)


def test_decode_never_imports_or_calls_what_the_text_names() -> None:
    """Text naming a class or function is plain data, validated by the declared type."""
    hostile = json.dumps(
        {"__class__": "os.system", "py/object": "subprocess.Popen", "args": ["id"]}
    )
    assert decode(hostile) == {
        "__class__": "os.system",
        "py/object": "subprocess.Popen",
        "args": ["id"],
    }
    with pytest.raises(ValueError, match=r"^stored output does not fit Transcript$"):
        decode(hostile, Transcript)


def test_pickle_bytes_are_not_json() -> None:
    """A pickle payload in place of the JSON text is refused as invalid, not loaded."""
    payload = pickle.dumps(Custom(3)).decode("latin-1")
    with pytest.raises(ValueError, match=r"Expecting value|Invalid"):
        decode(payload)
    with pytest.raises(ValueError, match=r"^stored output does not fit Summary$"):
        decode(payload, Summary)

"""Checkpoint keys: stable digests, code fingerprints, and what changes a key."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pydantic
import pytest

from actors import PipelineContext, StageResult, success_result
from actors._checkpoint._keys import (
    KeyParts,
    UndigestableError,
    canonical_json,
    code_fingerprint,
    digest,
    explain_miss,
    stage_key,
)

ROOT = Path(__file__).resolve().parent.parent


class Point(pydantic.BaseModel):
    x: int
    y: int


@dataclasses.dataclass
class Box:
    width: float


def test_digest_ignores_dict_order_and_set_order() -> None:
    """Equal dicts and sets digest alike whatever their insertion order."""
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"x", "y", "z"}) == digest({"z", "y", "x"})


def test_digest_is_the_same_in_another_process() -> None:
    """Sets of strings digest alike under a different hash seed (canonical order)."""
    value = "{'alpha', 'beta', 'gamma', 'delta'}"
    code = f"from actors._checkpoint._keys import digest; print(digest({value}))"
    seen = set()
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)},
        )
        seen.add(done.stdout.strip())
    assert seen == {digest({"alpha", "beta", "gamma", "delta"})}


def test_digest_tells_apart_what_json_would_merge() -> None:
    """Tuples and lists, 1 and 1.0, NaN and the string "nan", tags and keys differ."""
    values: list[Any] = [
        [1, 2],
        (1, 2),
        1,
        1.0,
        True,
        float("nan"),
        "nan",
        {"$tuple": [1, 2]},
        {1: "a"},
        {"1": "a"},
        Point(x=1, y=2),
        {"x": 1, "y": 2},
    ]
    digests = [digest(v) for v in values]
    assert len(set(digests)) == len(values)
    assert digest(float("nan")) == digest(float("nan"))  # NaN != NaN, digests equal


def test_digest_of_models_and_dataclasses_follows_their_content() -> None:
    """Models and dataclasses digest by type name and field values."""
    assert digest(Point(x=1, y=2)) == digest(Point(x=1, y=2))
    assert digest(Point(x=1, y=2)) != digest(Point(x=1, y=3))
    assert digest(Box(1.5)) == digest(Box(1.5))
    assert digest(Box(1.5)) != digest(Box(2.5))


def test_undigestable_value_is_refused() -> None:
    """A value with no JSON form raises UndigestableError."""

    class Opaque:
        pass

    with pytest.raises(UndigestableError, match=r"^a value of type .*Opaque has no"):
        digest({"a": [Opaque()]})


def test_canonical_json_refuses_nan() -> None:
    """Canonical JSON has no NaN: plain() tags it first."""
    with pytest.raises(ValueError, match="not JSON compliant"):
        canonical_json(float("nan"))
    assert canonical_json({"b": 1, "a": [1.5, None]}) == '{"a":[1.5,null],"b":1}'


def _compile(source: str, name: str, first_line: int = 1) -> Any:
    namespace: dict[str, Any] = {}
    padded = "\n" * (first_line - 1) + textwrap.dedent(source)
    exec(compile(padded, "<stage>", "exec"), namespace)
    return namespace[name]


STAGE = """
async def stage(value, context):
    def helper(v):
        return v * 2
    return [helper(v) + 1 for v in value]
"""


def test_fingerprint_ignores_location_and_closure_values() -> None:
    """The same code at another line, or closing over other values, keeps its key."""
    assert code_fingerprint(_compile(STAGE, "stage")) == code_fingerprint(
        _compile(STAGE, "stage", first_line=40)
    )

    def make(factor: int) -> Any:
        async def scaled(value: int, context: PipelineContext) -> int:
            return value * factor

        return scaled

    assert code_fingerprint(make(2)) == code_fingerprint(make(3))


def test_fingerprint_sees_constants_nested_code_and_names() -> None:
    """Changing a constant, a nested function's body or a called name changes it."""
    base = code_fingerprint(_compile(STAGE, "stage"))
    changed = [
        STAGE.replace("+ 1", "+ 2"),  # a constant
        STAGE.replace("v * 2", "v * 3"),  # inside the nested helper
        STAGE.replace("v * 2", "v ** 2"),  # an operator of the nested helper
        STAGE.replace("helper(v) + 1", "abs(helper(v))"),  # a name it uses
    ]
    prints = {code_fingerprint(_compile(s, "stage")) for s in changed}
    assert base not in prints
    assert len(prints) == len(changed)


def test_fingerprint_of_an_object_stage_is_its_execute() -> None:
    """Object stages are fingerprinted by their class's execute, not their fields."""

    class Doubler:
        def __init__(self, name: str) -> None:
            self.name = name

        async def execute(self, value: int, context: PipelineContext) -> StageResult:
            return success_result(value * 2)

    class Tripler(Doubler):
        async def execute(self, value: int, context: PipelineContext) -> StageResult:
            return success_result(value * 3)

    assert code_fingerprint(Doubler("a")) == code_fingerprint(Doubler("b"))
    assert code_fingerprint(Doubler("a")) != code_fingerprint(Tripler("a"))


def test_every_part_changes_the_key() -> None:
    """Pipeline, stage id, version, code, input and item each change the key."""
    base = stage_key("p", "s", None, "c0", {"in": 1})
    variants = [
        stage_key("q", "s", None, "c0", {"in": 1}),
        stage_key("p", "t", None, "c0", {"in": 1}),
        stage_key("p", "s", "2", "c0", {"in": 1}),
        stage_key("p", "s", None, "c1", {"in": 1}),
        stage_key("p", "s", None, "c0", {"in": 2}),
        stage_key("p", "s", None, "c0", {"in": 1}, item=True),
    ]
    keys = {v.key for v in variants}
    assert base.key not in keys
    assert len(keys) == len(variants)
    assert base.key == stage_key("p", "s", None, "c0", {"in": 1}).key
    assert len(base.key) == 64


def test_fan_out_item_key_depends_on_the_item_only() -> None:
    """An item's key is the same whatever list it came in."""
    one = stage_key("p", "s", None, "c", {"n": 7}, item=True)
    assert one.input is None
    assert one == stage_key("p", "s", None, "c", {"n": 7}, item=True)
    assert one.item == digest({"n": 7})


def test_explain_miss_names_the_changed_parts() -> None:
    """The explanation lists every part that differs, in order."""
    wanted = KeyParts("p", "s", "2", "c1", "i0")
    assert explain_miss(wanted, None) == "no recorded success"
    assert explain_miss(wanted, wanted) == "matches"
    recorded = KeyParts("p", "s", "1", "c0", "i0")
    assert explain_miss(wanted, recorded) == (
        "the stage's version changed; the stage's code changed"
    )
    assert explain_miss(wanted, KeyParts("p", "s", "2", "c1", "i9")) == (
        "its input changed"
    )

"""What a store holds: run records and journal entries, and their checked JSON form.

Each record is stored as one line of JSON, ``{"digest": ..., "doc": {...}}``,
where the digest is the sha256 of the document's canonical JSON. Reading
checks the digest and the shape of every field, so a truncated, corrupted or
edited record is refused (a miss), never half-read. The digest detects damage
and careless edits; it is not a signature (whoever can write the store can
recompute it). What makes a hostile store harmless is that a record is only
ever data: plain JSON validated field by field, decoded by a declared type.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from ._keys import PARTS, KeyParts, canonical_json, sha256_hex

RUN_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
"""What a run id may look like (it names files in a FileStore)."""

EFFECT_OPS = ("set_state", "add_metric", "increment_metric")
"""The context calls a stage's entry replays when it is restored."""


def valid_run_id(run_id: object) -> bool:
    """Return whether *run_id* is a string a store may use as a run id."""
    return isinstance(run_id, str) and RUN_ID.fullmatch(run_id) is not None


@dataclasses.dataclass(frozen=True, slots=True)
class RunInfo:
    """One run as a store records it.

    ``status`` is ``"running"`` until the run ends; a run whose process was
    killed stays ``"running"``. ``started_at`` and ``finished_at`` are Unix
    times (seconds). ``stats`` counts units, e.g. ``{"restored": 3, "ran": 7}``.
    """

    run_id: str
    pipeline: str
    started_at: float
    status: str = "running"
    finished_at: float | None = None
    stats: Mapping[str, int] = dataclasses.field(default_factory=dict)
    resumed_from: str | None = None
    """The run this one resumed, if any."""


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One unit's recorded success: a stage, or one item of a fan-out stage.

    ``output`` is the JSON text made by the codec; ``effects`` are the
    context calls the unit made, ``(op, key, value)`` with a JSON-native value,
    replayed in order when it is restored.
    """

    run_id: str
    parts: KeyParts
    output: str
    effects: tuple[tuple[str, str, Any], ...] = ()
    recorded_at: float = 0.0
    origin: str | None = None
    """The run that produced the output, if not ``run_id`` (it was restored)."""

    @property
    def key(self) -> str:
        """The unit's key."""
        return self.parts.key


def _line(doc: dict[str, Any]) -> str:
    text = canonical_json(doc)
    return json.dumps({"digest": sha256_hex(text), "doc": doc}, ensure_ascii=False)


def _doc(line: str | bytes) -> dict[str, Any] | None:
    """Return the document of a stored line whose digest checks, else None."""
    try:
        record = json.loads(line)
        if not isinstance(record, dict) or set(record) != {"digest", "doc"}:
            return None
        doc = record["doc"]
        if not isinstance(doc, dict):
            return None
        if sha256_hex(canonical_json(doc)) != record["digest"]:
            return None
    except (ValueError, TypeError, RecursionError):
        return None
    return doc


def run_line(run: RunInfo) -> str:
    """Return the stored line of *run*."""
    return _line(
        {
            "kind": "run",
            "run_id": run.run_id,
            "pipeline": run.pipeline,
            "started_at": run.started_at,
            "status": run.status,
            "finished_at": run.finished_at,
            "stats": dict(run.stats),
            "resumed_from": run.resumed_from,
        }
    )


def parse_run(line: str | bytes) -> RunInfo | None:
    """Return the run stored as *line*, or None if it is damaged in any way."""
    doc = _doc(line)
    if doc is None or doc.get("kind") != "run":
        return None
    run_id, pipeline, stats = doc.get("run_id"), doc.get("pipeline"), doc.get("stats")
    started, status, finished = (
        doc.get("started_at"),
        doc.get("status"),
        doc.get("finished_at"),
    )
    resumed_from = doc.get("resumed_from")
    if not (
        valid_run_id(run_id)
        and (resumed_from is None or valid_run_id(resumed_from))
        and isinstance(pipeline, str)
        and _number(started)
        and isinstance(status, str)
        and (finished is None or _number(finished))
        and isinstance(stats, dict)
        and all(isinstance(k, str) and type(v) is int for k, v in stats.items())
    ):
        return None
    assert isinstance(run_id, str)  # for mypy: checked above
    assert isinstance(started, int | float)
    return RunInfo(
        run_id,
        pipeline,
        float(started),
        status,
        finished,
        stats,
        None if resumed_from is None else str(resumed_from),
    )


def entry_line(entry: Entry) -> str:
    """Return the stored line of *entry*."""
    return _line(
        {
            "kind": "entry",
            "run_id": entry.run_id,
            "key": entry.key,
            "parts": entry.parts.parts(),
            "output": entry.output,
            "effects": [list(effect) for effect in entry.effects],
            "recorded_at": entry.recorded_at,
            "origin": entry.origin,
        }
    )


def parse_entry(line: str | bytes) -> Entry | None:
    """Return the entry stored as *line*, or None if it is damaged in any way.

    Besides the digest, the key is recomputed from the recorded parts and
    must match, and every field must have its type.
    """
    doc = _doc(line)
    if doc is None or doc.get("kind") != "entry":
        return None
    run_id, parts, output = doc.get("run_id"), doc.get("parts"), doc.get("output")
    effects, recorded_at = doc.get("effects"), doc.get("recorded_at")
    origin = doc.get("origin")
    if not (
        valid_run_id(run_id)
        and (origin is None or valid_run_id(origin))
        and isinstance(output, str)
        and _number(recorded_at)
        and isinstance(parts, dict)
        and set(parts) == set(PARTS)
        and all(v is None or isinstance(v, str) for v in parts.values())
        and isinstance(parts["pipeline"], str)
        and isinstance(parts["stage"], str)
        and isinstance(parts["code"], str)
        and isinstance(effects, list)
    ):
        return None
    checked: list[tuple[str, str, Any]] = []
    for effect in effects:
        if not (
            isinstance(effect, list)
            and len(effect) == 3
            and effect[0] in EFFECT_OPS
            and isinstance(effect[1], str)
            and (effect[0] != "increment_metric" or _number(effect[2]))
        ):
            return None
        checked.append((effect[0], effect[1], effect[2]))
    key_parts = KeyParts(**parts)
    if key_parts.key != doc.get("key"):
        return None
    assert isinstance(run_id, str)  # for mypy: checked above
    assert isinstance(recorded_at, int | float)
    return Entry(
        run_id,
        key_parts,
        output,
        tuple(checked),
        float(recorded_at),
        None if origin is None else str(origin),
    )


def _number(value: object) -> bool:
    return type(value) in (int, float)

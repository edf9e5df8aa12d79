"""Helpers for the checkpoint tests, and a store writer run as a separate process.

``python tests/checkpoint_fixtures.py KIND PATH PREFIX RUNS`` writes RUNS runs
named PREFIX0, PREFIX1, ... into a FileStore or SQLiteStore at PATH, each with
BATCHES batches of entries; RUNS of 0 writes until killed.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

from actors._checkpoint import Entry, FileStore, RunInfo, SQLiteStore, Store
from actors._checkpoint._keys import stage_key

BATCHES = 4
PER_BATCH = 5


def open_store(kind: str, path: Path) -> Store:
    """Return the store of *kind* ("file" or "sqlite") at *path*."""
    if kind == "file":
        return FileStore(path)
    return SQLiteStore(path / "store.db")


def entry(run_id: str, stage: str, value: object, output: str = "1") -> Entry:
    """Return an entry of *run_id* for *stage* run on *value*."""
    return Entry(
        run_id,
        stage_key("pipe", stage, None, "code", value),
        output,
        (("set_state", "seen", value),),
        time.time(),
    )


def write_run(store: Store, run_id: str, pipeline: str = "shared") -> None:
    """Write one complete run: its start, BATCHES batches, its end."""
    store.begin_run(RunInfo(run_id, pipeline, time.time()))
    for batch in range(BATCHES):
        store.append(
            run_id,
            [
                entry(run_id, f"s{batch}", [run_id, n], output=f'"{run_id}-{n}"')
                for n in range(PER_BATCH)
            ],
        )
    store.finish_run(run_id, "succeeded", {"ran": BATCHES * PER_BATCH})


def main(argv: list[str]) -> None:
    """Write runs as the module docstring says."""
    kind, path, prefix, runs = argv[0], Path(argv[1]), argv[2], int(argv[3])
    store = open_store(kind, path)
    counter = itertools.count() if runs == 0 else range(runs)
    for number in counter:
        write_run(store, f"{prefix}{number}")


if __name__ == "__main__":
    main(sys.argv[1:])

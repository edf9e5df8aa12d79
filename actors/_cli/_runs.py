"""The ``actors runs`` and ``actors store`` commands: durable runs from a shell.

Wired into the main CLI with ``register(subparsers)``; ``actors run`` takes
``--store`` and ``--resume`` through :func:`add_store_options` and
:func:`store_options`. Exit codes: 0 ok, 2 when the input cannot be used
(no such run, a bad duration).

- ``actors runs list --store PATH``: id, pipeline, start, status, restored and
  ran counts, oldest first.
- ``actors runs show RUN_ID --store PATH``: per stage, how many units were
  restored and how many ran, and for those that ran, why the resumed run's
  result did not match.
- ``actors store prune --store PATH --older-than 7d``: delete old runs.

``PATH`` is a directory (a :class:`FileStore`) or a ``.db``, ``.sqlite`` or
``.sqlite3`` file, or any existing file (a :class:`SQLiteStore`).
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .._checkpoint import Entry, FileStore, SQLiteStore, Store
from .._checkpoint._keys import KeyParts, explain_miss
from .._exceptions import UnknownRunError

_EXIT_OK = 0
_EXIT_BAD_INPUT = 2

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")


def open_store(path: str | Path) -> Store:
    """Return the store at *path*: SQLite for a database file, else a directory."""
    target = Path(path)
    if target.suffix in _SQLITE_SUFFIXES or target.is_file():
        return SQLiteStore(target)
    return FileStore(target)


def parse_duration(text: str) -> float:
    """Return the seconds in ``"90s"``, ``"30m"``, ``"12h"``, ``"7d"`` or ``"2w"``.

    Raises:
        ValueError: *text* is not a number followed by one of s, m, h, d, w.
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}; use a number and a unit: 90s, 30m, "
            "12h, 7d or 2w"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--store PATH`` and ``--resume RUN_ID|latest`` to ``actors run``."""
    parser.add_argument(
        "--store",
        metavar="PATH",
        help="journal the run in this store (a directory, or a .db file)",
    )
    parser.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="restore what this run (or 'latest') journaled; needs --store",
    )


def store_options(args: argparse.Namespace) -> tuple[Store | None, str | None]:
    """Return the ``store=`` and ``resume=`` to pass to ``execute`` for *args*."""
    store = None if args.store is None else open_store(args.store)
    return store, args.resume


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``runs`` and ``store`` commands to the main parser's *subparsers*.

    Each subcommand sets ``handler``: a function of the parsed arguments that
    returns the exit code.
    """
    runs = subparsers.add_parser(
        "runs",
        help="list and inspect the runs of a checkpoint store",
        description="List and inspect durable runs. Exit status: 0 ok, 2 no such run.",
    )
    commands = runs.add_subparsers(
        dest="runs_command", required=True, metavar="COMMAND"
    )
    listing = commands.add_parser("list", help="every run: id, pipeline, start, status")
    _add_store(listing)
    listing.add_argument("--pipeline", help="only runs of this pipeline")
    listing.set_defaults(handler=_list)
    show = commands.add_parser(
        "show", help="one run per stage: restored, ran, and why it missed"
    )
    show.add_argument("run_id", metavar="RUN_ID", help="a run id, or 'latest'")
    _add_store(show)
    show.add_argument(
        "--pipeline", help="with 'latest': the latest run of this pipeline"
    )
    show.set_defaults(handler=_show)

    store = subparsers.add_parser("store", help="maintain a checkpoint store")
    actions = store.add_subparsers(
        dest="store_command", required=True, metavar="COMMAND"
    )
    prune = actions.add_parser("prune", help="delete runs older than a duration")
    _add_store(prune)
    prune.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="e.g. 7d, 12h, 30m (units s, m, h, d, w)",
    )
    prune.set_defaults(handler=_prune)


def main_runs(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    """Run ``actors runs ...`` or ``actors store ...``; return the exit code."""
    parser = argparse.ArgumentParser(prog="actors")
    register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else _EXIT_BAD_INPUT
    args.out = out
    return int(args.handler(args))


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", required=True, metavar="PATH", help="a directory, or a .db file"
    )


def _out(args: argparse.Namespace) -> TextIO:
    stream: TextIO = getattr(args, "out", None) or sys.stdout
    return stream


def _when(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
        out.write(line.rstrip() + "\n")


def _list(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    out = _out(args)
    runs = store.list_runs(args.pipeline)
    if not runs:
        out.write("no runs\n")
        return _EXIT_OK
    rows = [["RUN", "PIPELINE", "STARTED (UTC)", "STATUS", "RESTORED", "RAN"]]
    for run in runs:
        stats = run.stats
        rows.append(
            [
                run.run_id,
                run.pipeline,
                _when(run.started_at),
                run.status,
                str(stats.get("restored", "-")),
                str(stats.get("ran", "-")),
            ]
        )
    _table(rows, out)
    return _EXIT_OK


def _show(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    out = _out(args)
    try:
        if args.run_id == "latest":
            if args.pipeline is None:
                runs = store.list_runs()
                if not runs:
                    raise UnknownRunError("the store holds no run")
                run_id = runs[-1].run_id
            else:
                run_id = store.latest_run(args.pipeline).run_id
        else:
            run_id = args.run_id
        contents = store.read_journal(run_id)
    except UnknownRunError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return _EXIT_BAD_INPUT
    run = contents.run
    earlier: dict[str, list[Entry]] = {}
    if run.resumed_from is not None:
        try:
            for entry in store.read_journal(run.resumed_from).entries:
                earlier.setdefault(entry.parts.stage, []).append(entry)
        except UnknownRunError:
            earlier = {}
    out.write(
        f"run {run.run_id} of {run.pipeline!r}, started {_when(run.started_at)} UTC, "
        f"{run.status}"
    )
    if run.resumed_from is not None:
        out.write(f", resumed from {run.resumed_from}")
    out.write("\n")
    if contents.corrupt:
        out.write(f"{contents.corrupt} damaged journal record(s) ignored\n")
    stages: dict[str, list[Entry]] = {}
    for entry in contents.entries:
        stages.setdefault(entry.parts.stage, []).append(entry)
    if not stages:
        out.write("no unit succeeded in this run's journal\n")
        return _EXIT_OK
    rows = [["STAGE", "RESTORED", "RAN", "WHY IT RAN"]]
    for stage, entries in stages.items():
        restored = [e for e in entries if e.origin is not None]
        ran = [e for e in entries if e.origin is None]
        why = "-"
        if ran:
            why = _why(ran, earlier.get(stage), run.resumed_from)
        rows.append([stage, str(len(restored)), str(len(ran)), why])
    _table(rows, out)
    return _EXIT_OK


def _why(ran: list[Entry], before: list[Entry] | None, resumed: str | None) -> str:
    if resumed is None:
        return "not a resumed run"
    if not before:
        return f"no recorded success in {resumed}"
    reasons = dict.fromkeys(
        explain_miss(entry.parts, _closest(entry, before)) for entry in ran
    )
    return "; ".join(reasons)


def _closest(entry: Entry, before: list[Entry]) -> KeyParts | None:
    """Return the earlier key of the same unit, or None (a new item, say)."""
    if entry.parts.item is not None:
        # Items are matched by content: a different item is simply new.
        same = [e for e in before if e.parts.item == entry.parts.item]
        return same[-1].parts if same else None
    whole = [e for e in before if e.parts.item is None]
    return whole[-1].parts if whole else None


def _prune(args: argparse.Namespace) -> int:
    try:
        seconds = parse_duration(args.older_than)
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return _EXIT_BAD_INPUT
    gone = open_store(args.store).prune(seconds)
    _out(args).write(f"deleted {len(gone)} run(s)\n")
    return _EXIT_OK

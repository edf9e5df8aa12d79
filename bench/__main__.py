"""``python -m bench [part ...] [--quick]``: run the benchmarks, print one table."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from . import (
    _cancel,
    _dag,
    _durable,
    _fanout,
    _limits,
    _makespan,
    _memory,
    _offload,
    _profile,
    _scaling,
    _streaming,
)
from ._common import Row, machine, table

PARTS: dict[str, Callable[[bool], list[Row]]] = {
    "dag": _dag.run,
    "fanout": _fanout.run,
    "cancel": _cancel.run,
    "scaling": _scaling.run,
    "memory": _memory.run,
    "makespan": _makespan.run,
    "offload": _offload.run,
    "durable": _durable.run,
    "streaming": _streaming.run,
}
EXTRA: dict[str, Callable[[bool], list[Row]]] = {
    "limits": _limits.run,
    "profile": _profile.run,
}
"""Parts run only when named (they are diagnostics, not measurements)."""


def main(argv: list[str] | None = None) -> int:
    """Run the chosen parts (all by default) and print their table."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "parts",
        nargs="*",
        choices=[*PARTS, *EXTRA, []],
        metavar="part",
        help=f"what to run, any of: {', '.join([*PARTS, *EXTRA])} "
        f"(default: {', '.join(PARTS)})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions (noisier medians)"
    )
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for name in args.parts or list(PARTS):
        begin = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        part = {**PARTS, **EXTRA}[name](args.quick)
        rows.extend(part)
        took = time.perf_counter() - begin
        # Each part's rows as soon as it ends: a long run cut short keeps them.
        print(table(part), file=sys.stderr)
        print(f"  {name} took {took:.0f} s", file=sys.stderr, flush=True)
    info = machine()
    print(
        f"machine: {info['cpu']}, nproc {info['nproc']}, Python {info['python']}, "
        f"trio {info['trio']}, {info['platform']}"
    )
    print(table(rows))
    return 1 if any(row.verdict == "MISSED" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

"""``actors graph TARGET``: the pipeline as a Mermaid or DOT diagram."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._diagram import format_for_path, render_diagram
from .._util import printable
from ._common import EXIT_OK, EXIT_USAGE, err, print_problems
from ._target import TargetError, load_pipeline


def cmd_graph(args: argparse.Namespace) -> int:
    """Print or write the diagram; return 0, or 2 for a bad target or path."""
    try:
        pipeline, _ = load_pipeline(args.target)
    except TargetError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    errors = pipeline.validate_pipeline()
    if errors:
        print_problems(pipeline, errors)
        return EXIT_USAGE
    fmt = args.format
    if fmt is None:
        fmt = "mermaid" if args.output is None else format_for_path(args.output)
    text = render_diagram(pipeline, fmt)
    if args.output is None:
        # Printed, the text may reach a terminal: no raw control characters.
        sys.stdout.write(printable(text, newlines=True))
        return EXIT_OK
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        err(f"error: cannot write {args.output}: {exc.strerror or exc}")
        return EXIT_USAGE
    return EXIT_OK

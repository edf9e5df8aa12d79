"""``actors validate TARGET``: every problem of a definition, or ``ok``."""

from __future__ import annotations

import argparse

from .._util import printable
from ._common import EXIT_OK, EXIT_USAGE, err
from ._target import TargetError, load_pipeline


def cmd_validate(args: argparse.Namespace) -> int:
    """Print every problem, or ``ok``; return 0 when valid, else 2."""
    try:
        pipeline, _ = load_pipeline(args.target)
    except TargetError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    errors = pipeline.validate_pipeline()
    if errors:
        noun = "problem" if len(errors) == 1 else "problems"
        print(printable(f"pipeline {pipeline.name!r}: {len(errors)} {noun}"))
        for error in errors:
            print(printable(f"  - {error}"))
        return EXIT_USAGE
    count = len(pipeline.stages)
    print(
        printable(f"ok: pipeline {pipeline.name!r}, {count} stage{'s' * (count != 1)}")
    )
    return EXIT_OK

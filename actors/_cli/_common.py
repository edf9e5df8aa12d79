"""What every command shares: exit codes and one-line messages on stderr."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .._definition import PipelineDefinition
from .._util import printable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process it killed


def err(*lines: str) -> None:
    """Print *lines* on stderr, control characters made visible."""
    for line in lines:
        print(printable(line), file=sys.stderr, flush=True)


def print_problems(pipeline: PipelineDefinition, errors: Sequence[str]) -> None:
    """Print a definition's problems on stderr, one per line."""
    noun = "problem" if len(errors) == 1 else "problems"
    err(f"pipeline {pipeline.name!r} is invalid ({len(errors)} {noun}):")
    err(*(f"  - {error}" for error in errors))

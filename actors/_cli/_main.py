"""The ``actors`` command line: run, validate and draw pipelines.

``actors run TARGET``, ``actors validate TARGET``, ``actors graph TARGET``,
and ``actors logs ...``. Every subcommand sets ``handler=fn`` with
``fn(args) -> int``; :func:`main` returns that exit code:

* 0: success (``validate``: the definition is valid);
* 1: the pipeline ran and failed (including its own timeout);
* 2: bad usage, a target that cannot be loaded, or an invalid definition
  (every problem is printed);
* 130: interrupted by Ctrl-C, after the run shut down cleanly;
* 143: stopped by SIGTERM (``docker stop``, systemd, CI), the same way.

A TARGET is ``module:attr`` or ``path/to/file.py:attr`` (``attr`` defaults to
``pipeline``) naming a :class:`PipelineDefinition` or a zero-argument function
returning one. ``--context`` names a context factory the same way, and
``--context :attr`` looks in the target's own module.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

import trio

from .._diagram import FORMATS
from .._version import __version__
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    err,
)
from ._graph import cmd_graph
from ._logs import register as register_logs
from ._run import Terminated, cmd_run, sigterm_as_interrupt
from ._runs import add_store_options
from ._runs import register as register_runs
from ._validate import cmd_validate


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if math.isnan(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


_TARGET_HELP = (
    "module:attr or path/to/file.py:attr (attr defaults to 'pipeline'): "
    "a PipelineDefinition, or a function with no arguments returning one"
)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``actors`` argument parser, every subcommand included."""
    parser = argparse.ArgumentParser(
        prog="actors",
        description="Run, validate and draw actors pipelines.",
        epilog="TARGET is module:attr or path/to/file.py:attr (attr defaults to "
        "'pipeline'), naming a PipelineDefinition or a function returning one.",
    )
    parser.add_argument("--version", action="version", version=f"actors {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = subparsers.add_parser(
        "run",
        help="run a pipeline",
        description="Run a pipeline, showing progress and a summary. Exit codes: "
        "0 success, 1 pipeline failed, 2 invalid target or definition, "
        "130 interrupted (Ctrl-C), 143 terminated (SIGTERM).",
    )
    run.add_argument("target", metavar="TARGET", help=_TARGET_HELP)
    given = run.add_mutually_exclusive_group()
    given.add_argument("--input", metavar="JSON", help="initial input, as JSON")
    given.add_argument(
        "--input-file", metavar="PATH", help="read the initial input (JSON) from PATH"
    )
    run.add_argument(
        "--context",
        metavar="TARGET",
        help="a function returning the PipelineContext (':attr' looks in "
        "TARGET's module)",
    )
    run.add_argument(
        "--log-format",
        choices=("console", "json"),
        help="log every event in this format (to stderr unless --log-file)",
    )
    run.add_argument(
        "--log-file",
        metavar="PATH",
        help="append the events to PATH (JSON lines unless --log-format console)",
    )
    run.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="lowest level logged (debug includes fan-out items); default info",
    )
    run.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="bound the whole run (the pipeline's own timeout_ms still applies)",
    )
    run.add_argument(
        "--no-progress", action="store_true", help="show only the final summary"
    )
    run.add_argument(
        "--graph",
        metavar="PATH",
        help="write the diagram coloured by final status (DOT for .dot/.gv, "
        "else Mermaid)",
    )
    run.set_defaults(handler=cmd_run)

    validate = subparsers.add_parser(
        "validate",
        help="check a pipeline definition",
        description="Print every problem of the definition, or 'ok'. "
        "Exit codes: 0 valid, 2 invalid or not loadable.",
    )
    validate.add_argument("target", metavar="TARGET", help=_TARGET_HELP)
    validate.set_defaults(handler=cmd_validate)

    graph = subparsers.add_parser(
        "graph",
        help="draw a pipeline as a diagram",
        description="Print (or write) the pipeline as a Mermaid or DOT diagram.",
    )
    graph.add_argument("target", metavar="TARGET", help=_TARGET_HELP)
    graph.add_argument(
        "--format",
        choices=FORMATS,
        help="diagram format (default: from --output's suffix, else mermaid)",
    )
    graph.add_argument("--output", metavar="PATH", help="write to PATH, not stdout")
    graph.set_defaults(handler=cmd_graph)

    register_logs(subparsers)
    register_runs(subparsers)
    add_store_options(run)
    return parser


def main(
    argv: Sequence[str] | None = None, *, clock: trio.abc.Clock | None = None
) -> int:
    """Run the ``actors`` command line and return its exit code.

    Ctrl-C or SIGTERM outside a run (while loading the target, say) ends the
    command with one line and exit 130 or 143; inside a run they stop it
    cleanly first (see :mod:`actors._cli._run`).

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
        clock: A trio clock for ``actors run`` (tests pass a ``MockClock``).
    """
    try:
        with sigterm_as_interrupt():
            return _main(argv, clock)
    except KeyboardInterrupt as exc:
        err("aborted")
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None, clock: trio.abc.Clock | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (code 2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.clock = clock
    try:
        return int(args.handler(args))
    except BrokenPipeError:
        # The reader went away (``actors run ... | head``): say nothing more,
        # and keep Python from complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED

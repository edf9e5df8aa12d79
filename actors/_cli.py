"""The ``actors`` command line: run, validate and draw pipelines.

``actors run TARGET``, ``actors validate TARGET``, ``actors graph TARGET``,
and ``actors logs ...`` (from :mod:`actors._cli_logs`). Every subcommand sets
``handler=fn`` with ``fn(args) -> int``; :func:`main` returns that exit code:

* 0: success (``validate``: the definition is valid);
* 1: the pipeline ran and failed (including its own timeout);
* 2: bad usage, a target that cannot be loaded, or an invalid definition
  (every problem is printed);
* 130: interrupted by Ctrl-C, after the run shut down cleanly.

A TARGET is ``module:attr`` or ``path/to/file.py:attr`` (``attr`` defaults to
``pipeline``) naming a :class:`PipelineDefinition` or a zero-argument function
returning one. ``--context`` names a context factory the same way, and
``--context :attr`` looks in the target's own module.

Targets are loaded by :mod:`actors._target`. rich is imported only here and
in :mod:`actors._progress`, and only to draw on a terminal: the command line
works in plain text without it, and ``import actors`` never needs it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

import structlog
import trio

from ._cli_logs import register as register_logs
from ._context import PipelineContext
from ._core import PipelineExecutor
from ._definition import PipelineDefinition
from ._log_config import configure_console, configure_json
from ._observers import Observer
from ._progress import (
    PlainProgress,
    ProgressTracker,
    live_table,
    plain_summary,
    rich_summary,
)
from ._render import FORMATS, format_for_path, render_diagram
from ._results import PipelineResult
from ._target import TargetError, load_context_factory, load_pipeline
from ._util import leaves
from ._version import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _err(*lines: str) -> None:
    for line in lines:
        print(line, file=sys.stderr)


def _print_problems(pipeline: PipelineDefinition, errors: Sequence[str]) -> None:
    noun = "problem" if len(errors) == 1 else "problems"
    _err(f"pipeline {pipeline.name!r} is invalid ({len(errors)} {noun}):")
    _err(*(f"  - {error}" for error in errors))


# -- actors validate ----------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    """``actors validate TARGET``: print every problem, or ``ok``."""
    try:
        pipeline, _ = load_pipeline(args.target)
    except TargetError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    errors = pipeline.validate_pipeline()
    if errors:
        noun = "problem" if len(errors) == 1 else "problems"
        print(f"pipeline {pipeline.name!r}: {len(errors)} {noun}")
        for error in errors:
            print(f"  - {error}")
        return EXIT_USAGE
    count = len(pipeline.stages)
    print(f"ok: pipeline {pipeline.name!r}, {count} stage{'s' * (count != 1)}")
    return EXIT_OK


# -- actors graph -------------------------------------------------------------


def cmd_graph(args: argparse.Namespace) -> int:
    """``actors graph TARGET``: print or write the pipeline as a diagram."""
    try:
        pipeline, _ = load_pipeline(args.target)
    except TargetError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    errors = pipeline.validate_pipeline()
    if errors:
        _print_problems(pipeline, errors)
        return EXIT_USAGE
    fmt = args.format
    if fmt is None:
        fmt = "mermaid" if args.output is None else format_for_path(args.output)
    text = render_diagram(pipeline, fmt)
    if args.output is None:
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return EXIT_OK


# -- actors run ---------------------------------------------------------------


class _Stderr:
    """Writes to whatever ``sys.stderr`` is now (rich's live display swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextlib.contextmanager
def _logging(args: argparse.Namespace) -> Iterator[bool]:
    """Configure structlog for the run as asked; yield whether to log events.

    Without ``--log-format`` or ``--log-file`` the run's events are not
    logged (the progress display tells that story), but warnings and errors
    logged by anything else (a failing observer, your own stages) still
    reach stderr, never stdout. The previous configuration is restored
    afterwards, so calling :func:`main` in-process leaves no trace.
    """
    requested = args.log_format is not None or args.log_file is not None
    fmt = args.log_format or "json"  # a log file is for machines unless told
    saved = structlog.get_config()
    with contextlib.ExitStack() as stack:
        # structlog only calls write() and flush(), which _Stderr has.
        stream = cast(TextIO, _Stderr())
        if args.log_file is not None:
            stream = stack.enter_context(
                Path(args.log_file).open("a", encoding="utf-8")
            )
        try:
            if not requested:
                configure_console(stream, level="warning", colors=sys.stderr.isatty())
            elif fmt == "json":
                configure_json(stream, level=args.log_level)
            else:
                colours = args.log_file is None and sys.stderr.isatty()
                configure_console(stream, level=args.log_level, colors=colours)
            yield requested
        finally:
            structlog.configure(**saved)


def _read_input(args: argparse.Namespace) -> Any:
    """Return the run's initial input from ``--input`` or ``--input-file``."""
    if args.input is not None:
        text, where = args.input, "--input"
    elif args.input_file is not None:
        where = f"--input-file {args.input_file}"
        try:
            if args.input_file == "-":
                text = sys.stdin.read()
            else:
                text = Path(args.input_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise TargetError(f"{where}: {exc.strerror or exc}") from exc
    else:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TargetError(f"{where} is not valid JSON: {exc}") from exc


def _with_timeout(pipeline: PipelineDefinition, seconds: float) -> PipelineDefinition:
    """Return *pipeline* bounded by *seconds* too (the stricter bound wins)."""
    timeout_ms = seconds * 1000
    if pipeline.timeout_ms is not None:
        timeout_ms = min(timeout_ms, pipeline.timeout_ms)
    return pipeline.model_copy(update={"timeout_ms": timeout_ms})


async def _run_pipeline(
    pipeline: PipelineDefinition,
    initial_input: Any,
    *,
    make_context: Callable[[], PipelineContext[Any]] | None,
    log_events: bool,
    observers: Sequence[Observer],
    redraw: Callable[[], None] | None,
) -> tuple[PipelineResult, bool]:
    """Run the pipeline; the first Ctrl-C sets the cancel token, the second aborts.

    Returns the result and whether the run was interrupted.
    """
    context = PipelineContext[Any]() if make_context is None else make_context()
    if context.cancel_token is None:
        context.cancel_token = trio.Event()
    token = context.cancel_token
    interrupted = False

    async def watch_ctrl_c(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal interrupted
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                if interrupted:
                    raise KeyboardInterrupt
                interrupted = True
                _err("interrupted: cancelling the run (press Ctrl-C again to abort)")
                token.set()

    async def keep_drawing() -> None:
        assert redraw is not None
        while True:
            redraw()
            await trio.sleep(0.1)

    executor = PipelineExecutor(log_events=log_events)
    async with trio.open_nursery() as nursery:
        if threading.current_thread() is threading.main_thread():
            await nursery.start(watch_ctrl_c)
        if redraw is not None:
            nursery.start_soon(keep_drawing)
        result = await executor.execute(
            pipeline, initial_input, context, observers=observers
        )
        nursery.cancel_scope.cancel()
    return result, interrupted


def _use_rich() -> bool:
    if not sys.stdout.isatty():
        return False
    try:
        import rich  # noqa: F401, PLC0415  # optional: the cli extra
    except ImportError:
        return False
    return True


def cmd_run(args: argparse.Namespace) -> int:
    """``actors run TARGET``: run the pipeline with live progress and a summary."""
    try:
        pipeline, module = load_pipeline(args.target)
        make_context = (
            None if args.context is None else load_context_factory(args.context, module)
        )
        initial_input = _read_input(args)
    except TargetError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    errors = pipeline.validate_pipeline()
    if errors:
        _print_problems(pipeline, errors)
        return EXIT_USAGE
    if args.timeout is not None:
        pipeline = _with_timeout(pipeline, args.timeout)

    rich_output = _use_rich()
    tracker: ProgressTracker | None = None
    if not args.no_progress:
        if rich_output:
            tracker = ProgressTracker(pipeline)
        else:
            tracker = PlainProgress(pipeline, sys.stdout)
    observers = [] if tracker is None else [tracker]
    clock: trio.abc.Clock | None = getattr(args, "clock", None)

    try:
        with _logging(args) as log_events, contextlib.ExitStack() as stack:
            redraw: Callable[[], None] | None = None
            if rich_output and tracker is not None:
                from rich.live import Live  # noqa: PLC0415  # optional dependency

                # Redrawn by a task of the run, never by rich's own thread:
                # the tracker changes inside the run, so it is read there too.
                live = stack.enter_context(
                    Live(live_table(tracker), auto_refresh=False, transient=True)
                )
                redraw = functools.partial(_redraw, live, tracker)

            run = functools.partial(
                _run_pipeline,
                pipeline,
                initial_input,
                make_context=make_context,
                log_events=log_events,
                observers=observers,
                redraw=redraw,
            )
            result, interrupted = trio.run(run, clock=clock)
    except TargetError as exc:  # raised by the context factory, inside the run
        _err(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("aborted")
        return EXIT_INTERRUPTED
    except BaseExceptionGroup as group:
        # Our own nursery wraps what it lets through: unwrap it here.
        exits = group.subgroup(SystemExit)
        if exits is not None:  # a stage called sys.exit(): honour its code
            raise leaves(exits)[0] from None
        rest = group.split((KeyboardInterrupt, TargetError))[1]
        if rest is not None:
            raise
        if group.subgroup(KeyboardInterrupt) is not None:
            _err("aborted")
            return EXIT_INTERRUPTED
        _err(*(f"error: {exc}" for exc in leaves(group)))
        return EXIT_USAGE

    _print_summary(result, rich_output)
    if args.graph is not None:
        text = render_diagram(pipeline, format_for_path(args.graph), result=result)
        Path(args.graph).write_text(text, encoding="utf-8")
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if result.success else EXIT_FAILED


def _redraw(live: Any, tracker: ProgressTracker) -> None:
    live.update(live_table(tracker, live.console.width), refresh=True)


def _print_summary(result: PipelineResult, rich_output: bool) -> None:
    if rich_output:
        from rich.console import Console  # noqa: PLC0415  # optional dependency

        Console().print(rich_summary(result))
    else:
        print(plain_summary(result), flush=True)


# -- the parser ---------------------------------------------------------------


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
        "130 interrupted.",
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
    return parser


def main(
    argv: Sequence[str] | None = None, *, clock: trio.abc.Clock | None = None
) -> int:
    """Run the ``actors`` command line and return its exit code.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
        clock: A trio clock for ``actors run`` (tests pass a ``MockClock``).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (code 2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.clock = clock
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        _err("aborted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``actors run ... | head``): say nothing more,
        # and keep Python from complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED

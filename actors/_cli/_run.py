"""``actors run TARGET``: run a pipeline with live progress and a summary.

The first Ctrl-C sets the run's cancel token (stages clean up, the summary
and the log are complete), the second aborts. rich is imported only to draw
on a terminal: without it the output is plain text.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

import structlog
import trio

from .._context import PipelineContext
from .._core import PipelineExecutor
from .._definition import PipelineDefinition
from .._diagram import format_for_path, render_diagram
from .._log_config import configure_console, configure_json
from .._observers import Observer
from .._results import PipelineResult
from .._util import leaves
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    err,
    print_problems,
)
from ._progress import (
    PlainProgress,
    ProgressTracker,
    live_table,
    plain_summary,
    rich_summary,
)
from ._target import TargetError, load_context_factory, load_pipeline


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
                err("interrupted: cancelling the run (press Ctrl-C again to abort)")
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
        err(f"error: {exc}")
        return EXIT_USAGE
    errors = pipeline.validate_pipeline()
    if errors:
        print_problems(pipeline, errors)
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
        err(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err("aborted")
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
            err("aborted")
            return EXIT_INTERRUPTED
        err(*(f"error: {exc}" for exc in leaves(group)))
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

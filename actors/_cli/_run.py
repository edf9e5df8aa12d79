"""``actors run TARGET``: run a pipeline with live progress and a summary.

The first Ctrl-C or SIGTERM sets the run's cancel token (stages clean up,
the summary and the log are complete; exit 130 or 143), the second aborts.
rich is imported only to draw on a terminal: without it the output is plain
text.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast

import structlog
import trio

from .._checkpoint import Store
from .._context import PipelineContext
from .._core import PipelineExecutor
from .._definition import PipelineDefinition
from .._diagram import format_for_path, render_diagram
from .._exceptions import UnknownRunError
from .._log_config import configure_console, configure_json
from .._observers import Observer
from .._results import PipelineResult
from .._util import leaves
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    err,
    print_problems,
)
from ._progress import (
    PlainProgress,
    ProgressTracker,
    failure_tracebacks,
    live_table,
    plain_summary,
    rich_summary,
)
from ._runs import store_options
from ._target import TargetError, load_context_factory, load_pipeline


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop like the first Ctrl-C, and exit with 143.

    A :class:`KeyboardInterrupt` so that whatever is interrupted by it
    unwinds the way it does for Ctrl-C (trio re-raises both out of a run).
    """


@dataclass(eq=False)
class _Held:
    """SIGTERMs that arrived while a run was starting or ending.

    trio's signal receiver takes SIGTERM only once the run is under way;
    just before and after, raising from the handler could land inside
    trio's scheduler, so the signal is counted and handled by the run.
    """

    active: bool = False
    count: int = 0


_held = _Held()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while the command runs.

    Outside a run (loading the target, printing the summary) the handler
    raises at once; inside it, :func:`_run_pipeline` receives the signal
    itself and stops the run cleanly. The previous handler is restored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if _held.active:  # never raise inside trio's own machinery
            _held.count += 1
            return
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Stderr:
    """Writes to whatever ``sys.stderr`` is now (rich's live display swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _GuardedFile:
    """A log file whose write errors are kept for later, never raised.

    A full disk (or ``/dev/full``) must not turn a finished run into a
    crash that loses the summary: the first error is remembered, later
    writes are dropped, and the command reports it after the summary.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.error: OSError | None = None

    def write(self, text: str) -> int:
        if self.error is None:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self.error = exc
        return len(text)

    def flush(self) -> None:
        if self.error is None:
            try:
                self._stream.flush()
            except OSError as exc:
                self.error = exc

    def close(self) -> None:
        self.flush()
        try:
            self._stream.close()
        except OSError as exc:  # the last buffered lines could not be written
            if self.error is None:
                self.error = exc


def _open_log(args: argparse.Namespace) -> _GuardedFile | None:
    """Open ``--log-file`` for appending, before the run starts.

    Raises:
        TargetError: It cannot be opened (a missing directory, a directory).
    """
    if args.log_file is None:
        return None
    if Path(args.log_file).is_dir():
        raise TargetError(f"--log-file {args.log_file}: is a directory")
    try:
        stream = Path(args.log_file).open("a", encoding="utf-8")  # noqa: SIM115  # closed by cmd_run
    except OSError as exc:
        raise TargetError(
            f"--log-file {args.log_file}: {exc.strerror or exc}"
        ) from None
    return _GuardedFile(stream)


def _check_graph_path(path: str | None) -> None:
    """Refuse a ``--graph`` path that cannot be written, before the run.

    Raises:
        TargetError: It is a directory, or its directory does not exist.
    """
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise TargetError(f"--graph {path}: is a directory")
    if not target.parent.is_dir():
        raise TargetError(f"--graph {path}: no such directory {str(target.parent)!r}")


@contextlib.contextmanager
def _logging(args: argparse.Namespace, log_file: _GuardedFile | None) -> Iterator[bool]:
    """Configure structlog for the run as asked; yield whether to log events.

    Without ``--log-format`` or ``--log-file`` the run's events are not
    logged (the progress display tells that story), but warnings and errors
    logged by anything else (a failing observer, your own stages) still
    reach stderr, never stdout. The previous configuration is restored
    afterwards, so calling :func:`main` in-process leaves no trace.
    """
    requested = args.log_format is not None or log_file is not None
    fmt = args.log_format or "json"  # a log file is for machines unless told
    saved = structlog.get_config()
    # structlog only calls write() and flush(), which both streams have.
    stream = cast(TextIO, _Stderr() if log_file is None else log_file)
    try:
        if not requested:
            configure_console(stream, level="warning", colors=sys.stderr.isatty())
        elif fmt == "json":
            configure_json(stream, level=args.log_level)
        else:
            colours = log_file is None and sys.stderr.isatty()
            configure_console(stream, level=args.log_level, colors=colours)
        yield requested
    finally:
        structlog.configure(**saved)


def _read_input(args: argparse.Namespace) -> Any:
    """Return the run's initial input from ``--input`` or ``--input-file``.

    Raises:
        TargetError: It cannot be read or is not JSON this process can hold
            (invalid UTF-8, an integer past Python's digit limit, nesting too
            deep to parse), in one line.
    """
    if args.input is not None:
        text, where = args.input, "--input"
    elif args.input_file is not None:
        where = f"--input-file {args.input_file}"
        try:
            if args.input_file == "-":
                # Bytes where there are any, so bad UTF-8 is our error to word.
                raw = getattr(sys.stdin, "buffer", None)
                text = sys.stdin.read() if raw is None else raw.read().decode()
            else:
                text = Path(args.input_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise TargetError(f"{where}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise TargetError(
                f"{where} is not UTF-8: byte {exc.start} cannot be decoded"
            ) from None
    else:
        return None
    try:
        return json.loads(text)
    except RecursionError:
        raise TargetError(f"{where} is nested too deeply to read") from None
    except ValueError as exc:  # JSONDecodeError, or an integer too long
        reason = str(exc).split("; use sys.set_int_max_str_digits")[0]
        raise TargetError(f"{where} is not valid JSON: {reason}") from None


def _with_timeout(pipeline: PipelineDefinition, seconds: float) -> PipelineDefinition:
    """Return *pipeline* bounded by *seconds* too (the stricter bound wins)."""
    timeout_ms = seconds * 1000
    if pipeline.timeout_ms is not None:
        timeout_ms = min(timeout_ms, pipeline.timeout_ms)
    return pipeline.model_copy(update={"timeout_ms": timeout_ms})


_STOP_MESSAGES = {
    signal.SIGINT: "interrupted: cancelling the run (press Ctrl-C again to abort)",
    signal.SIGTERM: "terminated: cancelling the run (send SIGTERM again to abort)",
}


async def _run_pipeline(
    pipeline: PipelineDefinition,
    initial_input: Any,
    *,
    make_context: Callable[[], PipelineContext[Any]] | None,
    log_events: bool,
    observers: Sequence[Observer],
    tracker: ProgressTracker | None,
    redraw: Callable[[], None] | None,
    store: Store | None = None,
    resume: str | None = None,
) -> tuple[PipelineResult, int | None]:
    """Run the pipeline; the first SIGINT or SIGTERM sets the cancel token.

    A second signal aborts (:class:`KeyboardInterrupt` or
    :class:`Terminated`). Returns the result and the signal that stopped
    the run, if any.
    """
    context = PipelineContext[Any]() if make_context is None else make_context()
    stopped_by: int | None = None

    def stop(signum: int) -> None:
        nonlocal stopped_by
        if stopped_by is not None:
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        stopped_by = signum
        err(_STOP_MESSAGES[signal.Signals(signum)])
        if tracker is not None:
            tracker.stopping()
        # The stages say why: not "cancel token set", which nobody did.
        context.cancel("interrupted" if signum == signal.SIGINT else "terminated")

    async def watch_signals(*, task_status: trio.TaskStatus[None]) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            while _held.count:  # sent while the run was starting
                _held.count -= 1
                stop(signal.SIGTERM)
            async for signum in signals:
                stop(signum)

    async def keep_drawing() -> None:
        assert redraw is not None
        while True:
            redraw()
            await trio.sleep(0.1)

    executor = PipelineExecutor(log_events=log_events)
    async with trio.open_nursery() as nursery:
        if threading.current_thread() is threading.main_thread():
            await nursery.start(watch_signals)
        if redraw is not None:
            nursery.start_soon(keep_drawing)
        try:
            result = await executor.execute(
                pipeline,
                initial_input,
                context,
                observers=observers,
                store=store,
                resume=resume,
            )
        except UnknownRunError as exc:  # before any stage ran: a usage error
            raise TargetError(str(exc)) from None
        nursery.cancel_scope.cancel()
    if redraw is not None:
        redraw()  # the final state, unresponsive stages included
    return result, stopped_by


def _use_rich() -> bool:
    if not sys.stdout.isatty():
        return False
    try:
        import rich  # noqa: F401, PLC0415  # optional: the cli extra
    except ImportError:
        return False
    return True


def _aborted(exc: BaseException | None) -> int:
    err("aborted")
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


def cmd_run(args: argparse.Namespace) -> int:
    """``actors run TARGET``: run the pipeline with live progress and a summary.

    Exit codes: 0 succeeded, 1 failed, 2 bad usage, 130 stopped by Ctrl-C,
    143 stopped by SIGTERM. A ``--graph`` or ``--log-file`` write that fails
    after the run is reported in one line after the summary; the exit code
    stays the pipeline's.
    """
    try:
        pipeline, module = load_pipeline(args.target)
        make_context = (
            None if args.context is None else load_context_factory(args.context, module)
        )
        initial_input = _read_input(args)
        _check_graph_path(args.graph)
        if args.resume is not None and args.store is None:
            raise TargetError("--resume needs --store (where the run was journaled)")
        store, resume = store_options(args)
    except TargetError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    errors = pipeline.validate_pipeline()
    if errors:
        print_problems(pipeline, errors)
        return EXIT_USAGE
    if args.timeout is not None:
        pipeline = _with_timeout(pipeline, args.timeout)
    try:
        log_file = _open_log(args)
    except TargetError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    try:
        return _run_and_report(
            args,
            pipeline,
            initial_input,
            make_context,
            log_file,
            store=store,
            resume=resume,
        )
    finally:
        if log_file is not None:
            log_file.close()
            if log_file.error is not None:
                reason = log_file.error.strerror or str(log_file.error)
                err(f"error: writing the log to {args.log_file} failed: {reason}")


def _run_and_report(
    args: argparse.Namespace,
    pipeline: PipelineDefinition,
    initial_input: Any,
    make_context: Callable[[], PipelineContext[Any]] | None,
    log_file: _GuardedFile | None,
    *,
    store: Store | None,
    resume: str | None,
) -> int:
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
        with _logging(args, log_file) as log_events, contextlib.ExitStack() as stack:
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
                tracker=tracker,
                redraw=redraw,
                store=store,
                resume=resume,
            )
            _held.active, _held.count = True, 0
            try:
                result, stopped_by = trio.run(run, clock=clock)
            finally:
                _held.active = False
            if _held.count and stopped_by is None:  # sent as the run ended
                err(_STOP_MESSAGES[signal.SIGTERM])
                stopped_by = signal.SIGTERM
    except TargetError as exc:  # raised by the context factory, inside the run
        err(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        return _aborted(exc)
    except BaseExceptionGroup as group:
        # Our own nursery wraps what it lets through: unwrap it here.
        exits = group.subgroup(SystemExit)
        if exits is not None:  # a stage called sys.exit(): honour its code
            raise leaves(exits)[0] from None
        rest = group.split((KeyboardInterrupt, TargetError))[1]
        if rest is not None:
            raise
        interrupts = group.subgroup(KeyboardInterrupt)
        if interrupts is not None:
            return _aborted(leaves(interrupts)[0])
        err(*(f"error: {exc}" for exc in leaves(group)))
        return EXIT_USAGE

    _print_summary(result, rich_output)
    if args.graph is not None:
        text = render_diagram(pipeline, format_for_path(args.graph), result=result)
        try:
            Path(args.graph).write_text(text, encoding="utf-8")
        except OSError as exc:
            err(f"error: writing --graph {args.graph} failed: {exc.strerror or exc}")
    if stopped_by == signal.SIGTERM:
        return EXIT_TERMINATED
    if stopped_by is not None:
        return EXIT_INTERRUPTED
    return EXIT_OK if result.success else EXIT_FAILED


def _redraw(live: Any, tracker: ProgressTracker) -> None:
    live.update(live_table(tracker, live.console.width), refresh=True)


def _print_summary(result: PipelineResult, rich_output: bool) -> None:
    if rich_output:
        from rich.console import Console  # noqa: PLC0415  # optional dependency
        from rich.text import Text  # noqa: PLC0415  # optional dependency

        console = Console()
        traces = failure_tracebacks(result)
        if traces:  # first, so the table and how the run ended come last
            console.print(Text("\n".join(traces[:-1])))
        console.print(rich_summary(result))
    else:
        print(plain_summary(result), flush=True)

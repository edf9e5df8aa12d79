"""The ``actors logs`` command: summary, timeline and critical path of a log.

Wired into the main CLI by ``actors._cli`` with ``register(subparsers)``.
Exit codes: 0 when the log was read (whatever the runs in it did), 2 when
the input cannot be used: the file cannot be read, ``--run`` matches no run
(or several), or there is no run to draw. Malformed lines are never an error;
the summary counts them.
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import TextIO

from .._analysis import (
    LogReport,
    RunRecord,
    read_log,
    render_critical_path,
    render_summary,
    render_timeline,
)
from .._analysis._text import MAX_WIDTH
from .._util import printable

_EXIT_OK = 0
_EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``logs`` command and its subcommands to ``subparsers``.

    Each subcommand sets ``handler``: a function taking the parsed arguments
    and returning the exit code.

    Args:
        subparsers: The main parser's subparsers action.
    """
    logs = subparsers.add_parser(
        "logs",
        help="analyse a JSON-lines log of pipeline runs",
        description="Analyse a JSON-lines log written with "
        "actors.logging.configure_json(): one or many runs, mixed with other "
        "events. Exit status: 0 ok, 2 unreadable input or no such run.",
    )
    commands = logs.add_subparsers(
        dest="logs_command", required=True, metavar="COMMAND"
    )

    summary = commands.add_parser(
        "summary",
        help="a table per run: stages, status, attempts, times, retries, errors",
    )
    _add_file(summary)
    _add_run(summary, "only this run")
    summary.add_argument(
        "--verbose",
        action="store_true",
        help="list every retry, not only how many and the commonest errors",
    )
    summary.set_defaults(handler=_summary)

    timeline = commands.add_parser(
        "timeline", help="a Gantt chart of one run (text, Mermaid or HTML)"
    )
    _add_file(timeline)
    _add_run(timeline, "the run to draw (default: the last one in the log)")
    timeline.add_argument(
        "--format",
        choices=("text", "mermaid", "html"),
        default="text",
        help="text (default), Mermaid gantt syntax, or a self-contained HTML page",
    )
    timeline.add_argument(
        "--width",
        type=int,
        default=60,
        help=f"chart width in characters, for --format text (default: 60, "
        f"at most {MAX_WIDTH})",
    )
    timeline.set_defaults(handler=_timeline)

    critical = commands.add_parser(
        "critical-path", help="the chain of stages that decided each run's makespan"
    )
    _add_file(critical)
    _add_run(critical, "only this run")
    critical.set_defaults(handler=_critical_path)


def main_logs(argv: list[str]) -> int:
    """Run ``actors logs ...`` (*argv* starts with ``logs``); return the exit code.

    For tests and for embedding; argparse still exits (``SystemExit(2)``) on
    a usage error, as the real command does.
    """
    parser = argparse.ArgumentParser(prog="actors")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def _add_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE", help="the JSON-lines log ('-' for standard input)"
    )


def _add_run(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--run", metavar="RUN_ID", help=f"{what}; a unique prefix of the id is enough"
    )


def _load(args: argparse.Namespace) -> LogReport | None:
    """Read the log, or explain on stderr why it cannot be read."""
    try:
        if args.file == "-":
            raw = getattr(sys.stdin, "buffer", None)
            if raw is None:  # already text (tests, embedding)
                return read_log(sys.stdin)
            # Bad bytes make their line malformed, as they do from a path.
            stream = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape")
            return read_log(stream)
        return read_log(args.file)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        _error(f"cannot read {args.file}: {reason}")
        return None


def _select(report: LogReport, run_id: str | None) -> list[RunRecord] | None:
    if run_id is None:
        return report.runs
    try:
        return [report.run(run_id)]
    except LookupError as exc:
        _error(str(exc.args[0]))
        return None


def _summary(args: argparse.Namespace) -> int:
    report = _load(args)
    if report is None:
        return _EXIT_BAD_INPUT
    runs = _select(report, args.run)
    if runs is None:
        return _EXIT_BAD_INPUT
    selected = report.model_copy(update={"runs": runs})
    _write(sys.stdout, render_summary(selected, verbose=args.verbose))
    return _EXIT_OK


def _timeline(args: argparse.Namespace) -> int:
    report = _load(args)
    if report is None:
        return _EXIT_BAD_INPUT
    if args.run is None:
        if not report.runs:
            _error(f"no pipeline runs in {args.file}")
            return _EXIT_BAD_INPUT
        run = report.runs[-1]
        if len(report.runs) > 1:
            _note(
                f"drawing the last of {len(report.runs)} runs ({run.run_id}); "
                "choose another with --run"
            )
    else:
        runs = _select(report, args.run)
        if runs is None:
            return _EXIT_BAD_INPUT
        (run,) = runs
    if args.width < 10:
        _error("--width must be at least 10")
        return _EXIT_BAD_INPUT
    if args.width > MAX_WIDTH:
        _note(f"--width {args.width} is more than any screen: drawing {MAX_WIDTH}")
    _write(sys.stdout, render_timeline(run, args.format, width=args.width))
    return _EXIT_OK


def _critical_path(args: argparse.Namespace) -> int:
    report = _load(args)
    if report is None:
        return _EXIT_BAD_INPUT
    runs = _select(report, args.run)
    if runs is None:
        return _EXIT_BAD_INPUT
    _write(sys.stdout, render_critical_path(runs))
    return _EXIT_OK


def _write(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()


def _error(message: str) -> None:
    print(printable(f"actors logs: error: {message}"), file=sys.stderr)


def _note(message: str) -> None:
    print(printable(f"actors logs: {message}"), file=sys.stderr)

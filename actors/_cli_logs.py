"""The ``actors logs`` command line: summary, timeline and critical path of a log.

Wired into the main CLI by ``actors._cli`` with ``register(subparsers)``.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``logs`` command and its subcommands to ``subparsers``.

    Args:
        subparsers: The main parser's subparsers action.
    """
    logs = subparsers.add_parser(
        "logs", help="analyse a JSON-lines log of pipeline runs"
    )
    logs.add_subparsers(dest="logs_command", required=True, metavar="COMMAND")


def main_logs(argv: list[str]) -> int:
    """Run ``actors logs ARGV...`` and return its exit code (for tests).

    Args:
        argv: The arguments after ``actors``, starting with ``logs``.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(prog="actors")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))

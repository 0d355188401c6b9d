"""Helpers shared by the pigeon subcommands: exit statuses and error output.

Contract:
  * Exit statuses follow sysexits.h so scripts and service managers can tell
    a usage mistake (64) from a bad configuration (78).
  * Errors go to stderr as "pigeon: <message>", one line per problem;
    normal output goes to stdout. Nothing here touches logging: commands other than `serve`
    print, they do not log.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, TextIO

EX_OK = 0
EX_USAGE = 64  # command line usage error
EX_CANTCREAT = 73  # the queue store is unusable (damaged queue.db)
EX_CONFIG = 78  # configuration error

PROG = "pigeon"


def fail(message: str, status: int, stream: TextIO | None = None) -> int:
    """Print `pigeon: message` to stderr and return `status` (for `return fail(...)`).

    A message of several lines (every problem of a configuration file) gets
    the prefix on each line, so each reads, and greps, on its own.
    """
    out = stream if stream is not None else sys.stderr
    for line in message.splitlines() or [""]:
        print(f"{PROG}: {line}", file=out)
    return status


class ArgumentParser(argparse.ArgumentParser):
    """argparse with sysexits: usage errors exit 64 instead of 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-wrapped description/epilog paragraphs, with a wider option column."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)

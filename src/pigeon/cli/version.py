"""`pigeon version`: print the version of pigeon and of the Python running it."""

from __future__ import annotations

import argparse
import platform

import pigeon

HELP = "print the version and exit"
DESCRIPTION = """\
Print pigeon's version and the Python implementation running it, on one line:

    pigeon 0.2.0 (CPython 3.11.7)
"""
EPILOG = ""


def version_line() -> str:
    return f"pigeon {pigeon.__version__} ({platform.python_implementation()} {platform.python_version()})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`version` takes no arguments."""


def run(args: argparse.Namespace) -> int:
    print(version_line())
    return 0

"""`pigeon log ID`: the whole history of one message, from the log file.

Contract:
  * Reads `log.file` of the configuration (or `--log-file FILE`, e.g. a
    file that captured pigeon's stderr), plus its rotated predecessor
    `FILE.1`, and prints every line about queue id ID, oldest first:
    reception, each delivery attempt, operator actions, removal, and the
    lines of any report (bounce) it caused (pigeon.obs.history). Text and
    JSON log formats are both understood.
  * No running server is needed; nothing is written.
  * Exit statuses: 0 lines found, 1 no line mentions ID, 64 bad ID,
    66 (EX_NOINPUT) no log file (pigeon logs to stderr: use the journal),
    78 configuration error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pigeon.cli._common import EX_CONFIG, EX_USAGE, fail
from pigeon.cli._control import EX_NOINPUT, add_config_arguments, load
from pigeon.config.load import ConfigError
from pigeon.obs.history import log_files, message_history

HELP = "print everything the log says about one message"

DESCRIPTION = """\
Print the history of one message from pigeon's log file: when and from
whom it was received, every delivery attempt (relay, delay, dsn, status
and the remote server's reply), operator actions, and the bounce or other
report it produced, followed through that report's own queue id.
"""

EPILOG = """\
examples:
  pigeon log 5F3A1C0E2B7D0001
  pigeon log --log-file /var/log/pigeon/pigeon.log 5F3A1C0E2B7D0001

When pigeon logs to stderr under systemd, use the journal instead:
  journalctl -u pigeon | grep 5F3A1C0E2B7D0001

exit status: 0 found, 1 nothing found, 64 not a queue id, 66 no log file,
78 configuration error.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--log-file",
        metavar="FILE",
        type=Path,
        help="read this file instead of the configuration's log.file",
    )
    parser.add_argument("id", metavar="ID", help="queue id")


def run(args: argparse.Namespace) -> int:
    path = args.log_file
    if path is None:
        try:
            path = load(args, need_data_dir=False).log.file
        except ConfigError as exc:
            return fail(str(exc), EX_CONFIG)
    if path is None:
        return fail(
            "log.file is not set: pigeon logs to stderr (under systemd: "
            f"journalctl -u pigeon | grep {args.id})",
            EX_NOINPUT,
        )
    if not log_files(path):
        return fail(f"{path}: no such log file", EX_NOINPUT)
    try:
        lines = message_history(path, args.id)
    except ValueError as exc:
        return fail(str(exc), EX_USAGE)
    except OSError as exc:
        return fail(f"{path}: {exc.strerror or exc}", EX_NOINPUT)
    if not lines:
        return fail(f"nothing about {args.id} in {path}", 1)
    for line in lines:
        print(line)
    return 0

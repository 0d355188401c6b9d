"""The `pigeon` command: one program, several subcommands.

Contract:
  * `main(argv=None) -> int` parses the command line and runs one subcommand;
    it returns the exit status instead of calling sys.exit (the console script
    and `python -m pigeon` do that), and --help/usage errors return too.
  * Subcommands are registered in one place, `COMMANDS` below: name -> module.
    Each module defines HELP (one line for `pigeon --help`), DESCRIPTION and
    EPILOG (man-page style text for `pigeon NAME --help`), `add_arguments
    (parser)` and `run(args) -> int`. Adding a command (queue, user, sendmail)
    is one new module plus one line here; nothing registers itself at import.
  * Exit statuses follow sysexits.h (see cli._common): 0 ok, 64 usage error,
    78 configuration error, 73 a damaged queue database or data of a newer
    format than this pigeon's (any command that opens the data); `serve` passes on the status pigeon.app.run returns.
  * Every command runs through `cli._entry.run_entry`: a closed stdout
    (141), Ctrl-C (130) and unhandled permission or I/O errors (77, 74)
    end without a traceback, and output other than `serve`'s has its
    control characters escaped.
  * Importing this module is cheap: heavy parts (the server) are imported
    inside the command that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from pigeon.cli._common import EX_CANTCREAT, EX_USAGE, PROG, ArgumentParser, HelpFormatter, fail
from pigeon.cli._entry import run_entry
from pigeon.cli.version import version_line

__all__ = ["main", "build_parser", "COMMANDS"]

#: Subcommand name -> module implementing it (see the contract above).
COMMANDS: dict[str, str] = {
    "serve": "pigeon.cli.serve",
    "check-config": "pigeon.cli.check",
    "version": "pigeon.cli.version",
    "user": "pigeon.cli.user",
    "token": "pigeon.cli.token",
    "admin": "pigeon.cli.consoleadmin",
    "queue": "pigeon.cli.queue",
    "capture": "pigeon.cli.capture",
    "status": "pigeon.cli.status",
    "reload": "pigeon.cli.reload",
    "restart": "pigeon.cli.restart",
    "stop": "pigeon.cli.stop",
    "log": "pigeon.cli.log",
    "data": "pigeon.cli.data",
    "sendmail": "pigeon.cli.sendmail",
    "reports": "pigeon.cli.reports",
    "dkim": "pigeon.cli.dkim",
    "dns": "pigeon.cli.dns",
    "mta-sts": "pigeon.cli.mtasts",
    "db": "pigeon.cli.db",
    "domain": "pigeon.cli.domain",
    "alias": "pigeon.cli.alias",
}

DESCRIPTION = """\
pigeon is a mail transfer agent: an SMTP server that accepts mail for its
local domains (and relays for trusted networks), keeps it in a durable queue
and delivers it to Maildirs or to other mail servers.
"""

EPILOG = """\
Run "pigeon COMMAND --help" for a command's options.

examples:
  pigeon serve                                  /etc/pigeon/pigeon.toml if it exists, else
                                                the quick start: 127.0.0.1:2525, domain localhost
  pigeon serve --config FILE                    run with another configuration file
  pigeon check-config                           check it before (re)starting
  pigeon reload                                 apply the changed file, or see why not
  pigeon restart                                a new process takes over, no connection refused
  pigeon stop                                   stop it (as SIGTERM does) and wait until it is gone

Every command finds its configuration by one rule: -c FILE, else
$PIGEON_CONFIG, else /etc/pigeon/pigeon.toml, else the built-in defaults
(never a pigeon.toml in the current directory).

exit status (sysexits.h), for every command: 0 ok, 64 usage error,
77 permission denied, 78 configuration error, 130 interrupted (Ctrl-C),
141 output closed early (| head). "pigeon COMMAND --help" lists the others.
See docs/config.md for every configuration key.
"""


def _load(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser() -> argparse.ArgumentParser:
    """The full parser: every registered subcommand with its options."""
    parser = ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMANDS:
        module = _load(name)
        command = sub.add_parser(
            name,
            help=module.HELP,
            description=module.DESCRIPTION,
            epilog=module.EPILOG or None,
            formatter_class=HelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pigeon command line (`argv` without the program name; default sys.argv[1:])."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EX_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EX_USAGE
    return run_entry(lambda: _run_command(args), escape=args.command != "serve")


def _run_command(args: argparse.Namespace) -> int:
    try:
        return int(args.run(args))
    except Exception as exc:
        # A damaged queue.db met by any command that opens the store (queue
        # list offline, status), or data of a newer format: one line naming
        # the repair, never a traceback.
        from pigeon.dataformat import FormatError
        from pigeon.vocab.errors import StoreError

        if isinstance(exc, (StoreError, FormatError)):
            return fail(str(exc), EX_CANTCREAT)
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

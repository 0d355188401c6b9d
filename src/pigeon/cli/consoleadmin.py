"""`pigeon admin add|list|remove|passwd`: the web console's admin accounts (docs/console.md).

Contract:
  * The admins live in `<data_dir>/console-admins.json` (pigeon.console.
    admins: argon2id hashes, mode 0600, replaced atomically); the
    configuration is found by the rule of every command (pigeon.cli.
    _config), --data-dir overrides data_dir, data_dir must exist, and run
    as root the command acts as the owner of data_dir. It works whether
    pigeon runs or not: a running pigeon reads the file again when it
    changes, so a new admin can log in at once, and a removed admin or a
    changed password ends that admin's console sessions at their next
    request (console/guard.py).
  * `add NAME` and `passwd NAME` read the password from the terminal
    without echo, asked twice; `--password-stdin` reads the first line of
    standard input instead; `--generate` makes a random one and prints it
    once, alone on stdout (`PW=$(pigeon admin add ops --generate)`). A
    password needs [auth] min_password_length characters (default 12).
  * `list` prints each name and its creation time (UTC); `remove NAME`
    forgets it.
  * Exit statuses: 0 ok, 1 the admin exists / no such admin / the file
    does not read, 64 usage (a bad name, an empty, short or mismatched
    password, no terminal without --password-stdin), 77 permission
    denied, 78 configuration error.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from pigeon.cli._common import EX_CONFIG, EX_USAGE, fail
from pigeon.cli._control import add_config_arguments, load
from pigeon.cli.user import have_terminal, read_password
from pigeon.config.load import ConfigError
from pigeon.console.admins import AdminError, AdminStore, check_name, random_password

EX_NOPERM = 77

HELP = "manage the web console's admins (add, list, remove, passwd)"

DESCRIPTION = """\
Manage the admins who may log in to the web console ([console] listen,
docs/console.md). Only argon2id hashes of their passwords are stored, in
data_dir/console-admins.json (mode 0600). At its first start with the
console on, pigeon makes the admin "admin" and prints its password once.
"""

EPILOG = """\
examples:
  pigeon admin add alice                      asks for the password twice
  PW=$(pigeon admin add ops --generate)       a random password, printed once
  printf '%s\\n' "$PW" | pigeon admin passwd alice --password-stdin
  pigeon admin list
  pigeon admin remove ops

A running pigeon sees a change at its next request: a new admin can log in
at once; a removed admin, or one whose password changed, is logged out.

exit status: 0 ok, 1 the admin exists, no such admin, or the admins file
does not read, 64 usage (bad name; password empty, too short or
mismatched; no terminal without --password-stdin), 77 permission denied
(run as root or the pigeon user), 78 configuration error.
"""

NO_TERMINAL = (
    "no terminal to ask the password on: give it on standard input with "
    "--password-stdin, or let pigeon make one with --generate"
)


def _password_options(parser: argparse.ArgumentParser) -> None:
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    how.add_argument(
        "--generate",
        action="store_true",
        help="make a random password and print it once on stdout",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="make an admin")
    add_config_arguments(add, nested=True)
    add.add_argument("name", help="1-64 of A-Z a-z 0-9 . _ @ -")
    _password_options(add)
    passwd = sub.add_parser("passwd", help="change an admin's password")
    add_config_arguments(passwd, nested=True)
    passwd.add_argument("name")
    _password_options(passwd)
    add_config_arguments(sub.add_parser("list", help="list the admins"), nested=True)
    remove = sub.add_parser("remove", help="forget an admin (and end its sessions)")
    add_config_arguments(remove, nested=True)
    remove.add_argument("name")


def _set_password(args: argparse.Namespace, store: AdminStore, min_length: int) -> int:
    """`add` or `passwd`: the new password from where the options say, then the store."""
    try:
        check_name(args.name)
    except AdminError as exc:
        return fail(str(exc), EX_USAGE)
    exists = args.name in store.names()
    if args.action == "add" and exists:
        return fail(f"the admin {args.name} exists (pigeon admin passwd changes its password)", 1)
    if args.action == "passwd" and not exists:
        return fail(f"no such admin: {args.name}", 1)
    if args.generate:
        password: str | None = random_password()
    elif not args.password_stdin and not have_terminal():
        return fail(NO_TERMINAL, EX_USAGE)
    else:
        password = read_password(args.password_stdin, min_length=min_length, action=args.action)
    if password is None:
        return EX_USAGE
    if args.action == "add":
        store.add(args.name, password)
        done = f"added {args.name}"
    else:
        store.passwd(args.name, password)
        done = f"password changed for {args.name}"
    if args.generate:
        print(password)  # alone on stdout, for PW=$(...)
        print(done, file=sys.stderr)
    else:
        print(done)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    store = AdminStore.in_data_dir(config.data_dir)
    try:
        if args.action == "list":
            for name, created in store.info().items():
                when = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
                print(f"{name}\t{when}")
            return 0
        if args.action == "remove":
            if not store.remove(args.name):
                return fail(f"no such admin: {args.name}", 1)
            print(f"removed {args.name}")
            return 0
        return _set_password(args, store, config.auth.min_password_length)
    except AdminError as exc:
        return fail(str(exc), 1)
    except PermissionError as exc:
        return fail(f"{exc} (run it as root or as the user pigeon runs as)", EX_NOPERM)

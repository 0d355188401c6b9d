"""`pigeon user add|passwd|del|list`: manage the accounts that may submit mail.

Contract:
  * The account store is `<data_dir>/accounts.db` (pigeon.auth.accounts);
    the configuration is found by the rule of every command
    (pigeon.cli._config: -c FILE, $PIGEON_CONFIG, /etc/pigeon/pigeon.toml),
    --data-dir overrides data_dir, and data_dir must exist; run as root, the
    command acts as the owner of data_dir, so the server can still open
    the store. -c/--data-dir go before or after the action. A running
    server sees changes at the next login; no reload is needed.
  * Passwords are read without echo from the terminal (asked twice), or with
    --password-stdin as the first line of standard input (for scripts; the
    line ending is removed). They never appear on the command line. With
    no terminal and no --password-stdin the command says to use it (64)
    instead of failing at the prompt. A new password needs at least
    auth.min_password_length characters (default 12), else 64.
  * Output: one line per change on stdout; errors as "pigeon: <message>" on
    stderr. Exit statuses: 0 ok, 64 usage (empty or mismatched password),
    67 (EX_NOUSER) no such user, 73 (EX_CANTCREAT) the store cannot be
    opened or is of a newer format than this pigeon's, 77 (EX_NOPERM) this user may not open it, 78 configuration error, 1 other account errors (already exists,
    address taken). The EPILOG lists them; tests/unit/cli/test_exit_statuses.py
    proves each.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import TextIO

from pigeon.auth.accounts import AccountError
from pigeon.cli._common import EX_CONFIG, EX_USAGE, fail
from pigeon.cli._control import add_config_arguments, load
from pigeon.config.load import ConfigError
from pigeon.store.factory import account_store

EX_NOUSER = 67
EX_CANTCREAT = 73
EX_NOPERM = 77

HELP = "manage submission accounts (add, passwd, del, list)"

DESCRIPTION = """\
Manage the accounts that may authenticate (SMTP AUTH) on the submission
listeners and relay mail. An account is named by its address, which it
owns; --address gives it more addresses it may send from. Passwords are
stored as argon2id hashes plus SCRAM-SHA-256 keys, in data_dir/accounts.db.
"""

EPILOG = """\
examples:
  pigeon user add alice@example.test              asks for the password twice
  pigeon user add bob@example.test --address sales@example.test
  printf '%s\\n' "$PW" | pigeon user passwd alice@example.test --password-stdin
  pigeon user list
  pigeon user del bob@example.test
  pigeon user list --config /etc/pigeon/pigeon.toml

Passwords need at least auth.min_password_length characters (default 12).
Run as root, the command acts as the owner of data_dir.

exit status: 0 ok, 1 account exists or address taken, 64 usage (password
empty, too short or mismatched; no terminal without --password-stdin),
67 no such user, 73 the account store cannot be opened (or is of a newer
format than this pigeon's), 77 permission
denied (run as root or the pigeon user), 78 configuration error.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="create an account")
    add_config_arguments(add, nested=True)
    add.add_argument("name", help="user name, normally the account's address")
    add.add_argument(
        "--address",
        action="append",
        default=[],
        metavar="ADDR",
        help="another address the account owns; repeatable",
    )
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    passwd = sub.add_parser("passwd", help="change an account's password")
    add_config_arguments(passwd, nested=True)
    passwd.add_argument("name")
    passwd.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    delete = sub.add_parser("del", help="delete an account")
    add_config_arguments(delete, nested=True)
    delete.add_argument("name")
    add_config_arguments(
        sub.add_parser("list", help="list accounts and their addresses"), nested=True
    )


NO_TERMINAL = (
    "no terminal to ask the password on: give it on standard input with "
    "--password-stdin, e.g. printf '%s\\n' \"$PW\" | pigeon user {action} NAME "
    "--password-stdin"
)


def have_terminal() -> bool:
    """Whether getpass can ask on a terminal (it reads /dev/tty, not stdin)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def read_password(
    from_stdin: bool,
    stdin: TextIO | None = None,
    ask: Callable[[str], str] = getpass.getpass,
    *,
    min_length: int = 1,
    action: str = "add",
) -> str | None:
    """The new password, or None after printing why not."""
    if from_stdin:
        line = (stdin or sys.stdin).readline()
        password = line.rstrip("\r\n")
    else:
        try:
            password = ask("New password: ")
            again = ask("Repeat it: ")
        except EOFError:
            fail(NO_TERMINAL.format(action=action), EX_USAGE)
            return None
        if again != password:
            fail("the passwords do not match", EX_USAGE)
            return None
    if not password:
        fail("the password is empty", EX_USAGE)
        return None
    if len(password) < min_length:
        fail(
            f"the password is too short: {len(password)} characters, at least {min_length} "
            "are needed (auth.min_password_length)",
            EX_USAGE,
        )
        return None
    return password


def run(
    args: argparse.Namespace, stdin: TextIO | None = None, ask: Callable[[str], str] | None = None
) -> int:
    try:
        config = load(args)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    asks_password = args.action in ("add", "passwd") and not args.password_stdin
    if ask is None:
        if asks_password and not have_terminal():
            return fail(NO_TERMINAL.format(action=args.action), EX_USAGE)
        ask = getpass.getpass
    store = account_store(config)
    try:
        store.open()
    except AccountError as exc:
        if isinstance(exc.__cause__, PermissionError):
            return fail(f"{exc} (run it as root or as the user pigeon runs as)", EX_NOPERM)
        return fail(str(exc), EX_CANTCREAT)
    try:
        if args.action == "list":
            for account in store.list():
                print(f"{account.name}\t{', '.join(account.addresses) or '-'}")
            return 0
        if args.action == "del":
            store.delete(args.name)
            print(f"deleted {args.name}")
            return 0
        if args.action == "passwd" and store.get(args.name) is None:
            return fail(f"no such user: {args.name}", EX_NOUSER)
        password = read_password(
            args.password_stdin,
            stdin,
            ask,
            min_length=config.auth.min_password_length,
            action=args.action,
        )
        if password is None:
            return EX_USAGE
        if args.action == "add":
            account = store.add(args.name, password, tuple(args.address))
            print(f"added {account.name} (addresses: {', '.join(account.addresses) or 'none'})")
        else:
            store.set_password(args.name, password)
            print(f"password changed for {args.name}")
        return 0
    except AccountError as exc:
        return fail(str(exc), EX_NOUSER if str(exc).startswith("no such user") else 1)
    finally:
        store.close()

"""`pigeon user add|passwd|del|list`: manage the accounts that may submit mail.

Contract:
  * The account store is `<data_dir>/accounts.db` (pigeon.auth.accounts);
    data_dir comes from --config FILE / --data-dir exactly as for `serve`
    (defaults, then the file, then the flag). A running server sees changes
    at the next login; no reload is needed.
  * Passwords are read without echo from the terminal (asked twice), or with
    --password-stdin as the first line of standard input (for scripts; the
    line ending is removed). They never appear on the command line.
  * Output: one line per change on stdout; errors as "pigeon: <message>" on
    stderr. Exit statuses: 0 ok, 64 usage (empty or mismatched password),
    67 (EX_NOUSER) no such user, 73 (EX_CANTCREAT) the store cannot be
    opened, 78 configuration error, 1 other account errors (already exists,
    address taken).
"""
from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Callable, TextIO

from pigeon.auth.accounts import AccountError, AccountStore
from pigeon.cli._common import EX_CONFIG, EX_USAGE, fail
from pigeon.config.load import ConfigError, load_config

EX_NOUSER = 67
EX_CANTCREAT = 73

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
  pigeon user --config /etc/pigeon.toml list
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE", type=Path,
                        help="TOML configuration file (for data_dir)")
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (overrides the file)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="create an account")
    add.add_argument("name", help="user name, normally the account's address")
    add.add_argument("--address", action="append", default=[], metavar="ADDR",
                     help="another address the account owns; repeatable")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin")
    passwd = sub.add_parser("passwd", help="change an account's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of stdin")
    delete = sub.add_parser("del", help="delete an account")
    delete.add_argument("name")
    sub.add_parser("list", help="list accounts and their addresses")


def read_password(from_stdin: bool, stdin: TextIO | None = None,
                  ask: Callable[[str], str] = getpass.getpass) -> str | None:
    """The new password, or None after printing why not."""
    if from_stdin:
        line = (stdin or sys.stdin).readline()
        password = line.rstrip("\r\n")
    else:
        password = ask("New password: ")
        if ask("Repeat it: ") != password:
            fail("the passwords do not match", EX_USAGE)
            return None
    if not password:
        fail("the password is empty", EX_USAGE)
        return None
    return password


def run(args: argparse.Namespace, stdin: TextIO | None = None,
        ask: Callable[[str], str] = getpass.getpass) -> int:
    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    store = AccountStore.in_data_dir(config.data_dir)
    try:
        store.open()
    except AccountError as exc:
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
        password = read_password(args.password_stdin, stdin, ask)
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

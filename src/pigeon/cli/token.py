"""`pigeon token add|list|remove`: the bearer tokens of the HTTP API (docs/api.md).

Contract:
  * The tokens live in `<data_dir>/api-tokens.json` (pigeon.web.tokens:
    SHA-256 hashes only, mode 0600, replaced atomically); the
    configuration is found by the rule of every command
    (pigeon.cli._config), --data-dir overrides data_dir, data_dir must
    exist, and run as root the command acts as the owner of data_dir. A
    running pigeon sees a change at the next request; no reload is needed.
  * `add NAME --scope send,read,admin` prints the new token once, alone on
    stdout (for `TOKEN=$(pigeon token add ...)`); it cannot be shown
    again. `list` prints name, scopes and creation time (UTC), one token a
    line; `remove NAME` forgets it. `add --tenant T` limits the token to
    capture tenant T (docs/capture.md, "Tenants"). `add --account USER`
    binds the token to an account of accounts.db (it must exist): its mail
    is then a submission session of that account (docs/api.md, "Who a
    token sends as").
  * Exit statuses: 0 ok, 1 a token of that name exists / no such token /
    the file does not read, 64 usage (a bad name or scope), 77 permission
    denied, 78 configuration error.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from pigeon.auth.accounts import AccountError, normalize_name
from pigeon.cli._common import EX_CONFIG, EX_USAGE, fail
from pigeon.cli._control import add_config_arguments, load
from pigeon.config.load import ConfigError
from pigeon.config.schema import Config
from pigeon.store.factory import account_store
from pigeon.web.sharedtokens import token_store
from pigeon.web.tokens import SCOPES, TokenError, TokenUsage, parse_scopes

EX_NOPERM = 77

HELP = "manage the HTTP API's bearer tokens (add, list, remove)"

DESCRIPTION = """\
Manage the bearer tokens of the HTTP API ([console] listen, docs/api.md).
A token has a name and scopes: send (POST /api/send), read (list and read
the queue), admin (act on the queue; includes read). Only its SHA-256 is
stored, in data_dir/api-tokens.json (mode 0600): the token is printed once,
by add.
"""

EPILOG = """\
examples:
  TOKEN=$(pigeon token add ci --scope send)
  pigeon token add ops --scope read,admin
  pigeon token add team-a --scope read,admin --tenant team-a@dev.example
  pigeon token add shop --scope send --account shop@example.org
  pigeon token list
  pigeon token remove ci
  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8025/api/queue

A running pigeon sees a change at its next request; no reload is needed.

exit status: 0 ok, 1 a token of that name exists, no such token, or the
token file does not read, 64 usage (bad name or scope), 77 permission
denied (run as root or the pigeon user), 78 configuration error.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="make a token and print it once")
    add_config_arguments(add, nested=True)
    add.add_argument("name", help="the token's name: 1-64 of A-Z a-z 0-9 . _ -")
    add.add_argument(
        "--scope",
        required=True,
        metavar="SCOPES",
        help=f"comma-separated, among {', '.join(SCOPES)}",
    )
    add.add_argument(
        "--tenant",
        metavar="TENANT",
        help="limit the token to this capture tenant's mail (/api/capture only; docs/capture.md)",
    )
    add.add_argument(
        "--account",
        metavar="USER",
        help="send as this account (pigeon user): its sender addresses, rate limits and "
        "the receive checks of SMTP submission apply (docs/api.md)",
    )
    add_config_arguments(sub.add_parser("list", help="list the tokens"), nested=True)
    remove = sub.add_parser("remove", help="forget a token")
    add_config_arguments(remove, nested=True)
    remove.add_argument("name")


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    store = token_store(config)
    try:
        if args.action == "add":
            try:
                scopes = parse_scopes(args.scope)
                if args.account is not None and not _account_exists(config, args.account):
                    return fail(f"no such account: {args.account} (see pigeon user list)", 1)
                token = store.add(
                    args.name, scopes, time.time(), tenant=args.tenant, account=args.account
                )
            except TokenUsage as exc:
                return fail(str(exc), EX_USAGE)
            print(token)
            return 0
        if args.action == "list":
            for info in store.list():
                when = datetime.fromtimestamp(info.created, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
                tenant = f"\ttenant={info.tenant}" if info.tenant else ""
                account = f"\taccount={info.account}" if info.account else ""
                print(f"{info.name}\t{','.join(info.scopes)}\t{when}{tenant}{account}")
            return 0
        store.remove(args.name)
        print(f"removed {args.name}")
        return 0
    except TokenError as exc:
        return fail(str(exc), 1)
    except PermissionError as exc:
        return fail(f"{exc} (run it as root or as the user pigeon runs as)", EX_NOPERM)


def _account_exists(config: Config, name: str) -> bool:
    """Whether accounts.db has `name` (TokenUsage for a name no account can have)."""
    try:
        name = normalize_name(name)
    except AccountError as exc:
        raise TokenUsage(str(exc)) from None
    store = account_store(config)
    try:
        return store.open().get(name) is not None
    except AccountError as exc:
        raise TokenError(str(exc)) from None
    finally:
        store.close()

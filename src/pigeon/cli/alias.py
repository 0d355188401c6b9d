"""`pigeon alias add|list|remove ADDRESS [TARGET...]`: the aliases a cluster shares.

Contract:
  * With a shared store (`[queue] store = "postgresql://..."`) the command
    changes the table `pigeon_aliases` (store/pg/domains.py); every node
    adds its rows to the `[aliases]` of its own file (config/shared.py; on
    a conflict the file's entry wins), at once: the change is announced on
    the admin channel and each node reloads (app/clusterwake.py).
  * ADDRESS is an `[aliases]` key: "local@domain" (the local part
    lowercased) or the catch-all "@domain", which must name a local domain
    (of this node's file, a shared one, or a "local" transport); TARGETs
    are full addresses SMTP can carry.
  * `add ADDRESS TARGET...` creates the alias, or appends the targets it
    lacks; `remove ADDRESS` removes it, `remove ADDRESS TARGET...` those
    targets (the alias goes with its last one); `list` prints one line per
    alias of this node's file or of the database: "ADDRESS<TAB>targets<TAB>
    source". Adding an address this node's file also defines warns: the
    file's entry wins on that node.
  * Exit: 0 ok, 1 nothing to remove, 64 the queue is not shared (edit
    [aliases] in the configuration file, then `pigeon reload`) or no
    target given to add, 65 a bad address, 69 the database cannot be
    reached or needs `pigeon db migrate`, 78 the configuration does not
    load.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from pigeon.cli._common import EX_USAGE, fail
from pigeon.cli._directory import add_actions, run_guarded, shared_tables, source
from pigeon.config._aliases import check_catch_alls
from pigeon.config.load import ConfigError
from pigeon.config.shared import alias_key, check_alias, merge_shared

HELP = "add, list or remove the aliases a cluster shares"
DESCRIPTION = """\
With several nodes on one PostgreSQL database ([queue] store), the aliases
added here are used by every node, in addition to the [aliases] of each
node's configuration file (whose entry wins when both define an address),
without a restart. A single node keeps its aliases in its configuration
file ([aliases], aliases_file).
"""
EPILOG = """\
examples:
  pigeon alias add info@example.org alice@example.org bob@example.net
  pigeon alias add @example.org postmaster@example.org      catch-all
  pigeon alias list
  pigeon alias remove info@example.org bob@example.net      one target
  pigeon alias remove info@example.org                      the whole alias

exit status: 0 ok, 1 no such shared alias or target, 64 the queue is not
shared (edit [aliases] in the configuration file) or no target to add, 65
a bad address, 69 the database cannot be reached (or run `pigeon db
migrate`), 78 configuration error.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_actions(parser, ("a shared alias (or targets of it)", "the aliases"), _positional)


def _positional(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("address", help='"local@domain", or "@domain" for a catch-all')
    parser.add_argument("targets", nargs="*", metavar="TARGET", help="a target address")


def run(args: argparse.Namespace) -> int:
    got = shared_tables(args, "alias", "[aliases]")
    if isinstance(got, int):
        return got
    config, tables = got

    def act() -> int:
        if args.action == "list":
            _, shared_aliases = tables.read()
            for key in sorted(set(config.aliases) | set(shared_aliases)):
                mine = key in config.aliases
                targets = config.aliases[key] if mine else shared_aliases[key]
                where = source(mine, key in shared_aliases)
                if mine and key in shared_aliases:
                    where = "file, shared (the file's entry is used)"
                print(f"{key}\t{', '.join(targets)}\t{where}")
            return 0
        if args.action == "remove":
            key = alias_key(args.address)
            targets = check_alias(key, args.targets)[1] if args.targets else ()
            if not tables.remove_alias(key, targets):
                what = "any of these targets" if targets else "a shared alias"
                return fail(f"alias: {key} is not {what}", 1)
            print(f"removed {key}" + (f" -> {', '.join(targets)}" if targets else ""))
            return 0
        if not args.targets:
            return fail("alias add: give at least one TARGET address", EX_USAGE)
        key, targets = check_alias(args.address, args.targets)
        if key.startswith("@"):  # a catch-all needs a local domain (router rule)
            merged, _ = merge_shared(config, *tables.read())
            try:
                check_catch_alls(dataclasses.replace(merged, aliases={key: targets}))
            except ConfigError:
                raise ConfigError(
                    "alias",
                    f"{key[1:]} is not a local domain here: a catch-all works in local "
                    f"domains only (pigeon domain add {key[1:]})",
                ) from None
        changed = tables.add_alias(key, targets)
        print(f"added {key} -> {', '.join(targets)}" if changed else f"{key} has these already")
        if key in config.aliases:
            print(
                f"warning: this node's configuration file defines [aliases] {key!r}: "
                "there its entry wins over the shared one",
                file=sys.stderr,
            )
        return 0

    return run_guarded("alias", act)

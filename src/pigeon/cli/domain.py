"""`pigeon domain add|list|remove DOMAIN`: the local domains a cluster shares.

Contract:
  * With a shared store (`[queue] store = "postgresql://..."` in the
    configuration found by the rule of every command) the command changes
    the table `pigeon_domains` (store/pg/domains.py); every node adds its
    rows to the domains of its own file (config/shared.py), at once: the
    change is announced on the admin channel and each node reloads
    (app/clusterwake.py). A shared domain accepts any local part, as a
    name in `domains = [...]`; a node whose file has a table for it keeps
    that table's `mailboxes`.
  * `add` of a domain already shared and `remove` of one that is not say
    so (exit 0 and 1). `list` prints one line per domain of this node's
    file or of the database: "NAME<TAB>file|shared|file, shared".
  * Exit: 0 ok, 1 nothing to remove, 64 the queue is not shared (edit
    [domains] in the configuration file, then `pigeon reload`), 65 not a
    valid domain name, 69 the database cannot be reached or needs `pigeon
    db migrate`, 78 the configuration does not load (cli/_directory.py).
"""

from __future__ import annotations

import argparse

from pigeon.cli._common import fail
from pigeon.cli._directory import add_actions, run_guarded, shared_tables, source
from pigeon.config.shared import check_domain

HELP = "add, list or remove the local domains a cluster shares"
DESCRIPTION = """\
With several nodes on one PostgreSQL database ([queue] store), the local
domains added here are local on every node, in addition to those of each
node's configuration file, without a restart. A single node keeps its
domains in its configuration file ([domains]).
"""
EPILOG = """\
examples:
  pigeon domain add example.org
  pigeon domain list
  pigeon domain remove example.org

exit status: 0 ok, 1 no such shared domain, 64 the queue is not shared
(edit [domains] in the configuration file), 65 not a valid domain name,
69 the database cannot be reached (or run `pigeon db migrate`), 78
configuration error.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_actions(parser, ("a shared domain", "the domains"), _positional)


def _positional(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("domain", help="the domain name, e.g. example.org")


def run(args: argparse.Namespace) -> int:
    got = shared_tables(args, "domain", "[domains]")
    if isinstance(got, int):
        return got
    config, tables = got

    def act() -> int:
        if args.action == "list":
            shared_domains, _ = tables.read()
            for name in sorted(set(config.domains) | set(shared_domains)):
                print(f"{name}\t{source(name in config.domains, name in shared_domains)}")
            return 0
        name = check_domain(args.domain)
        if args.action == "add":
            added = tables.add_domain(name)
            print(f"added {name}" if added else f"{name} is shared already")
            return 0
        if not tables.remove_domain(name):
            return fail(f"domain: {name} is not a shared domain", 1)
        print(f"removed {name}")
        if name in config.domains:
            print(f"note: this node's configuration file lists {name}: it stays local here")
        return 0

    return run_guarded("domain", act)

"""What `pigeon domain` and `pigeon alias` share: the configuration, the shared tables.

Contract:
  * `shared_tables(args, command, keys)` loads the configuration by the
    rule of every command (`-c FILE`, $PIGEON_CONFIG, ...; no data
    directory needed) and returns (config, `PgDomains` over its `[queue]
    store`), or an exit status after one line on stderr: 78 the
    configuration does not load; 64 the store is the embedded one, saying
    to edit the configuration file's `keys` and run `pigeon reload` (there
    is no shared table to change).
  * `run_guarded(action)` runs `action()` and turns a `StoreError` (the
    database cannot be reached, or its schema is too old: "run `pigeon db
    migrate`") into one line and 69 (EX_UNAVAILABLE), and a `ConfigError`
    (a bad domain or address, config/shared.py) into one line and 65
    (EX_DATAERR).
  * `add_actions(parser, (one, all), positional)`: the actions add, remove
    (each with `positional(parser)`'s arguments) and list, with -c/--data-dir
    before or after the action.
  * `source(in_file, in_db)`: the lists' column saying where an entry is from.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pigeon.cli._common import EX_CONFIG, EX_USAGE, fail
from pigeon.cli._control import add_config_arguments, load
from pigeon.config.load import ConfigError
from pigeon.store.factory import shared
from pigeon.vocab.errors import StoreError

__all__ = ["add_actions", "EX_DATAERR", "EX_UNAVAILABLE", "run_guarded", "shared_tables", "source"]

EX_DATAERR = 65  # sysexits.h: a bad domain or address
EX_UNAVAILABLE = 69  # sysexits.h: the database cannot be reached or is too old


def shared_tables(args: argparse.Namespace, command: str, keys: str):
    try:
        config = load(args, need_data_dir=False)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    if not shared(config):
        return fail(
            f"{command}: this node's queue is not shared (no [queue] store = "
            f'"postgresql://..."): its {keys} are in the configuration file; edit them '
            "there and run `pigeon reload`",
            EX_USAGE,
        )
    from pigeon.store.pg.domains import PgDomains

    return config, PgDomains(config.queue.store, sender=f"pigeon {command}")


def run_guarded(command: str, action: Callable[[], int]) -> int:
    try:
        return action()
    except ConfigError as exc:
        return fail(f"{command}: {exc.message}", EX_DATAERR)
    except StoreError as exc:
        return fail(f"{command}: {exc}", EX_UNAVAILABLE)


def source(in_file: bool, in_db: bool) -> str:
    return ", ".join(name for name, yes in (("file", in_file), ("shared", in_db)) if yes)


def add_actions(
    parser: argparse.ArgumentParser,
    what: tuple[str, str],
    positional: Callable[[argparse.ArgumentParser], None],
) -> None:
    add_config_arguments(parser)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (("add", f"add {what[0]}"), ("remove", f"remove {what[0]}")):
        one = sub.add_parser(name, help=text)
        add_config_arguments(one, nested=True)
        positional(one)
    listing = sub.add_parser("list", help=f"list {what[1]} and where each is from")
    add_config_arguments(listing, nested=True)

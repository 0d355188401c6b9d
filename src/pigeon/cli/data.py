"""`pigeon data show|downgrade`: the format versions of the data directory.

Contract:
  * `show`: for each kind of data (pigeon/dataformat.py: queue, accounts,
    mailboxes) the format found, the release that wrote it, the format this
    pigeon writes, and what this pigeon will do with it: "current", "older:
    upgraded at the next start", "newer: run pigeon X or newer", "none yet".
    Reads only (SQLite may add its -wal/-shm for the time it reads, as the
    data directory's owner). `--json`: one document, field names stable.
    Exit: 0 this pigeon can use every part, 73 some part is newer than it
    knows (or unreadable as a format), 78 configuration error.
  * `downgrade --to RELEASE`: with pigeon stopped (it holds
    <queue_dir>/owner.lock exclusively, as `pigeon queue rebuild` does, so a
    running pigeon makes it fail with 75 and pigeon cannot start meanwhile),
    brings each part back to the format RELEASE writes (dataformat.RELEASES),
    each part in one step that a crash leaves either done or not done (run
    it again), then prints one line per part. Only this pigeon knows how to
    undo its own steps: data newer than it knows is refused (73); a RELEASE
    newer than this one is a usage error (64: that release upgrades the
    data itself). Exit: 0 done, 64 unknown or newer release, 73 refused or
    failed, 75 pigeon is running, 78 configuration error.
  * Run as root, both act as the owner of data_dir (`_control.load`), so
    nothing they create is root's.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pigeon
from pigeon.auth.accounts import ACCOUNTS
from pigeon.auth.accounts import FILE_NAME as ACCOUNTS_FILE
from pigeon.auth.accounts import STEPS as ACCOUNT_STEPS
from pigeon.cli._common import EX_CANTCREAT, EX_CONFIG, EX_USAGE, fail
from pigeon.cli._control import add_config_arguments, load
from pigeon.config.load import ConfigError
from pigeon.config.schema import Config
from pigeon.dataformat import (
    Format,
    FormatError,
    downgrade_sqlite_file,
    release_formats,
    sqlite_file_format,
)
from pigeon.mailstore.layout import MAILBOXES, downgrade_mailboxes, mailbox_format
from pigeon.queue.schema import QUEUE
from pigeon.queue.schema import STEPS as QUEUE_STEPS

EX_TEMPFAIL = 75

HELP = "show the format versions of the data directory, or downgrade them for a rollback"

DESCRIPTION = """\
pigeon keeps its data (the queue, the accounts, the mailbox tree) in
formats with version numbers of their own. "pigeon serve" upgrades the
data of an older release in place when it starts, and refuses data of a
newer release. "show" prints what the data directory holds and what this
pigeon will do with it; "downgrade --to RELEASE" (pigeon stopped) turns
the data back into the formats of an older release, for a rollback.
See docs/upgrade.md.
"""

EPILOG = """\
examples:
  pigeon data show
  pigeon data show --json
  systemctl stop pigeon; pigeon data downgrade --to 0.1.0

exit status: 0 ok, 64 unknown release (or newer than this pigeon), 73 data
of a newer format than this pigeon knows, 75 pigeon is running (downgrade),
78 configuration error.
"""


@dataclass(frozen=True)
class Part:
    """One kind of data in a data directory."""

    fmt: Format
    path: Path
    found: Callable[[], tuple[int, str] | None]
    downgrade: Callable[[int], int | None]


def parts(config: Config) -> list[Part]:
    queue_db = config.queue_dir / "queue.db"
    accounts_db = config.data_dir / ACCOUNTS_FILE
    mailboxes = config.mailbox_root
    return [
        Part(
            QUEUE,
            queue_db,
            lambda: sqlite_file_format(queue_db),
            lambda to: downgrade_sqlite_file(queue_db, QUEUE, QUEUE_STEPS, to),
        ),
        Part(
            ACCOUNTS,
            accounts_db,
            lambda: sqlite_file_format(accounts_db),
            lambda to: downgrade_sqlite_file(accounts_db, ACCOUNTS, ACCOUNT_STEPS, to),
        ),
        Part(
            MAILBOXES,
            mailboxes,
            lambda: mailbox_format(mailboxes),
            lambda to: downgrade_mailboxes(mailboxes, to),
        ),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="the formats found and what this pigeon does with them")
    add_config_arguments(show, nested=True)
    show.add_argument("--json", action="store_true", help="print JSON")
    down = sub.add_parser("downgrade", help="back to the formats of an older release")
    add_config_arguments(down, nested=True)
    down.add_argument("--to", metavar="RELEASE", required=True, help="e.g. 0.1.0")


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    if args.action == "show":
        return _show(config, args.json)
    return _downgrade(config, args.to)


def _describe(part: Part) -> dict:
    row: dict = {
        "name": part.fmt.name,
        "path": str(part.path),
        "found": None,
        "written_by": "",
        "current": part.fmt.current,
    }
    try:
        found = part.found()
    except (FormatError, sqlite3.Error, OSError) as exc:
        return {**row, "state": "unreadable", "problem": str(exc)}
    if found is None:
        return {**row, "state": "none"}
    row["found"], row["written_by"] = found
    try:
        decision = part.fmt.decide(found[0], owner=True, path=part.path, written_by=found[1])
    except FormatError as exc:
        return {**row, "state": "newer", "problem": str(exc)}
    return {**row, "state": "older" if decision == "upgrade" else "current"}


_STATE_TEXT = {
    "current": "current",
    "older": "older: upgraded at the next start",
    "none": "none yet: created at the first start",
}


def _show(config: Config, as_json: bool) -> int:
    rows = [_describe(p) for p in parts(config)]
    status = 0 if all(r["state"] in _STATE_TEXT for r in rows) else EX_CANTCREAT
    if as_json:
        print(json.dumps({"pigeon": pigeon.__version__, "formats": rows}, indent=2))
        return status
    print(f"data directory {config.data_dir}, pigeon {pigeon.__version__}")
    for r in rows:
        found = "-" if r["found"] is None else str(r["found"])
        by = f" (written by {r['written_by']})" if r["written_by"] else ""
        state = _STATE_TEXT.get(r["state"])
        if state is None and r["state"] == "newer":
            state = f"newer: run pigeon {r['written_by'] or '(the newer one)'} or newer"
        elif state is None:
            state = f"unreadable: {r.get('problem', '')}"
        print(f"  {r['name']:<10} format {found}{by}, this pigeon {r['current']}: {state}")
        print(f"  {'':<10} {r['path']}")
    return status


def _downgrade(config: Config, release: str) -> int:
    from pigeon.queue.dbfile import StoreBusy, lock_owner

    try:
        targets = release_formats(release)
    except KeyError as exc:
        return fail(str(exc.args[0]), EX_USAGE)
    all_parts = parts(config)
    if any(targets[p.fmt.name] > p.fmt.current for p in all_parts):
        return fail(
            f"pigeon {release} is newer than this pigeon {pigeon.__version__}: "
            "it upgrades the data itself when it starts",
            EX_USAGE,
        )
    lock = None
    try:
        if config.queue_dir.is_dir():
            lock = lock_owner(config.queue_dir, exclusive=True)  # StoreBusy: pigeon runs
        for part in all_parts:
            target = targets[part.fmt.name]
            was = part.downgrade(target)
            if was is None:
                print(f"{part.fmt.what} {part.path}: already format {target} or older")
            else:
                print(part.fmt.downgraded_line(part.path, was, target))
    except StoreBusy as exc:
        return fail(str(exc), EX_TEMPFAIL)
    except PermissionError:
        raise  # 77, by cli._entry
    except (FormatError, sqlite3.Error, OSError) as exc:
        return fail(f"downgrade stopped: {exc}", EX_CANTCREAT)
    finally:
        if lock is not None:
            os.close(lock)
    print(f"the data directory {config.data_dir} is now in the formats of pigeon {release}")
    return 0

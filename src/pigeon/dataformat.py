"""Format versions of the data pigeon keeps, and the rules for opening each (docs/upgrade.md).

Why: a pigeon of one release must open the data of the release before it
(upgrading it in place), and must refuse the data of a release after it
rather than misread it (an older pigeon drops envelope fields it does not
know, or a table it does not know, without noticing). So every kind of
data carries a format version, and every open compares it.

Contract:
  * Each kind of data has a `Format`: a name ("queue", "accounts",
    "mailboxes", as `pigeon data` and `RELEASES` say), what it is in a
    sentence ("queue database"), the version this pigeon writes (`current`)
    and the oldest version a non-owner may use as it is (`oldest_readable`).
    Format versions are integers of their own, independent of the release
    number; a release bumps one only when it changes that data. Version 0
    is data written before versions were recorded (release 0.1.0): no stamp
    means 0.
  * `Format.decide(found, owner=..., path=..., written_by=...)` is the one
    rule every open follows:
      - found == current: "current", use it;
      - found > current: `FormatError`: one line naming the file, both
        versions and the release that wrote it, and saying to run that
        release (or newer); nothing is written into it;
      - found < current, opened by the owner (the process that runs the
        queue manager, under the data-directory lock): "upgrade", in place;
      - found < current, anyone else (sendmail, a worker, `pigeon user`,
        `pigeon queue list` while pigeon is stopped): "older", used as it is
        when found >= oldest_readable, else `FormatError` saying to start
        this pigeon's `pigeon serve` once (it upgrades).
  * SQLite files keep their version in `PRAGMA user_version` (the database
    header: any sqlite3 client shows it) and, with the release that wrote
    it, in a `meta (key, value)` table (`format`, `written_by`).
    `read_sqlite(conn)` reads both; `migrate_sqlite(conn, fmt, steps,
    found, target)` runs the steps from `found` to `target` (up or down) and
    stamps `target`, all inside the caller's transaction: steps and version
    commit together or not at all, so a crash mid-upgrade leaves the older
    version, which still opens and is upgraded again at the next start.
    Steps that must touch files (not rows) are written so that running
    them twice is harmless, and rewrite each file atomically (write, fsync,
    rename), before the version is stamped.
  * Data that is not a database carries a stamp file of one line,
    "pigeon <name> format <N> written-by <release>", replaced atomically
    (`read_stamp`, `write_stamp`).
  * `RELEASES`: the format versions each release writes, for
    `pigeon data downgrade --to RELEASE`. A test holds the entry of this
    release equal to the formats' `current`.
  * `upgraded_line` / `downgraded_line`: the INFO line an upgrade writes
    to the log (one per format), and what a downgrade prints.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pigeon
from pigeon.fsutil import fsync_dir

__all__ = [
    "Format",
    "FormatError",
    "Migration",
    "RELEASES",
    "migrate_sqlite",
    "read_sqlite",
    "read_stamp",
    "downgrade_sqlite_file",
    "immediate",
    "release_formats",
    "sqlite_file_format",
    "stamp_sqlite",
    "write_stamp",
]

#: Format versions written by each release (docs/upgrade.md, "Formats").
RELEASES: dict[str, dict[str, int]] = {
    "0.1.0": {"queue": 0, "accounts": 0, "mailboxes": 0},
    "0.2.0": {"queue": 1, "accounts": 1, "mailboxes": 1},
}

#: What an unknown writer is called in messages (a stamp without written_by).
UNKNOWN_WRITER = "a newer pigeon"


class FormatError(Exception):
    """Data of a format this pigeon cannot use (see the contract); the
    message is one line for the operator. Subclassed by the stores so that
    their own error handling (StoreError, AccountError) applies too."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Migration:
    """One step between version `v` and `v + 1` (the key it is stored under):
    `up` upgrades, `down` reverses it (`pigeon data downgrade`)."""

    up: Callable[[sqlite3.Connection], None]
    down: Callable[[sqlite3.Connection], None]


@dataclass(frozen=True, slots=True)
class Format:
    """One kind of data and its versions (see the contract)."""

    name: str
    what: str
    current: int
    oldest_readable: int = 0

    def decide(
        self, found: int, *, owner: bool, path: Path | str, written_by: str = ""
    ) -> Literal["current", "upgrade", "older"]:
        """The rule of the contract; FormatError when this pigeon must not use the data."""
        if found == self.current:
            return "current"
        if found > self.current:
            raise FormatError(self.newer_line(path, found, written_by))
        if owner:
            return "upgrade"
        if found < self.oldest_readable:
            raise FormatError(
                f"{self.what} {path} has format {found}, older than this pigeon "
                f"{pigeon.__version__} uses without upgrading it: start `pigeon serve` of "
                f"this version once (it upgrades the data at start-up), then try again"
            )
        return "older"

    def newer_line(self, path: Path | str, found: int, written_by: str) -> str:
        """The one-line refusal of data written by a newer pigeon."""
        writer = f"pigeon {written_by}" if written_by else UNKNOWN_WRITER
        run = f"pigeon {written_by} or newer" if written_by else "the newer pigeon that wrote it"
        return (
            f"{self.what} {path} has format {found} (written by {writer}); this is pigeon "
            f"{pigeon.__version__}, which knows formats up to {self.current}: run {run}, "
            f"or downgrade the data with that pigeon's `pigeon data downgrade` "
            f"(docs/upgrade.md)"
        )

    def upgraded_line(self, path: Path | str, found: int) -> str:
        """The INFO line of an upgrade in place."""
        return (
            f"upgraded the {self.what} {path} from format {found} to format "
            f"{self.current} (pigeon {pigeon.__version__})"
        )

    def downgraded_line(self, path: Path | str, found: int, target: int) -> str:
        return f"downgraded the {self.what} {path} from format {found} to format {target}"


def release_formats(release: str) -> dict[str, int]:
    """The formats `release` writes; KeyError naming the releases known."""
    try:
        return RELEASES[release]
    except KeyError:
        raise KeyError(
            f"unknown release {release!r}; this pigeon knows {', '.join(RELEASES)}"
        ) from None


# --- SQLite files ------------------------------------------------------------------


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (the write lock up front) ... COMMIT, or ROLLBACK when
    the block raises; errors go out as they came (sqlite3.Error included).
    `conn` must be in autocommit mode (isolation_level=None)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _has_meta(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
    return row is not None


def read_sqlite(conn: sqlite3.Connection) -> tuple[int, str]:
    """(format version, release that wrote it or "") of an open database."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    written_by = ""
    if _has_meta(conn):
        row = conn.execute("SELECT value FROM meta WHERE key='written_by'").fetchone()
        written_by = str(row[0]) if row is not None else ""
    return found, written_by


def stamp_sqlite(conn: sqlite3.Connection, version: int) -> None:
    """Record `version` (inside the caller's transaction). Version 0 is
    "no stamp": the meta rows go, as the version before stamps had none."""
    conn.execute(f"PRAGMA user_version = {int(version)}")
    if version > 0:
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (("format", str(version)), ("written_by", pigeon.__version__)),
        )
    elif _has_meta(conn):
        conn.execute("DELETE FROM meta WHERE key IN ('format', 'written_by')")


def migrate_sqlite(
    conn: sqlite3.Connection,
    steps: Mapping[int, Migration],
    found: int,
    target: int,
) -> None:
    """Run the steps from `found` to `target` and stamp `target`, inside
    the caller's transaction (see the contract)."""
    if target >= found:
        for version in range(found, target):
            steps[version].up(conn)
    else:
        for version in range(found - 1, target - 1, -1):
            steps[version].down(conn)
    stamp_sqlite(conn, target)


def sqlite_file_format(path: Path) -> tuple[int, str] | None:
    """(version, written_by) of the SQLite file `path` (read only: for
    `pigeon data show`); None when there is no such file or it is empty."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return None
    except FileNotFoundError:
        return None
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    try:
        return read_sqlite(conn)
    finally:
        conn.close()


def downgrade_sqlite_file(
    path: Path, fmt: Format, steps: Mapping[int, Migration], target: int
) -> int | None:
    """Bring the SQLite file `path` back to format `target` in one transaction
    (`pigeon data downgrade`, pigeon stopped); the version it had, or None
    when it was not newer than `target` (or absent). FormatError when it is
    newer than this pigeon knows: only the pigeon that wrote it can undo its
    steps. sqlite3.Error as SQLite raises it."""
    if sqlite_file_format(path) is None:
        return None
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    try:
        with immediate(conn):
            found, written_by = read_sqlite(conn)
            if found > fmt.current:
                raise FormatError(fmt.newer_line(path, found, written_by))
            if found <= target:
                return None
            migrate_sqlite(conn, steps, found, target)
        return found
    finally:
        conn.close()


# --- stamp files (data that is not a database) ---------------------------------------

_STAMP_RE = re.compile(r"pigeon ([a-z]+) format (\d+) written-by (\S+)\n?\Z")


def read_stamp(path: Path, fmt: Format) -> tuple[int, str] | None:
    """(version, written_by) from the stamp file `path`; None when there is
    none. FormatError when it cannot be read as one (never guessed)."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{fmt.what} {path}: cannot read its format stamp: {exc}") from None
    m = _STAMP_RE.match(text)
    if m is None or m.group(1) != fmt.name:
        raise FormatError(
            f"{fmt.what} {path}: not a pigeon format stamp for {fmt.name} ({text[:60]!r}); "
            "pigeon will not guess the format of this data"
        )
    return int(m.group(2)), m.group(3)


def write_stamp(path: Path, fmt: Format, version: int) -> None:
    """Replace the stamp file `path` atomically (write, fsync, rename, fsync
    the directory), mode 0600."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp")
    data = f"pigeon {fmt.name} format {int(version)} written-by {pigeon.__version__}\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)

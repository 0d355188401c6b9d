"""The account store: users, their password hashes, SCRAM keys and addresses (SQLite).

Contract:
  * One SQLite file, `<data_dir>/accounts.db` (mode 0600: it holds password
    hashes), in WAL mode so that `pigeon user ...` can change accounts while
    the server reads them; changes apply to the next login, without a reload.
  * An account has a name (what the client gives to AUTH, e.g.
    "alice@example.test"; compared case-insensitively, stored lowercased),
    an argon2id hash of its password (pigeon.auth.passwords), the
    SCRAM-SHA-256 keys derived from the same password (RFC 5802 §3; stored
    because SCRAM cannot be served from an argon2 hash), and the addresses
    it owns: its name when that is an address, plus any added with
    `--address`. An address belongs to at most one account.
  * Owned addresses are what an authenticated user may put in MAIL FROM
    (553 5.7.1 otherwise, enforced by the SMTP driver). Addresses are
    compared with the domain and the local part lowercased.
  * Methods raise `AccountError` with a message fit for the command line for
    user mistakes (exists, unknown, bad name, address taken); sqlite3 errors
    are wrapped in AccountError too. Nothing here reads the clock except
    `created` stamps, passed in by the caller when it matters.
  * Thread safety: one connection guarded by a lock; the server calls it
    from its authentication thread pool.
  * Format (`ACCOUNTS`, pigeon/dataformat.py): `open(owner=True)` (the
    serving pigeon) upgrades an older accounts.db in place, in the same
    transaction as its schema check, and logs one INFO line; other opens
    (`pigeon user`) use an older one as it is; every open refuses a newer
    one with `AccountFormatError` before writing anything.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pigeon.auth import passwords
from pigeon.dataformat import (
    Format,
    FormatError,
    Migration,
    immediate,
    migrate_sqlite,
    read_sqlite,
    stamp_sqlite,
)
from pigeon.fsutil import ensure_file
from pigeon.proto import scram
from pigeon.proto.scram import ScramKeys

FILE_NAME = "accounts.db"

#: The account store's format (pigeon/dataformat.py; docs/upgrade.md):
#:   0  release 0.1.0: tables accounts, addresses; no version recorded
#:   1  release 0.2.0: the same tables, user_version 1 and a meta table
ACCOUNTS = Format("accounts", "account store", current=1, oldest_readable=0)

_TABLES = (
    """CREATE TABLE IF NOT EXISTS accounts (
        name        TEXT PRIMARY KEY,
        argon2      TEXT NOT NULL,
        scram_salt  BLOB NOT NULL,
        scram_iter  INTEGER NOT NULL,
        stored_key  BLOB NOT NULL,
        server_key  BLOB NOT NULL,
        created     REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS addresses (
        address     TEXT PRIMARY KEY,
        account     TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE
    )""",
)


def _drop_meta(db: sqlite3.Connection) -> None:
    db.execute("DROP TABLE IF EXISTS meta")  # format 0 had none


#: Step v -> v + 1 under key v: format 1 only records the version (the meta
#: table is made by the stamp); going back drops the table again.
STEPS: dict[int, Migration] = {0: Migration(up=lambda db: None, down=_drop_meta)}

log = logging.getLogger("pigeon.auth")

_BAD_NAME = re.compile(r"[\s\x00-\x1f\x7f,]")


class AccountError(Exception):
    """A user-facing problem with an account operation."""


class AccountFormatError(FormatError, AccountError):
    """accounts.db is of a format this pigeon must not use (one line)."""


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    addresses: tuple[str, ...]
    created: float


def normalize_address(address: str) -> str:
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain or _BAD_NAME.search(address.strip()):
        raise AccountError(f'not an address "local@domain": {address!r}')
    return f"{local.lower()}@{domain.lower().rstrip('.')}"


def normalize_name(name: str) -> str:
    name = name.strip()
    if not name or len(name.encode("utf-8")) > 255 or _BAD_NAME.search(name):
        raise AccountError(
            f"bad user name {name!r} (1-255 octets, no spaces, commas or control characters)"
        )
    return normalize_address(name) if "@" in name else name.lower()


def account_secrets(password: str) -> tuple[Any, ...]:
    """What an account stores for `password`: (argon2id hash, SCRAM salt,
    iterations, StoredKey, ServerKey); every backend stores these five."""
    if not password:
        raise AccountError("the password is empty")
    try:
        keys = scram.derive_keys(password, os.urandom(16))
    except ValueError as exc:  # SASLprep refused it
        raise AccountError(f"unusable password: {exc}") from None
    return (
        passwords.hash_password(password),
        keys.salt,
        keys.iterations,
        keys.stored_key,
        keys.server_key,
    )


class AccountRecords:
    """The account rules over SQL, shared by every backend (pigeon/auth/directory.py).

    A backend gives `_q(sql, args)` (rows of a query) and `_tx(statements)`
    (all in one transaction, an IntegrityError as AccountError); the SQL is
    SQLite's (`?` placeholders, tables `accounts` and `addresses`), which a
    backend of another dialect translates (pigeon/store/pg/accounts.py)."""

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _tx(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        raise NotImplementedError

    # --- changes (pigeon user ...) --------------------------------------------------

    @staticmethod
    def _secrets(password: str) -> tuple[Any, ...]:
        return account_secrets(password)

    def add(self, name: str, password: str, addresses: tuple[str, ...] = ()) -> Account:
        name = normalize_name(name)
        owned = [name] if "@" in name else []
        owned += [a for a in map(normalize_address, addresses) if a not in owned]
        if self.get(name) is not None:
            raise AccountError(f"user {name} already exists")
        for address in owned:
            owner = self.owner_of(address)
            if owner is not None:
                raise AccountError(f"address {address} already belongs to user {owner}")
        now = time.time()
        stmts = [
            (
                "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, *self._secrets(password), now),
            )
        ]
        stmts += [("INSERT INTO addresses VALUES (?, ?)", (a, name)) for a in owned]
        self._tx(stmts)
        return Account(name, tuple(sorted(owned)), now)

    def set_password(self, name: str, password: str) -> None:
        name = normalize_name(name)
        if self.get(name) is None:
            raise AccountError(f"no such user: {name}")
        self._tx(
            [
                (
                    "UPDATE accounts SET argon2=?, scram_salt=?, scram_iter=?, stored_key=?, "
                    "server_key=? WHERE name=?",
                    (*self._secrets(password), name),
                )
            ]
        )

    def delete(self, name: str) -> None:
        name = normalize_name(name)
        if self.get(name) is None:
            raise AccountError(f"no such user: {name}")
        self._tx(
            [
                ("DELETE FROM addresses WHERE account=?", (name,)),
                ("DELETE FROM accounts WHERE name=?", (name,)),
            ]
        )

    # --- queries ------------------------------------------------------------------------

    def get(self, name: str) -> Account | None:
        try:
            name = normalize_name(name)
        except AccountError:
            return None
        rows = self._q("SELECT created FROM accounts WHERE name=?", (name,))
        if not rows:
            return None
        addrs = self._q("SELECT address FROM addresses WHERE account=? ORDER BY address", (name,))
        return Account(name, tuple(a for (a,) in addrs), rows[0][0])

    def list(self) -> list[Account]:
        names = [n for (n,) in self._q("SELECT name FROM accounts ORDER BY name")]
        return [a for a in map(self.get, names) if a is not None]

    def password_hash(self, name: str) -> str | None:
        try:
            name = normalize_name(name)
        except AccountError:
            return None
        rows = self._q("SELECT argon2 FROM accounts WHERE name=?", (name,))
        return rows[0][0] if rows else None

    def scram_keys(self, name: str) -> ScramKeys | None:
        try:
            name = normalize_name(name)
        except AccountError:
            return None
        rows = self._q(
            "SELECT scram_salt, scram_iter, stored_key, server_key FROM accounts WHERE name=?",
            (name,),
        )
        return ScramKeys(*rows[0]) if rows else None

    def owner_of(self, address: str) -> str | None:
        try:
            address = normalize_address(address)
        except AccountError:
            return None
        rows = self._q("SELECT account FROM addresses WHERE address=?", (address,))
        return rows[0][0] if rows else None


class AccountStore(AccountRecords):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> AccountStore:
        return cls(Path(data_dir) / FILE_NAME)

    def open(self, *, owner: bool = False) -> AccountStore:
        """Open (creating) accounts.db. `owner` (the serving pigeon, under
        the data-directory lock) upgrades an older format in place, with one
        INFO line; a newer format is refused by every open
        (`AccountFormatError`, one line naming the file and both versions)."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            ensure_file(self.path, 0o600)  # its -wal/-shm copy its mode
            if not os.access(self.path, os.R_OK | os.W_OK):
                # SQLite would only say "unable to open database file": say
                # why, so the CLI can tell a permission problem (77) apart.
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self.path))
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise AccountError(f"{self.path}: cannot open the account store: {exc}") from exc
        try:
            db.execute("PRAGMA busy_timeout=5000")  # first: the WAL switch may wait too
            self._refuse_newer(db)  # before anything is written into it
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            upgraded_from = self._schema(db, owner)
        except (AccountError, sqlite3.Error) as exc:
            db.close()
            if isinstance(exc, AccountError):
                raise
            raise AccountError(f"{self.path}: cannot open the account store: {exc}") from exc
        self._db = db
        if upgraded_from is not None:
            log.info("%s", ACCOUNTS.upgraded_line(self.path, upgraded_from))
        return self

    def _refuse_newer(self, db: sqlite3.Connection) -> None:
        found, written_by = read_sqlite(db)
        if found > ACCOUNTS.current:
            raise AccountFormatError(ACCOUNTS.newer_line(self.path, found, written_by))

    def _schema(self, db: sqlite3.Connection, owner: bool) -> int | None:
        """Version check, tables, upgrade: one transaction (a crash leaves the
        older format, which opens). The version found when upgraded, else None."""
        with immediate(db):
            found, written_by = read_sqlite(db)
            try:
                decision = ACCOUNTS.decide(
                    found, owner=owner, path=self.path, written_by=written_by
                )
            except FormatError as exc:
                raise AccountFormatError(str(exc)) from None
            new = db.execute("SELECT 1 FROM sqlite_master WHERE name='accounts'").fetchone() is None
            for statement in _TABLES:
                db.execute(statement)
            if new and found < ACCOUNTS.current:
                stamp_sqlite(db, ACCOUNTS.current)  # a new store: nothing to upgrade
                decision = "current"
            elif decision == "upgrade":
                migrate_sqlite(db, STEPS, found, ACCOUNTS.current)
        return found if decision == "upgrade" else None

    def take_ownership(self) -> None:
        """Become the owner while open, as open(owner=True) would have made us:
        a process started by `pigeon restart` opens the store as a non-owner
        and, once it holds the data-directory lock, upgrades an older format
        in place here (one INFO line), as a fresh start does."""
        if self._db is None:
            raise AccountError(f"{self.path}: the account store is not open")
        try:
            upgraded_from = self._schema(self._db, True)
        except sqlite3.Error as exc:
            raise AccountError(f"{self.path}: cannot open the account store: {exc}") from exc
        if upgraded_from is not None:
            log.info("%s", ACCOUNTS.upgraded_line(self.path, upgraded_from))

    def close(self) -> None:
        # Under the lock: a lookup in a worker thread may be inside a query, and
        # sqlite3 closing a connection another thread is using crashes the process.
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> AccountStore:
        return self if self._db is not None else self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            db = self._open_db()
            try:
                return db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise AccountError(f"{self.path}: {exc}") from exc

    def _tx(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        with self._lock:
            db = self._open_db()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    for sql, args in statements:
                        db.execute(sql, args)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                raise AccountError(f"address already belongs to an account ({exc})") from exc
            except sqlite3.Error as exc:
                raise AccountError(f"{self.path}: {exc}") from exc

    def _open_db(self) -> sqlite3.Connection:
        """The connection; the caller holds the lock (close() takes it too)."""
        if self._db is None:
            raise AccountError("the account store is not open")
        return self._db

"""The console's admin accounts: names and argon2id hashes in one JSON file.

Contract:
  * `AdminStore(path)`; `AdminStore.in_data_dir(data_dir)` is
    `<data_dir>/console-admins.json`, written 0600 through a temporary file
    and a rename (a reader sees the old file or the new one, never half).
  * `add(name, password)` adds or replaces; `remove(name)` is True when the
    name was there; `names()` lists them sorted; `info()` gives each name's
    creation time (seconds since the epoch); `passwd(name, password)`
    changes a password (AdminError when the name is unknown).
  * `stamp(name)` is a value that changes whenever the admin's password
    does and is None once the admin is gone: a session remembers the stamp
    of its login and the guard (console/guard.py) ends it when the stamp
    differs, so `pigeon admin remove|passwd` logs that admin out of a
    running pigeon at the next request.
  * `ensure_first()`: when the store's file does not exist, creates it
    with the admin `admin` and a fresh random password, and returns that
    password (else None): the console's first start, printed once by
    app/console.py. Once the file exists (even with every admin removed)
    it never happens again: `pigeon admin add` makes admins then.
  * `verify(name, password)` is True or False and costs one argon2
    verification either way (an unknown name burns the same time:
    auth/passwords.py `burn_time`), so response times do not tell which
    names exist. It is blocking (tens of milliseconds, 64 MiB): the event
    loop calls it in a thread.
  * The file is read again when its modification time changes, so an admin
    added with `pigeon admin add` while pigeon runs can log in at once.
  * Names: 1-64 characters of letters, digits and "._@-" (they appear in
    logs and cookies never; checked so a log line cannot be forged).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from pathlib import Path

from pigeon.auth.passwords import burn_time, hash_password, verify_password

__all__ = ["ADMINS_FILE", "AdminError", "AdminStore", "check_name", "random_password"]

ADMINS_FILE = "console-admins.json"

_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}\Z")


def random_password() -> str:
    """20 characters of base64url: about 120 bits, easy to copy from a terminal."""
    return secrets.token_urlsafe(15)


class AdminError(Exception):
    """A bad name or an unreadable store (said to the operator)."""


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise AdminError(
            f"not an admin name: {name!r} (1-64 letters, digits and the characters . _ @ -)"
        )
    return name


class AdminStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._hashes: dict[str, dict] = {}

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> AdminStore:
        return cls(Path(data_dir) / ADMINS_FILE)

    def _read(self) -> dict[str, dict]:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._hashes = None, {}
                return {}
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                try:
                    data = json.loads(self.path.read_text("utf-8"))
                    admins = data["admins"]
                    if not isinstance(admins, dict):
                        raise ValueError("admins is not an object")
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    raise AdminError(f"{self.path}: not a console admins file: {exc}") from None
                self._stamp, self._hashes = stamp, admins
            return dict(self._hashes)

    def _write(self, admins: dict[str, dict], *, create: bool = False) -> None:
        """Replace the file atomically; `create`: only if it does not exist
        (FileExistsError otherwise: the first admin never overwrites one
        that `pigeon admin add` just made)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"admins": admins}, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            if create:
                os.link(tmp, self.path)  # atomic, and fails if the file exists
            else:
                os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    def names(self) -> list[str]:
        return sorted(self._read())

    def add(self, name: str, password: str) -> None:
        check_name(name)
        if not password:
            raise AdminError("the password is empty")
        encoded = hash_password(password)  # slow: before the read, so the window is short
        admins = self._read()
        admins[name] = {"hash": encoded, "created": int(time.time())}
        self._write(admins)

    def passwd(self, name: str, password: str) -> None:
        if not password:
            raise AdminError("the password is empty")
        encoded = hash_password(password)
        admins = self._read()
        if name not in admins:
            raise AdminError(f"no such admin: {name}")
        admins[name] = {**admins[name], "hash": encoded}
        self._write(admins)

    def info(self) -> dict[str, int]:
        """Name -> creation time (seconds since the epoch; 0 if unknown)."""
        out = {}
        for name, entry in sorted(self._read().items()):
            created = entry.get("created") if isinstance(entry, dict) else None
            out[name] = created if isinstance(created, int) else 0
        return out

    def stamp(self, name: str) -> str | None:
        """Changes with the admin's password; None when the admin is gone (or unreadable)."""
        try:
            entry = self._read().get(name)
        except AdminError:
            return None
        encoded = entry.get("hash") if isinstance(entry, dict) else None
        # The hash's salt is fresh at every change: it is the stamp.
        return encoded if isinstance(encoded, str) else None

    def ensure_first(self, make_password=random_password) -> str | None:
        """Create `admin` with a random password when there is no file; the password or None."""
        if self.path.exists():
            return None
        password = make_password()
        entry = {"hash": hash_password(password), "created": int(time.time())}
        try:
            self._write({"admin": entry}, create=True)
        except FileExistsError:  # made meanwhile by `pigeon admin add`
            return None
        return password

    def remove(self, name: str) -> bool:
        admins = self._read()
        if name not in admins:
            return False
        del admins[name]
        self._write(admins)
        return True

    def verify(self, name: str, password: str) -> bool:
        try:
            entry = self._read().get(name)
        except AdminError:
            entry = None
        encoded = entry.get("hash") if isinstance(entry, dict) else None
        if not isinstance(encoded, str):
            burn_time(password)
            return False
        return verify_password(encoded, password)

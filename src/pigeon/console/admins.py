"""The console's admin accounts: names and argon2id hashes in one JSON file.

Contract:
  * `AdminStore(path)`; `AdminStore.in_data_dir(data_dir)` is
    `<data_dir>/console-admins.json`, written 0600 through a temporary file
    and a rename (a reader sees the old file or the new one, never half).
  * `add(name, password)` adds or replaces; `remove(name)` is True when the
    name was there; `names()` lists them sorted.
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
import threading
import time
from pathlib import Path

from pigeon.auth.passwords import burn_time, hash_password, verify_password

__all__ = ["ADMINS_FILE", "AdminError", "AdminStore", "check_name"]

ADMINS_FILE = "console-admins.json"

_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}\Z")


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

    def _write(self, admins: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"admins": admins}, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def names(self) -> list[str]:
        return sorted(self._read())

    def add(self, name: str, password: str) -> None:
        check_name(name)
        if not password:
            raise AdminError("the password is empty")
        admins = self._read()
        admins[name] = {"hash": hash_password(password), "created": int(time.time())}
        self._write(admins)

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

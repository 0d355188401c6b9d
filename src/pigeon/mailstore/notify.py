"""In-process "new mail in this Maildir" wake-ups (for IMAP IDLE, RFC 2177).

Contract:
  * `watch(maildir, callback) -> Watch`: `callback()` (no arguments) is
    called after every `announce(maildir)` of that Maildir until
    `handle.cancel()`. A Maildir is named by its path; relative paths and
    trailing slashes name the same Maildir as the absolute path (a
    Maildir++ folder, `<maildir>/.Junk`, is a Maildir of its own).
  * `announce(maildir)` calls the callbacks in the announcing thread:
    delivery announces from its worker threads after the rename into new/
    (delivery/maildir.py), so a callback must only hand the news over (the
    IMAP driver wraps its own with `loop.call_soon_threadsafe`) and must not
    block. An exception from a callback is logged and does not stop the
    others or the delivery.
  * Thread-safe; no asyncio here. Cheap when nobody watches anything: one
    check of an empty dict, no path work, no lock.
  * Only this process's deliveries are announced: mail put there by other
    programs is found by the readers' own slow poll.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

__all__ = ["Watch", "announce", "watch", "watching"]

log = logging.getLogger("pigeon")

_watchers: dict[str, set[Watch]] = {}
_lock = threading.Lock()


def _key(maildir: os.PathLike[str] | str) -> str:
    return os.path.abspath(maildir)


class Watch:
    """One registration; `cancel()` ends it (idempotent)."""

    __slots__ = ("key", "callback")

    def __init__(self, key: str, callback: Callable[[], object]) -> None:
        self.key = key
        self.callback = callback

    def cancel(self) -> None:
        with _lock:
            group = _watchers.get(self.key)
            if group is not None:
                group.discard(self)
                if not group:
                    del _watchers[self.key]


def watch(maildir: os.PathLike[str] | str, callback: Callable[[], object]) -> Watch:
    handle = Watch(_key(maildir), callback)
    with _lock:
        _watchers.setdefault(handle.key, set()).add(handle)
    return handle


def watching(maildir: os.PathLike[str] | str) -> int:
    """How many watches a Maildir has (for tests and statistics)."""
    with _lock:
        return len(_watchers.get(_key(maildir), ()))


def announce(maildir: os.PathLike[str] | str) -> None:
    if not _watchers:  # nobody watches anything: the common case, no lock
        return
    with _lock:
        group = list(_watchers.get(_key(maildir), ()))
    for handle in group:
        try:
            handle.callback()
        except Exception:
            log.exception("mailstore: a new-mail watcher of %s failed", handle.key)

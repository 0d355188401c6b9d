"""The durable outbox: webhook events written before they are sent (docs/webhooks.md).

    box = Outbox(data_dir / "webhooks", fsync=True)
    box.ensure()                                 # the directories (any process)
    box.prepare()                                # and stale tmp/ files removed (the owner)
    written = box.write(entries, caps)           # in a worker thread: fsync'ed
    for name in box.names(): entry = box.read(name)   # None: set aside in bad/
    box.remove(name)                             # taken by its receiver

Contract:
  * One file per (event, URL) in `outbox/`, named
    `<url key>-<created, microseconds>-<event id>.json`: a JSON object
    with the URL, the event's kind, id and time and the body to POST (the
    exact text that is signed). The URL key (12 hex digits of its SHA-256)
    lets entries be counted per URL from the names alone.
  * `write` makes each file in `tmp/` (exclusive create, written, fsync'ed),
    renames it into `outbox/`, then fsyncs `outbox/` once for the batch:
    an entry in `outbox/` is whole and durable; a crash leaves at most a
    file in `tmp/`, which `prepare` removes (those older than STALE_TMP
    seconds: a worker process may be writing the newer ones). With
    `fsync=False` (`[queue] fsync = false`) the fsyncs are skipped.
  * `write` refuses an entry whose URL already has `caps[url]` entries
    (counted from the names at that moment) and returns those written;
    the caller logs the refusals.
  * `read` returns None for a file that is not a whole entry (a disk
    that lied, a hand edit): it is moved to `bad/` and logged, never sent
    and never deleted. A file already gone is None without a log.
  * Every process of one data directory may `write` (worker processes
    too); names never collide (the event id is random). Only the owner
    (the process with the queue manager) reads and removes.
  * Blocking file I/O: call from a worker thread, never the event loop
    (`pigeon.webhooks.service` does). OSError of `write` reaches the caller.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pigeon.fsutil import fsync_dir, write_synced

__all__ = ["Entry", "Outbox", "STALE_TMP", "url_key"]

log = logging.getLogger("pigeon.webhooks")

#: Seconds after which a file left in tmp/ is a crash's leftover.
STALE_TMP = 60.0
_SUFFIX = ".json"


def url_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Entry:
    """One event owed to one URL."""

    url: str
    kind: str
    id: str
    created: float
    body: bytes

    @property
    def name(self) -> str:
        return f"{url_key(self.url)}-{int(self.created * 1e6):017d}-{self.id}{_SUFFIX}"

    def to_bytes(self) -> bytes:
        doc = {
            "url": self.url,
            "type": self.kind,
            "id": self.id,
            "created": self.created,
            "body": self.body.decode("utf-8"),
        }
        return json.dumps(doc, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        """The entry in `data`; ValueError (or a subclass) when it is not a whole one."""
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        texts = [doc.get(k) for k in ("url", "type", "id", "body")]
        created = doc.get("created")
        if not all(isinstance(v, str) for v in texts):
            raise ValueError("url, type, id or body missing")
        if isinstance(created, bool) or not isinstance(created, (int, float)):
            raise ValueError("created missing")
        url, kind, event_id, body = (str(v) for v in texts)
        return cls(url, kind, event_id, float(created), body.encode("utf-8"))


class Outbox:
    """The files of one data directory's outbox (module contract)."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        self.ready = root / "outbox"
        self.tmp = root / "tmp"
        self.bad = root / "bad"

    def ensure(self) -> None:
        """The directories (mode 0700), made when missing (any process)."""
        for path in (self.root, self.ready, self.tmp, self.bad):
            path.mkdir(mode=0o700, exist_ok=True)

    def prepare(self, now: float | None = None) -> None:
        """`ensure`, and stale files of tmp/ removed (the owner, at start)."""
        self.ensure()
        cutoff = (time.time() if now is None else now) - STALE_TMP
        for item in self.tmp.iterdir():
            try:
                if item.stat().st_mtime < cutoff:
                    item.unlink()
                    log.info("webhook outbox: removed %s, left half-written by a crash", item)
            except FileNotFoundError:
                pass

    def names(self) -> list[str]:
        return [n for n in os.listdir(self.ready) if n.endswith(_SUFFIX)]

    def write(self, entries: Sequence[Entry], caps: Mapping[str, int]) -> list[Entry]:
        """Each entry durable in outbox/ unless its URL is at its cap (module contract)."""
        counts = Counter(name.partition("-")[0] for name in self.names())
        written: list[Entry] = []
        for entry in entries:
            key = url_key(entry.url)
            if counts[key] >= caps.get(entry.url, 0):
                continue
            counts[key] += 1
            name = entry.name
            tmp = self.tmp / f"{name}.{os.getpid()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                if self.fsync:
                    write_synced(fd, entry.to_bytes())
                else:
                    os.write(fd, entry.to_bytes())
            finally:
                os.close(fd)
            os.rename(tmp, self.ready / name)
            written.append(entry)
        if written and self.fsync:
            fsync_dir(self.ready)
        return written

    def read(self, name: str) -> Entry | None:
        """The entry `name`, or None (module contract: a bad file goes to bad/)."""
        path = self.ready / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return Entry.from_bytes(data)
        except (ValueError, UnicodeError) as exc:
            log.error(
                "webhook outbox: %s is not a whole entry (%s): moved to %s", path, exc, self.bad
            )
            try:
                os.rename(path, self.bad / name)
            except OSError as err:
                log.error("webhook outbox: cannot move %s aside: %s", path, err)
            return None

    def remove(self, name: str) -> None:
        """Taken (or given up): gone. Not fsync'ed: after a crash it may be sent again."""
        try:
            os.unlink(self.ready / name)
        except FileNotFoundError:
            pass

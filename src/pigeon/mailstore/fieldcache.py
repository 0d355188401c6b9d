"""The `pigeon-cache` file: each message's ENVELOPE and envelope header fields, kept beside the Maildir.

    cache = FieldCache(maildir, live_bases)    # loads (or starts) <maildir>/pigeon-cache
    cache.get(base)                             # (envelope, fields) or None
    cache.put_many([(base, envelope, fields)])  # appended, fsync'ed
    cache.forget(bases)                         # expunged: dropped, the file compacted in time

Contract (the format is documented in docs/imap.md, "The cache file"):
  * What is kept per message is opaque octets the IMAP reader computes once
    (readers/imap/fields.py): the encoded ENVELOPE answer and the raw header
    fields the envelope is made of (Date, Subject, From, Sender, Reply-To,
    To, Cc, Bcc, In-Reply-To, Message-ID: `CACHED_FIELDS`), which answer
    SEARCH HEADER on those fields. Keyed by the message's unique base name
    (before ":2,"): a message's content never changes once delivered, only
    its flags in its name, so a flag change or a rename by another program
    leaves its record true.
  * The file: the line `pigeon-cache 1`, then records
    `+<base> <envelope length> <fields length>\\n<envelope><fields>\\n`. A later
    record for a base replaces the earlier one. Records are appended (write +
    fsync, like the uidlist's journal) when messages are first asked for;
    the file is read through mmap (the page cache holds it, not the heap);
    in memory only an index base -> offset and lengths (one int each) is kept.
  * Bounded: a record over MAX_RECORD octets is not kept (computed each
    time); records of expunged messages (`forget`) and of bases not live at
    load are dropped by compaction (tmp, fsync, rename) once they outnumber
    max(COMPACT_MIN, live records).
  * Never a crash: a torn or bad record ends the file there (it is cut back,
    one WARNING line when it was not a torn last record); a bad header or an
    unreadable file starts it again, empty; if it cannot be written at all,
    the cache works in memory only for the records it still has and `put_many`
    keeps nothing (the reader computes the answers each time).
  * Thread-safe (one lock): FETCH and SEARCH of many sessions run in threads.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import threading
from collections.abc import Iterable, Set

from pigeon.fsutil import fsync_dir, write_atomically, write_synced

__all__ = ["CACHED_FIELDS", "FILENAME", "FieldCache"]

log = logging.getLogger("pigeon")

FILENAME = "pigeon-cache"
_HEADER = b"pigeon-cache 1\n"
#: Lower-case names of the header fields kept (those of the ENVELOPE, RFC 9051 §7.5.2).
CACHED_FIELDS = frozenset(
    {
        "date",
        "subject",
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "in-reply-to",
        "message-id",
    }
)
MAX_RECORD = 64 * 1024
COMPACT_MIN = 1000
_LEN_BITS = 20  # each length < 2**20 (MAX_RECORD is far below)


class FieldCache:
    """See the module contract."""

    def __init__(self, maildir: str, live: Set[str]) -> None:
        self.path = os.path.join(maildir, FILENAME)
        self._lock = threading.Lock()
        #: base -> offset << 40 | envelope length << 20 | fields length
        self._index: dict[str, int] = {}
        self._map: mmap.mmap | bytes = b""
        self._size = 0  # octets of the file that are valid records
        self._dead = 0  # records in the file the index does not point to
        self._writable = True
        self._ino = 0
        try:
            self._load(live)
        except OSError as e:
            log.warning("mailstore: %s: %s; IMAP answers computed without it", self.path, e)
            self._index, self._writable = {}, False

    # -- reading -------------------------------------------------------------

    def _load(self, live: Set[str]) -> None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        if not data.startswith(_HEADER):
            if data:
                log.warning("mailstore: %s: not a cache file; starting it again", self.path)
            self._rewrite({})
            return
        self._ino = os.stat(self.path).st_ino
        end, dead, complete = _parse(data, live, self._index)
        self._dead = dead
        if end < len(data):
            if not complete:
                log.warning("mailstore: %s: bad record at octet %d; cut there", self.path, end)
            os.truncate(self.path, end)
        self._size = end
        if self._dead > max(COMPACT_MIN, len(self._index)):
            self._compact(data)
        else:
            self._remap()

    def _remap(self, fd: int | None = None) -> None:
        """Map the file's valid records (the open `fd`, else the file at the path)."""
        if isinstance(self._map, mmap.mmap):
            self._map.close()
        if self._size <= len(_HEADER):
            self._map = b""
        else:  # a descriptor of its own: the mmap keeps it, and with it any flock on it
            with open(self.path, "rb") as f:
                if fd is not None and os.fstat(f.fileno()).st_ino != os.fstat(fd).st_ino:
                    self._map = os.pread(fd, self._size, 0)  # renamed over meanwhile
                else:
                    self._map = mmap.mmap(f.fileno(), self._size, access=mmap.ACCESS_READ)

    def get(self, base: str) -> tuple[bytes, bytes] | None:
        with self._lock:
            packed = self._index.get(base)
            if packed is None:
                return None
            return self._slice(packed)

    def get_many(self, bases: Iterable[str]) -> list[tuple[bytes, bytes] | None]:
        with self._lock:
            index, out = self._index, []
            for base in bases:
                packed = index.get(base)
                out.append(None if packed is None else self._slice(packed))
            return out

    def _slice(self, packed: int) -> tuple[bytes, bytes]:
        start = packed >> 40
        env_len = (packed >> _LEN_BITS) & ((1 << _LEN_BITS) - 1)
        fields_len = packed & ((1 << _LEN_BITS) - 1)
        mid = start + env_len
        data = self._map
        return data[start:mid], data[mid : mid + fields_len]

    def __len__(self) -> int:
        return len(self._index)

    # -- changing ------------------------------------------------------------

    def put_many(self, records: Iterable[tuple[str, bytes, bytes]]) -> None:
        """Keep these (base, envelope, fields) records (see the contract)."""
        with self._lock:
            if not self._writable:
                return
            kept = [
                (base, env, fields)
                for base, env, fields in records
                if len(env) + len(fields) <= MAX_RECORD and " " not in base and "\n" not in base
            ]
            if not kept:
                return
            try:
                self._append(kept)
            except OSError as e:
                log.warning("mailstore: %s: %s; not kept", self.path, e)
                self._writable = False

    def _append(self, records: list[tuple[str, bytes, bytes]]) -> None:
        """Append records under an exclusive flock: another process (workers > 1)
        may have appended or compacted meanwhile; its records are read first,
        so the offsets stay true."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:  # removed by hand: start it again
            self._rewrite({})
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            if st.st_ino != self._ino or st.st_size != self._size:
                self._catch_up(fd, st)
                if self._size != st.st_size:  # a bad record: leave the file alone
                    return
            parts: list[bytes] = []
            offsets = []
            at = self._size
            for base, env, fields in records:
                packed, at = _add_record(parts, at, base, env, fields)
                offsets.append((base, packed))
            write_synced(fd, b"".join(parts))
            for base, packed in offsets:
                if base in self._index:
                    self._dead += 1
                self._index[base] = packed
            self._size = at
            self._remap(fd)  # this file, whatever another process renames over it
        finally:
            os.close(fd)  # releases the flock

    def _catch_up(self, fd: int, st: os.stat_result) -> None:
        """Index what another process wrote (its appends, or a new file)."""
        with open(fd, "rb", closefd=False) as f:
            f.seek(0)
            data = f.read(st.st_size)
        if st.st_ino != self._ino or st.st_size < self._size:
            self._index, self._dead, start = {}, 0, len(_HEADER)
        else:
            start = self._size
        live = _Everything()
        end, dead, _ = _parse(data, live, self._index, start)
        self._dead += dead
        self._size, self._ino = end, st.st_ino
        self._map = data

    def forget(self, bases: Iterable[str]) -> None:
        """These messages were expunged (see the contract)."""
        with self._lock:
            for base in bases:
                if self._index.pop(base, None) is not None:
                    self._dead += 1
            if self._writable and self._dead > max(COMPACT_MIN, len(self._index)):
                try:
                    self._compact(bytes(self._map[: self._size]))
                except OSError as e:
                    log.warning("mailstore: %s: %s; not compacted", self.path, e)

    def _compact(self, data: bytes) -> None:
        """Rewrite the file with the indexed records only (data: the file)."""
        kept = {}
        self._map = data
        for base, packed in self._index.items():
            kept[base] = self._slice(packed)
        self._rewrite(kept)

    def _rewrite(self, records: dict[str, tuple[bytes, bytes]]) -> None:
        parts, index, at = [_HEADER], {}, len(_HEADER)
        for base, (env, fields) in records.items():
            index[base], at = _add_record(parts, at, base, env, fields)
        write_atomically(self.path, b"".join(parts))
        fsync_dir(os.path.dirname(self.path))
        self._index, self._size, self._dead = index, at, 0
        self._ino = os.stat(self.path).st_ino
        self._remap()


def _add_record(
    parts: list[bytes], at: int, base: str, env: bytes, fields: bytes
) -> tuple[int, int]:
    """Add a record at file offset `at` to `parts`: (its index entry, the offset after it)."""
    head = b"+%s %d %d\n" % (base.encode("utf-8", "surrogateescape"), len(env), len(fields))
    parts += (head, env, fields, b"\n")
    start = at + len(head)
    return start << 40 | len(env) << _LEN_BITS | len(fields), start + len(env) + len(fields) + 1


class _Everything(frozenset[str]):
    """Every base counts as live (records another process just wrote)."""

    def __contains__(self, item: object) -> bool:
        return True


def _parse(
    data: bytes, live: Set[str], index: dict[str, int], start: int = len(_HEADER)
) -> tuple[int, int, bool]:
    """Index the records of `data` whose base is in `live`: (octets of good
    records, records not indexed, whether the records ended cleanly or
    only in a torn last one)."""
    at, n, dead = start, len(data), 0
    while at < n:
        eol = data.find(b"\n", at)
        if eol < 0:
            return at, dead, True  # a torn record head: the last append
        head = data[at:eol].split(b" ")
        if len(head) != 3 or head[0][:1] != b"+" or not (head[1].isdigit() and head[2].isdigit()):
            return at, dead, False
        env_len, fields_len = int(head[1]), int(head[2])
        end = eol + 1 + env_len + fields_len
        if env_len + fields_len > MAX_RECORD or end >= n:
            return at, dead, end >= n and env_len + fields_len <= MAX_RECORD
        if data[end : end + 1] != b"\n":
            return at, dead, False
        base = head[0][1:].decode("utf-8", "surrogateescape")
        if base in live:
            if base in index:
                dead += 1
            index[base] = (eol + 1) << 40 | env_len << _LEN_BITS | fields_len
        else:
            dead += 1
        at = end + 1
    return at, dead, True

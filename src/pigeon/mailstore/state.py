"""The in-memory state of one Maildir, shared by every reader session of the process.

Contract:
  * `state_for(maildir)` gives the one `MaildirState` of a Maildir in this
    process (made on first use, kept while a handle holds it and among the
    `RECENT_STATES` used last); every method runs under its `lock` (an
    RLock: blocking file I/O, called from the readers' threads).
  * `refresh()` brings the state up to date with the disk: one listdir of
    new/ and one of cur/; files in new/ are moved to cur/ with `:2,` (a
    reader has seen them; \\Recent is not kept, RFC 9051 dropped it); new
    base names get UIDs in name order (Maildir names begin with the arrival
    time); names gone are expunged; a name whose flags changed gets a new
    modseq (RFC 7162 §3.1: every change raises it). UIDs and modseqs are
    in the uidlist (mailstore/uidlist.py) before `refresh` returns. new/ is
    listed at every refresh (readers keep it nearly empty); cur/ only when
    its mtime moved since the last look, or once more a second after a look
    at a recent mtime (a change in the same clock tick would not show in
    it). Our own changes to cur/ (`changing()`) do not cost a rescan when
    cur/ was as the state knew it before them.
  * The current messages are `snapshot` (a `Snapshot`: a dict uid ->
    MessageInfo in UID order and its `generation`), replaced, never changed
    in place, so sessions share it. `changed_since(generation)` gives the
    UIDs touched since (added, flags changed or expunged), or None when
    that is too long ago (the caller compares whole snapshots).
  * `set_flags`, `expunge` and `register` (files a copy or an append just
    put into cur/) change the files, the uidlist and the snapshot together.
  * `field_cache()` is the Maildir's `pigeon-cache` (mailstore/fieldcache.py),
    loaded on first use; expunges drop their records from it. `unchanged()`
    tells, without blocking, that nothing on disk needs a refresh.
  * A lost or corrupt uidlist: a new UIDVALIDITY, every message numbered
    again from 1, one WARNING line; never an exception.
  * OSError from the disk propagates (the reader answers NO).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator

from pigeon.fsutil import fsync_dir
from pigeon.mailstore.fieldcache import FieldCache
from pigeon.mailstore.flags import INFO, LETTER_FLAGS
from pigeon.mailstore.keywords import Keywords
from pigeon.mailstore.message import MessageInfo, make
from pigeon.mailstore.names import arrival_key
from pigeon.mailstore.snapshot import Snapshot
from pigeon.mailstore.uidlist import FILENAME, UidList, UidListCorrupt, new_uidvalidity

__all__ = [
    "MaildirState",
    "Snapshot",
    "existing_state",
    "forget_state",
    "kept_letters",
    "state_for",
]

log = logging.getLogger("pigeon")

#: UIDs remembered in the change log before sessions behind it compare snapshots.
LOG_MAX = 20_000
#: A directory mtime this close (seconds) to the scan is not trusted.
MTIME_SLACK = 1.0


class MaildirState:
    """See the module contract."""

    def __init__(self, maildir: str) -> None:
        self.maildir = maildir
        self.lock = threading.RLock()
        self.keywords = Keywords(maildir)
        self.uidlist_path = os.path.join(maildir, FILENAME)
        self.uidlist: UidList | None = None
        self.by_base: dict[str, MessageInfo] = {}
        self.snapshot = Snapshot({}, 0)
        self._log: list[int] = []
        self._log_start = 0  # the generation of _log[0]
        self._mtime: int | None = None
        self._verify_at: float | None = None
        self._flag_sets: dict[str, frozenset[str]] = {}
        #: The file names in cur/ the state knows (for the scan's set differences).
        self._names: set[str] = set()
        self._fields: FieldCache | None = None

    # -- reading the disk --------------------------------------------------

    @property
    def generation(self) -> int:
        return self._log_start + len(self._log)

    def refresh(self) -> None:
        with self.lock:
            if self.keywords.load():  # before the uidlist: its names' letters need it
                self._flag_sets = {}
                if self.uidlist is not None:
                    self._rename_keywords()
            self._ensure_loaded()
            mtime = self._cur_mtime()
            due = self._verify_at is not None and time.monotonic() >= self._verify_at
            # new/ is listed every time (readers empty it: a few entries at
            # most); cur/ only when its mtime moved or a check is due
            whole = due or mtime != self._mtime
            if self._scan(whole):
                self._record(self._cur_mtime())
            elif whole:
                self._record(mtime)

    def unchanged(self) -> bool:
        """True when the state is loaded and the disk shows nothing to take
        in (keywords file and cur/ as last seen, no recheck due, new/ empty):
        a handle may then be opened without `refresh` (a few stat calls, for
        a SELECT answered on the event loop). False, never blocking, when
        another thread holds the lock."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if self.uidlist is None or self._verify_at is not None:
                return False
            if self.keywords.changed() or self._cur_mtime() != self._mtime:
                return False
            with os.scandir(os.path.join(self.maildir, "new")) as entries:
                return not any(not e.name.startswith(".") for e in entries)
        except OSError:
            return False
        finally:
            self.lock.release()

    def _rename_keywords(self) -> None:
        """Another program named a keyword letter (dovecot-keywords changed):
        the messages carrying it have other flags now."""
        changed = []
        for info in self.by_base.values():
            flags = self._flags_of(info.name.partition(":")[2])
            if flags != info.flags:
                changed.append(info.with_change(0, info.name, flags))
        self._commit(changed, ())

    def _ensure_loaded(self) -> None:
        if self.uidlist is None:
            self._load_uidlist()

    def _cur_mtime(self) -> int:
        return os.stat(os.path.join(self.maildir, "cur")).st_mtime_ns

    def _record(self, mtime: int) -> None:
        """Remember cur/'s mtime as matching the state. A change by another
        program in the same clock tick as that look (or between our own
        change and the stat after it) would not show in it: while it is
        that recent, one whole scan more is due a little later."""
        self._mtime = mtime
        recent = time.time_ns() - mtime <= MTIME_SLACK * 1e9
        self._verify_at = time.monotonic() + MTIME_SLACK if recent else None

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Around our own changes to cur/ (lock held): if cur/ was as the
        state knew it before, it is again after (no rescan for our own
        renames); else the next refresh scans it whole."""
        with self.lock:
            self._ensure_loaded()
            clean = self._cur_mtime() == self._mtime
            try:
                yield
            finally:
                if clean:
                    self._record(self._cur_mtime())
                else:
                    self._mtime = None

    def _load_uidlist(self) -> None:
        try:
            found = UidList.load(self.uidlist_path)
        except UidListCorrupt as e:
            log.warning("mailstore: %s; numbering the messages again (new UIDVALIDITY)", e)
            found = None
        if found is None:
            found = UidList(new_uidvalidity())
            found.write(self.uidlist_path, ())
        self.uidlist = found
        maildir, flags_of, by_base = self.maildir, self._flags_of, self.by_base
        known = self._flag_sets
        for uid, (modseq, name) in found.entries.items():  # the hot loop of a start
            base, _, info = name.partition(":")
            flags = known.get(info)
            if flags is None:
                flags = flags_of(info)
            by_base[base] = make((uid, modseq, name, flags, maildir))
        found.entries = {}  # by_base holds them from now on
        uidlist = found
        self._names = {info.name for info in by_base.values()}
        by_uid = {info.uid: info for info in by_base.values()}
        self.snapshot = Snapshot(by_uid, self.generation, uidlist.uidnext, uidlist.highestmodseq)

    def field_cache(self) -> FieldCache:
        """The Maildir's `pigeon-cache` (mailstore/fieldcache.py), loaded on first use."""
        with self.lock:
            if self._fields is None:
                self._ensure_loaded()
                self._fields = FieldCache(self.maildir, self.by_base.keys())
            return self._fields

    def _flags_of(self, info: str) -> frozenset[str]:
        """The IMAP flags of a name's info part (after the ":")."""
        flags = self._flag_sets.get(info)
        if flags is None:
            letters = info[2:] if info.startswith("2,") else ""
            flags = self._flag_sets[info] = self.keywords.letters_to_flags(letters)
        return flags

    def _info(self, uid: int, name: str) -> MessageInfo:
        return make((uid, 0, name, self._flags_of(name.partition(":")[2]), self.maildir))

    def _scan(self, whole: bool) -> bool:
        """Reconcile with the disk (new/ always, cur/ when `whole`); True if
        files were moved from new/ to cur/."""
        new_dir = os.path.join(self.maildir, "new")
        cur_dir = os.path.join(self.maildir, "cur")
        cur_names = os.listdir(cur_dir) if whole else []
        moved = []
        for name in os.listdir(new_dir):
            if name[0] == "." or "\n" in name:
                continue
            base, _, suffix = name.partition(":")
            target = base + INFO + (suffix[2:] if suffix.startswith("2,") else "")
            try:
                os.rename(os.path.join(new_dir, name), os.path.join(cur_dir, target))
            except FileNotFoundError:
                continue  # another reader moved it: it is in cur_names or the next scan
            moved.append(target)
        known = self._names
        if whole:
            # Set differences (in C): the names that appeared and vanished
            # since the last look are few, whatever the folder's size.
            disk = set(cur_names)
            disk.update(moved)
            appeared = disk - known
            vanished = known - disk
        else:
            appeared, vanished = set(moved) - known, set()
        by_base = self.by_base
        fresh: dict[str, str] = {}
        for name in appeared:
            if name[0] != "." and "\n" not in name:
                fresh[name.partition(":")[0]] = name  # one name per base
        gone = []
        for name in vanished:
            info = by_base[name.partition(":")[0]]
            if info.base not in fresh:
                gone.append(info)
        touched = []
        for base in [b for b in fresh if b in by_base]:
            name = fresh.pop(base)
            touched.append(
                by_base[base].with_change(0, name, self._flags_of(name.partition(":")[2]))
            )
        uidlist = self.uidlist
        assert uidlist is not None
        added = []
        # Maildir names begin with the arrival time (numbers: not zero-padded).
        for base in sorted(fresh, key=arrival_key):
            added.append(self._info(uidlist.uidnext, fresh[base]))
            uidlist.uidnext += 1
        self._commit(touched + added, gone)
        return bool(moved)

    # -- changing ----------------------------------------------------------

    def _commit(self, pending: list[MessageInfo], gone: Iterable[MessageInfo]) -> list[MessageInfo]:
        """Give every change a modseq, write it to the uidlist, publish a new
        snapshot. `pending` are new or renamed messages (their modseq still
        to be given: the ones with it are returned), `gone` the messages
        expunged."""
        uidlist = self.uidlist
        assert uidlist is not None
        by_base, names = self.by_base, self._names
        lines = []
        uids = []
        for info in gone:
            uidlist.highestmodseq += 1
            lines.append(f"-{info.uid} {uidlist.highestmodseq}\n")
            uids.append(info.uid)
            del by_base[info.base]
            names.discard(info.name)
        changed = []
        for info in pending:
            uidlist.highestmodseq += 1
            info = make((info.uid, uidlist.highestmodseq, info.name, info.flags, info.maildir))
            changed.append(info)
            lines.append(f"+{info.uid} {info.modseq} {info.name}\n")
            uids.append(info.uid)
            old = by_base.get(info.base)
            if old is not None:
                names.discard(old.name)
            by_base[info.base] = info
            names.add(info.name)
        if not lines:
            return changed
        if self._fields is not None:
            self._fields.forget(info.base for info in gone)
        if uidlist.needs_compaction(len(by_base)):
            rows = sorted((i.uid, i.modseq, i.name) for i in by_base.values())
            uidlist.write(self.uidlist_path, rows)
        else:
            uidlist.append(self.uidlist_path, lines)
        by_uid = dict(self.snapshot.by_uid)  # a new dict: sessions keep the old one
        for info in gone:
            by_uid.pop(info.uid, None)
        new_uids = []
        for info in changed:
            if info.uid in by_uid:
                by_uid[info.uid] = info
            else:
                new_uids.append(info)
        if new_uids:
            new_uids.sort(key=lambda i: i.uid)
            if by_uid and new_uids[0].uid < next(reversed(by_uid)):
                by_uid.update((i.uid, i) for i in new_uids)
                by_uid = dict(sorted(by_uid.items()))
            else:
                by_uid.update((i.uid, i) for i in new_uids)
        self._log.extend(uids)
        if len(self._log) > LOG_MAX:
            drop = len(self._log) - LOG_MAX // 2
            del self._log[:drop]
            self._log_start += drop
        self.snapshot = Snapshot(by_uid, self.generation, uidlist.uidnext, uidlist.highestmodseq)
        return changed

    def changed_since(self, generation: int) -> list[int] | None:
        with self.lock:
            if generation < self._log_start:
                return None
            return self._log[generation - self._log_start :]

    def set_flags(
        self,
        uids: Iterable[int],
        flags: Iterable[str],
        mode: str,
        unchangedsince: int | None = None,
    ) -> tuple[list[MessageInfo], list[int]]:
        """Change flags (mode "set", "add" or "remove"); (changed infos, UIDs
        that failed UNCHANGEDSINCE, RFC 7162 §3.1.3)."""
        if mode not in ("set", "add", "remove"):
            raise ValueError(f"bad flags mode {mode!r}")
        wanted = frozenset(f for f in flags if f.lower() != "\\recent")
        changed: list[MessageInfo] = []
        failed: list[int] = []
        cur_dir = os.path.join(self.maildir, "cur")
        with self.changing():
            pending = list(uids)
            for attempt in range(2):  # bounded: once more after a rescan
                missed, done = [], []
                by_uid = self.snapshot.by_uid
                for uid in pending:
                    info = by_uid.get(uid)
                    if info is None:
                        continue  # expunged meanwhile: nothing to change
                    if unchangedsince is not None and info.modseq > unchangedsince:
                        failed.append(uid)
                        continue
                    if mode == "set":
                        new_flags = wanted
                    elif mode == "add":
                        new_flags = info.flags | wanted
                    else:
                        new_flags = info.flags - wanted
                    letters = self.keywords.flags_to_letters(new_flags)
                    letters += kept_letters(info.letters, self.keywords)
                    name = info.base + INFO + "".join(sorted(set(letters)))
                    if name == info.name:
                        continue
                    try:
                        os.rename(os.path.join(cur_dir, info.name), os.path.join(cur_dir, name))
                    except FileNotFoundError:
                        missed.append(uid)  # renamed or removed by another program
                        continue
                    done.append(
                        info.with_change(0, name, self._flags_of(name[len(info.base) + 1 :]))
                    )
                if done:
                    fsync_dir(cur_dir)
                    changed += self._commit(done, ())
                if not missed or attempt:
                    break
                self._scan(whole=True)  # their names now
                pending = missed
        return changed, failed

    def expunge(self, uids: Iterable[int] | None = None, deleted_only: bool = True) -> list[int]:
        """Remove the messages flagged \\Deleted (only those in `uids`); with
        `deleted_only` False, the messages in `uids` whatever their flags
        (MOVE, RFC 6851)."""
        cur_dir = os.path.join(self.maildir, "cur")
        removed: list[int] = []
        with self.changing():
            if uids is None:
                candidates = list(self.by_base.values())
            else:
                candidates = [i for i in map(self.snapshot.by_uid.get, set(uids)) if i]
            for attempt in range(2):  # bounded: once more after a rescan
                gone, missed = [], []
                for info in candidates:
                    if deleted_only and "\\Deleted" not in info.flags:
                        continue
                    try:
                        os.unlink(os.path.join(cur_dir, info.name))
                    except FileNotFoundError:
                        missed.append(info)  # renamed or removed by another program
                    else:
                        gone.append(info)
                if gone:
                    fsync_dir(cur_dir)
                    self._commit([], gone)
                    removed += (info.uid for info in gone)
                if not missed or attempt:
                    break
                self._scan(whole=True)  # their names now, or gone
                candidates = [i for i in map(self.by_base.get, (m.base for m in missed)) if i]
        return sorted(removed)

    def register(self, names: list[str]) -> list[int]:
        """UIDs for files just put into cur/ under `names`, in that order
        (called inside `changing()`, which covers the placing too)."""
        with self.lock:
            self._ensure_loaded()
            uidlist = self.uidlist
            assert uidlist is not None
            infos = []
            for name in names:
                base = name.partition(":")[0]
                if base in self.by_base:  # a scan found it first
                    infos.append(self.by_base[base])
                    continue
                info = self._info(uidlist.uidnext, name)
                uidlist.uidnext += 1
                infos.append(info)
            self._commit([i for i in infos if i.modseq == 0], ())
            return [i.uid for i in infos]


def kept_letters(letters: str, keywords: Keywords) -> str:
    """Letters of a name with no IMAP meaning we know (P, a keyword letter
    without a name): kept as they are through a flag change."""
    return "".join(
        ch
        for ch in letters
        if ch not in LETTER_FLAGS and not ("a" <= ch <= "z" and keywords.names[ord(ch) - 97])
    )


#: Every state an open handle holds (weakly: it goes with the last handle),
#: plus the RECENT_STATES used last, kept so that a session that comes back
#: (a client polling with short connections) finds its folder still loaded.
_states: weakref.WeakValueDictionary[str, MaildirState] = weakref.WeakValueDictionary()
_recent: collections.OrderedDict[str, MaildirState] = collections.OrderedDict()
_states_lock = threading.Lock()
RECENT_STATES = 32


def state_for(maildir: str) -> MaildirState:
    key = os.path.abspath(maildir)
    with _states_lock:
        state = _states.get(key)
        if state is None:
            state = _states[key] = MaildirState(key)
        _recent[key] = state
        _recent.move_to_end(key)
        while len(_recent) > RECENT_STATES:
            _recent.popitem(last=False)
        return state


def existing_state(maildir: str) -> MaildirState | None:
    """The Maildir's state if this process has it in memory (else None)."""
    with _states_lock:
        return _states.get(os.path.abspath(maildir))


def forget_state(maildir: str) -> None:
    """Drop a Maildir's state (the folder was deleted or renamed; tests:
    what a new process would see). Handles still open keep theirs."""
    key = os.path.abspath(maildir)
    with _states_lock:
        _states.pop(key, None)
        _recent.pop(key, None)

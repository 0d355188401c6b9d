"""The mailbox API IMAP and POP3 use: `MailStore` -> `UserMail` -> `Folder`.

Contract (blocking file I/O: the readers call it from a thread):
  * `MailStore(mailbox_root)`; `store.user(local, domain)` is one account's
    mail, INBOX being its Maildir (mailstore/paths.py) and every other
    folder a Maildir++ sub-Maildir (mailstore/folders.py: names, listing,
    create/delete/rename, subscriptions, special-use). The first `user()` of
    an account in a process creates its Maildir and the special-use folders
    Sent, Drafts, Trash and Junk when missing (unless `prepare=False`).
  * `user.open(name)` -> `Folder` (FolderError if there is none), already
    synced once; `user.open_unchanged(name)` is the same without a sync when
    the folder's state is in memory and the disk shows nothing new (else
    None): a few stat calls, for a SELECT answered on the event loop.
    `folder.first_unseen()` and `folder.field_cache()` (the folder's
    `pigeon-cache`, mailstore/fieldcache.py) are shared per Maildir. Once
    opened, `messages` is the folder as it was then, ordered by UID.
    `sync()` brings this handle up to date and returns `Changes` (UIDs
    added, expunged, whose flags changed) since its last sync; between
    syncs the handle's view does not change (IMAP sequence numbers stay put
    until the session reports expunges, RFC 9051 §7.5.1), except for the
    handle's own `set_flags` and `expunge`, which it sees at once.
  * Handles of one Maildir share one state (mailstore/state.py): a change
    made through one is seen by the others at their next `sync()`; other
    programs' changes (Dovecot, mutt, delivery) are seen through the rescan.
  * `read(uid)` is the message with CRLF line endings; a message gone
    meanwhile is `MessageGone` (a FolderError).
  * A handle is one session's: calls on it come one at a time (from any
    thread); handles of one Maildir may be used from many threads at once.
  * `set_flags`, `expunge`, `remove`: see their docstrings; `copy`, `move`, `append`:
    mailstore/transfer.py. Errors: FolderError for what the client asked
    wrong (the IMAP layer answers NO), OSError for the disk.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pigeon.mailstore import folders, transfer
from pigeon.mailstore.errors import FolderError, MessageGone
from pigeon.mailstore.fieldcache import FieldCache
from pigeon.mailstore.folders import FolderInfo
from pigeon.mailstore.keywords import TooManyKeywords
from pigeon.mailstore.maildir import ensure_maildir
from pigeon.mailstore.message import MessageInfo, to_crlf
from pigeon.mailstore.paths import maildir_path
from pigeon.mailstore.state import MaildirState, existing_state, state_for

__all__ = [
    "Changes",
    "Folder",
    "FolderError",
    "FolderInfo",
    "MailStore",
    "MessageGone",
    "MessageInfo",
    "UserMail",
]


@dataclass(frozen=True)
class Changes:
    """What a `sync()` found since the handle's last one (UIDs, ascending)."""

    added: list[int] = field(default_factory=list)
    expunged: list[int] = field(default_factory=list)
    flag_changes: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.expunged or self.flag_changes)


class MailStore:
    """Every account's mail under `<data_dir>/mailboxes` (see the contract)."""

    def __init__(self, mailbox_root: Path | str) -> None:
        self.root = Path(mailbox_root)

    def user(self, local: str, domain: str, *, prepare: bool = True) -> UserMail:
        """The account's mail; `prepare=False` creates nothing (the HTTP API's
        read of an existing mailbox: web/mailbox_routes.py)."""
        return UserMail(maildir_path(self.root, local, domain), prepare=prepare)


class UserMail:
    """One account's INBOX and folders."""

    def __init__(self, maildir: Path | str, *, prepare: bool = True) -> None:
        self.maildir = os.path.abspath(maildir)
        if prepare:
            folders.prepare_user(self.maildir)

    def list_folders(self) -> list[FolderInfo]:
        return folders.list_folders(self.maildir)

    def create(self, name: str) -> None:
        folders.create(self.maildir, name)

    def delete(self, name: str) -> None:
        folders.delete(self.maildir, name)

    def rename(self, old: str, new: str) -> None:
        """RENAME; INBOX's messages move to the new folder and INBOX stays,
        empty (RFC 9051 §6.3.6)."""
        if folders.canonical(old) != folders.INBOX:
            folders.rename_dirs(self.maildir, old, new)
            return
        folders.create(self.maildir, new)
        inbox = self.open(folders.INBOX)
        try:
            inbox.move([m.uid for m in inbox.messages], new)
        finally:
            inbox.close()

    def subscriptions(self) -> list[str]:
        return folders.subscriptions(self.maildir)

    def subscribe(self, name: str) -> None:
        folders.subscribe(self.maildir, name)

    def unsubscribe(self, name: str) -> None:
        folders.unsubscribe(self.maildir, name)

    def folder_path(self, name: str) -> str:
        """The Maildir of an existing folder (FolderError if none)."""
        path = folders.folder_dir(self.maildir, name)
        if not os.path.isdir(os.path.join(path, "cur")):
            raise FolderError(f"no such mailbox: {name}")
        return path

    def open(self, name: str) -> Folder:
        canonical = folders.canonical(name)
        path = self.folder_path(canonical)
        ensure_maildir(path, fsync=True)  # tmp/ or new/ may be missing (made by another tool)
        folder = Folder(self, canonical, state_for(path))
        folder.sync()
        return folder

    def open_unchanged(self, name: str) -> Folder | None:
        """`open` without any disk work but a few stat calls, when the folder's
        state is in memory and the disk shows nothing new (None otherwise:
        then `open`). For answering a SELECT without a trip to a thread."""
        canonical = folders.canonical(name)
        path = folders.folder_dir(self.maildir, canonical)
        state = existing_state(path)
        if state is None or not state.unchanged():
            return None
        folder = Folder(self, canonical, state)
        folder.sync(refresh=False)
        return folder


class Folder:
    """One session's handle on a folder (see the module contract)."""

    def __init__(self, user: UserMail, name: str, state: MaildirState) -> None:
        self.user = user
        self.name = name
        self._state = state
        self._view: dict[int, MessageInfo] = {}
        self._generation = -1
        self._messages: list[MessageInfo] | None = []
        self._uidnext = 1
        self._highestmodseq = 1

    @property
    def path(self) -> str:
        return self._state.maildir

    @property
    def uidvalidity(self) -> int:
        assert self._state.uidlist is not None
        return self._state.uidlist.uidvalidity

    @property
    def uidnext(self) -> int:
        """UIDNEXT as of this handle's last sync."""
        return self._uidnext

    @property
    def highestmodseq(self) -> int:
        """HIGHESTMODSEQ of what this handle has seen (its last sync and its
        own changes since): a client given it has not missed a change below
        it (RFC 7162 §3.1.2.1)."""
        return self._highestmodseq

    @property
    def keywords(self) -> list[str]:
        """The keywords this folder's messages may carry so far (FLAGS)."""
        return self._state.keywords.defined()

    @property
    def messages(self) -> list[MessageInfo]:
        if self._messages is None:
            self._messages = list(self._view.values())
        return self._messages

    def get(self, uid: int) -> MessageInfo | None:
        return self._view.get(uid)

    def up_to_date(self) -> bool:
        """True when a `sync` would find nothing (the view is the shared state's
        and `MaildirState.unchanged()`): a few stat calls, no lock waited for."""
        return self._state.snapshot.by_uid is self._view and self._state.unchanged()

    def first_unseen(self) -> int:
        """The sequence number of the first message without \\Seen in this
        handle's view (0: none); shared with every handle on the same snapshot."""
        snap = self._state.snapshot
        if snap.by_uid is self._view:
            return snap.first_unseen()
        return next((n for n, m in enumerate(self.messages, 1) if "\\Seen" not in m.flags), 0)

    def field_cache(self) -> FieldCache:
        """The folder's cache of ENVELOPE answers and envelope header fields
        (mailstore/fieldcache.py), shared by every handle."""
        return self._state.field_cache()

    def sync(self, refresh: bool = True) -> Changes:
        state = self._state
        with state.lock:
            try:
                if refresh:
                    state.refresh()
            except FileNotFoundError:  # deleted or renamed meanwhile (RFC 9051 §6.3.5)
                raise FolderError(f"mailbox no longer exists: {self.name}") from None
            snap = state.snapshot
            if snap.by_uid is self._view:
                self._uidnext = snap.uidnext
                self._highestmodseq = max(self._highestmodseq, snap.highestmodseq)
                return Changes()
            touched = state.changed_since(self._generation) if self._generation >= 0 else None
        old, new = self._view, snap.by_uid
        added_all: list[int] = []
        if self._generation < 0:  # the first sync (open): nothing to compare, none to tell
            touched = []
        elif not old:  # everything is new
            touched = []
            added_all = list(new)
        if touched is None:
            candidates: Iterable[int] = sorted(set(old) | set(new))
        else:
            candidates = sorted(set(touched))
        added: list[int] = added_all
        expunged, flagged = [], []
        for uid in candidates:
            before, after = old.get(uid), new.get(uid)
            if before is None:
                if after is not None:
                    added.append(uid)
            elif after is None:
                expunged.append(uid)
            elif before is not after:
                flagged.append(uid)
        self._view = new
        self._generation = snap.generation
        self._messages = snap.messages()
        self._uidnext = snap.uidnext
        self._highestmodseq = max(self._highestmodseq, snap.highestmodseq)
        return Changes(added, expunged, flagged)

    def read(self, uid: int) -> bytes:
        info = self._view.get(uid)
        if info is None:
            raise MessageGone(f"no message with UID {uid}")
        for _ in range(2):  # bounded: once more after a rescan found its new name
            try:
                with open(info.path, "rb") as f:
                    return to_crlf(f.read())
            except FileNotFoundError:
                with self._state.lock:
                    self._state.refresh()
                    found = self._state.by_base.get(info.base)
                if found is None:
                    break
                info = found
        raise MessageGone(f"message UID {uid} was expunged")

    def _own(self, changed: Iterable[MessageInfo], gone: Iterable[int] = ()) -> None:
        """Show this handle's own changes in its view at once."""
        view = dict(self._view)  # the shared snapshot is never changed in place
        for info in changed:
            if info.uid in view:
                view[info.uid] = info
        for uid in gone:
            view.pop(uid, None)
        self._view = view
        self._messages = None

    def set_flags(
        self,
        uids: Iterable[int],
        flags: Iterable[str],
        mode: str,
        unchangedsince: int | None = None,
    ) -> tuple[list[tuple[int, frozenset[str], int]], list[int]]:
        """STORE: mode "set", "add" or "remove"; ([(uid, flags, modseq)] of the
        messages changed, UIDs refused by UNCHANGEDSINCE, RFC 7162 §3.1.3).
        A 27th keyword is a FolderError (26 fit in Maildir names)."""
        known = [u for u in uids if u in self._view]
        try:
            changed, failed = self._state.set_flags(known, flags, mode, unchangedsince)
        except TooManyKeywords as e:
            raise FolderError(str(e)) from None
        self._own(changed)
        self._highestmodseq = max([self._highestmodseq] + [i.modseq for i in changed])
        return [(i.uid, i.flags, i.modseq) for i in changed], failed

    def expunge(self, uids: Iterable[int] | None = None) -> list[int]:
        """Remove this view's messages flagged \\Deleted (only those in `uids`);
        the UIDs removed, ascending."""
        among = self._view.keys() if uids is None else set(uids) & self._view.keys()
        return self._expunge(among, deleted_only=True)

    def _expunge(self, uids: Iterable[int], deleted_only: bool) -> list[int]:
        with self._state.lock:  # the modseq of these expunges, no later one
            gone = self._state.expunge(uids, deleted_only=deleted_only)
            if gone:
                self._highestmodseq = max(self._highestmodseq, self._state.snapshot.highestmodseq)
        self._own((), gone)
        return gone

    def remove(self, uids: Iterable[int]) -> list[int]:
        """Remove these messages whatever their flags (POP3 DELE, applied in
        the UPDATE state, RFC 1939 §6); the UIDs removed, ascending."""
        return self._expunge(set(uids) & self._view.keys(), deleted_only=False)

    def copy(self, uids: Iterable[int], dest_name: str) -> tuple[list[tuple[int, int]], int]:
        """COPY (RFC 4315 COPYUID): ([(source uid, destination uid)], the
        destination's UIDVALIDITY)."""
        return self._transfer(uids, dest_name, move=False)

    def move(self, uids: Iterable[int], dest_name: str) -> tuple[list[tuple[int, int]], int]:
        """MOVE (RFC 6851): a copy, then the sources expunged."""
        pairs, validity = self._transfer(uids, dest_name, move=True)
        self._own((), [src for src, _ in pairs])
        return pairs, validity

    def _transfer(
        self, uids: Iterable[int], dest_name: str, move: bool
    ) -> tuple[list[tuple[int, int]], int]:
        dest = state_for(self.user.folder_path(folders.canonical(dest_name)))
        infos = [i for i in (self._view.get(u) for u in sorted(set(uids))) if i is not None]
        return transfer.copy(self._state, infos, dest, move)

    def append(
        self, data: bytes, flags: Iterable[str] = (), internaldate: _dt.datetime | None = None
    ) -> tuple[int, int]:
        """APPEND (RFC 4315 APPENDUID): (uidvalidity, uid)."""
        return transfer.append(self._state, data, flags, internaldate)

    def close(self) -> None:
        self._view = {}
        self._messages = []

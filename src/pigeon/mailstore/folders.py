"""An account's folders: Maildir++ sub-Maildirs, their names, subscriptions, special use.

Contract:
  * INBOX is the account's Maildir itself ("inbox" in any case is INBOX,
    RFC 9051 §5.1). Every other folder is a Maildir++ sub-Maildir of it: the
    name's "/" hierarchy becomes "." on disk ("Archive/2024" is
    `<maildir>/.Archive.2024/`), as Dovecot's `LAYOUT=maildir++` with "/" as
    separator. A name component may not hold "." (the separator on disk),
    be empty, or hold control characters; INBOX has no children. Names
    are stored in UTF-8 on disk (Dovecot reads them so with the `UTF-8`
    option of its mail location, docs/imap.md); the protocol's modified
    UTF-7 is the IMAP layer's business. Each sub-Maildir holds the empty
    `maildirfolder` file Maildir++ readers expect.
  * `list_folders(maildir)`: INBOX first, then every folder by name, with
    RFC 9051 §7.3.1 attributes: \\HasChildren / \\HasNoChildren, \\Noselect
    for a parent that exists only as a prefix of its children (".A.B"
    without ".A"), and RFC 6154 special-use by name: Sent \\Sent, Drafts
    \\Drafts, Trash \\Trash, Junk \\Junk, Archive \\Archive.
  * `prepare_user(maildir)` (once per process and account): the Maildir and
    the folders Sent, Drafts, Trash, Junk are created and subscribed when
    missing (Junk may exist already: the DMARC quarantine delivers there).
  * `create` makes missing superiors too (RFC 9051 §6.3.4); `delete`
    refuses INBOX and a name that is not a folder (RFC 9051 §6.3.5; a
    deleted folder's children stay, its name listed \\Noselect);
    `rename` moves the folder and its children (RFC 9051 §6.3.6; INBOX is
    renamed by moving its messages: mailstore/mailbox.py). FolderError for
    a bad request.
  * Subscriptions: `<maildir>/subscriptions`, one name per line with the
    hierarchy written as on disk ("Archive.2024": the Maildir++ separator, as
    Dovecot's version 1 file for this layout has it), written atomically; a
    file in Dovecot's version 2 format ("V\\t2" header, "\\t" between
    levels) is read too.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from dataclasses import dataclass

from pigeon.fsutil import fsync_dir, write_atomically
from pigeon.mailstore.errors import FolderError
from pigeon.mailstore.maildir import ensure_maildir, forget_maildir
from pigeon.mailstore.state import forget_state

__all__ = [
    "AUTO_CREATED",
    "SPECIAL_USE",
    "FolderInfo",
    "canonical",
    "create",
    "delete",
    "folder_dir",
    "list_folders",
    "prepare_user",
    "rename_dirs",
    "subscribe",
    "subscriptions",
    "unsubscribe",
]

SEPARATOR = "/"
INBOX = "INBOX"
SUBSCRIPTIONS = "subscriptions"
#: RFC 6154 special-use attributes, given by a top-level folder's name.
SPECIAL_USE = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}
AUTO_CREATED = ("Sent", "Drafts", "Trash", "Junk")
#: Directory names starting so are never folders (a folder being deleted).
_HIDDEN = ".."


@dataclass(frozen=True)
class FolderInfo:
    name: str
    attributes: frozenset[str]


def canonical(name: str) -> str:
    """INBOX in any case is "INBOX"; a trailing separator is dropped
    (RFC 9051 §6.3.4: it only says the name is meant to have children)."""
    if name.endswith(SEPARATOR) and len(name) > 1:
        name = name[:-1]
    if name.upper() == INBOX:
        return INBOX
    return name


def _parts(name: str) -> list[str]:
    parts = name.split(SEPARATOR)
    for part in parts:
        if not part:
            raise FolderError(f"bad mailbox name (empty level): {name}")
        if "." in part:
            raise FolderError(f'bad mailbox name ("." is not allowed): {name}')
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in part):
            raise FolderError("bad mailbox name (control character)")
    if parts[0].upper() == INBOX:
        raise FolderError(f"INBOX has no children here: {name}")
    if len(".".join(parts).encode("utf-8")) > 250:
        raise FolderError("mailbox name too long")
    return parts


def folder_dir(maildir: str, name: str) -> str:
    """The directory of folder `name` (which need not exist)."""
    name = canonical(name)
    if name == INBOX:
        return maildir
    return os.path.join(maildir, "." + ".".join(_parts(name)))


def _exists(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "cur"))


def _folder_dirs(maildir: str) -> dict[str, str]:
    """Folder name -> directory, for every sub-Maildir."""
    out = {}
    for entry in os.listdir(maildir):
        if entry.startswith(".") and not entry.startswith(_HIDDEN) and len(entry) > 1:
            path = os.path.join(maildir, entry)
            if os.path.isdir(path):
                out[entry[1:].replace(".", SEPARATOR)] = path
    return out


def list_folders(maildir: str) -> list[FolderInfo]:
    found = _folder_dirs(maildir)
    selectable = {name for name, path in found.items() if _exists(path)}
    names = set(found)
    for name in found:  # superiors that exist only as a prefix
        parts = name.split(SEPARATOR)
        names.update(SEPARATOR.join(parts[:i]) for i in range(1, len(parts)))
    parents = {name.rpartition(SEPARATOR)[0] for name in names if SEPARATOR in name}
    out = [FolderInfo(INBOX, frozenset({"\\HasNoChildren"}))]
    for name in sorted(names):
        attrs = {"\\HasChildren" if name in parents else "\\HasNoChildren"}
        if name not in selectable:
            attrs.add("\\Noselect")
        if name in SPECIAL_USE:
            attrs.add(SPECIAL_USE[name])
        out.append(FolderInfo(name, frozenset(attrs)))
    return out


def _make(path: str) -> None:
    ensure_maildir(path)
    marker = os.path.join(path, "maildirfolder")
    if not os.path.exists(marker):
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))


def create(maildir: str, name: str) -> None:
    name = canonical(name)
    if name == INBOX:
        raise FolderError("INBOX exists already")
    parts = _parts(name)
    path = folder_dir(maildir, name)
    if _exists(path):
        raise FolderError(f"mailbox exists already: {name}")
    _make_superiors(maildir, parts)
    forget_maildir(path)
    _make(path)


def _make_superiors(maildir: str, parts: list[str]) -> None:
    """The superior names a new name needs (RFC 9051 §6.3.4, §6.3.6)."""
    for i in range(1, len(parts)):
        superior = folder_dir(maildir, SEPARATOR.join(parts[:i]))
        if not _exists(superior):
            forget_maildir(superior)
            _make(superior)


def delete(maildir: str, name: str) -> None:
    name = canonical(name)
    if name == INBOX:
        raise FolderError("INBOX cannot be deleted")
    path = folder_dir(maildir, name)
    if not os.path.isdir(path):
        raise FolderError(f"no such mailbox: {name}")
    # Out of sight in one rename, then removed: a crash in between leaves
    # only a hidden directory, never half a folder.
    doomed = os.path.join(maildir, f"{_HIDDEN}deleted-{secrets.token_hex(6)}")
    os.rename(path, doomed)
    fsync_dir(maildir)
    forget_state(path)
    forget_maildir(path)
    shutil.rmtree(doomed, ignore_errors=True)


def rename_dirs(maildir: str, old: str, new: str) -> None:
    """RENAME of a folder other than INBOX: it and its children move."""
    old, new = canonical(old), canonical(new)
    if new == INBOX:
        raise FolderError("INBOX exists already")
    old_path, new_path = folder_dir(maildir, old), folder_dir(maildir, new)
    if not os.path.isdir(old_path):
        raise FolderError(f"no such mailbox: {old}")
    if os.path.exists(new_path):
        raise FolderError(f"mailbox exists already: {new}")
    moves = [(old_path, new_path)]
    for name, path in _folder_dirs(maildir).items():
        if name.startswith(old + SEPARATOR):
            target = folder_dir(maildir, new + name[len(old) :])
            if os.path.exists(target):
                raise FolderError(f"mailbox exists already: {new + name[len(old) :]}")
            moves.append((path, target))
    for src, dst in moves:
        os.rename(src, dst)
        forget_state(src)
        forget_maildir(src)
    fsync_dir(maildir)
    _make_superiors(maildir, _parts(new))


# -- subscriptions ------------------------------------------------------------

_subscriptions_lock = threading.Lock()


def subscriptions(maildir: str) -> list[str]:
    try:
        with open(os.path.join(maildir, SUBSCRIPTIONS), encoding="utf-8") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return []
    if lines and lines[0].startswith("V\t"):  # Dovecot's version 2 format
        body = lines[lines.index("") + 1 :] if "" in lines else []
        return [canonical(line.replace("\t", SEPARATOR)) for line in body if line]
    return [canonical(line.replace(".", SEPARATOR)) for line in lines if line]


def _write_subscriptions(maildir: str, names: list[str]) -> None:
    text = "".join(f"{n.replace(SEPARATOR, '.')}\n" for n in names)
    write_atomically(os.path.join(maildir, SUBSCRIPTIONS), text.encode("utf-8"))


def subscribe(maildir: str, name: str) -> None:
    """SUBSCRIBE (RFC 9051 §6.3.7: a name that does not exist may be subscribed)."""
    name = canonical(name)
    if name != INBOX:
        _parts(name)
    with _subscriptions_lock:
        names = subscriptions(maildir)
        if name not in names:
            _write_subscriptions(maildir, names + [name])


def unsubscribe(maildir: str, name: str) -> None:
    name = canonical(name)
    with _subscriptions_lock:
        names = subscriptions(maildir)
        if name not in names:
            raise FolderError(f"not subscribed: {name}")
        _write_subscriptions(maildir, [n for n in names if n != name])


# -- first use ----------------------------------------------------------------

_prepared: set[str] = set()


def prepare_user(maildir: str) -> None:
    """Create the account's Maildir and special-use folders (see the contract)."""
    if maildir in _prepared:
        return
    ensure_maildir(maildir)
    for name in AUTO_CREATED:
        path = folder_dir(maildir, name)
        if not _exists(path):
            forget_maildir(path)
            _make(path)
            if name not in subscriptions(maildir):
                subscribe(maildir, name)
    _prepared.add(maildir)

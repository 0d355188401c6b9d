"""The local mailboxes as the HTTP API reads them: listing, paging, search, read, delete.

Contract (blocking file I/O: web/mailbox_routes.py calls it from a thread):
  * `Mailboxes(root)` over the mailbox root (config.mailbox_root); the
    Maildirs are read through pigeon.mailstore (`MailStore` -> `UserMail`
    -> `Folder`), the code IMAP and POP3 use. In the process that runs
    IMAP the folder's state is the one its sessions share
    (mailstore/state.py), so the API and IMAP agree on every UID; opening
    a folder does what an IMAP SELECT does to the disk: files in new/
    move to cur/ with an empty ":2," (no longer \\Recent; no flag is set,
    \\Seen included). `UserMail(prepare=False)`: no folder is created.
  * A mailbox is named by its address; its Maildir is
    `mailstore.paths.maildir_path` of it, whose components are always
    %-encoded safe names: no request text becomes a path any other way.
    A mailbox that does not exist is 404 and is never created. A folder
    name (`folder_name`: INBOX, "Junk" and the on-disk ".Junk" are
    accepted) goes through `mailstore.folders.folder_dir`, which refuses
    "." in a level, empty levels and control characters (400).
  * A message id is "<UIDVALIDITY>-<UID>" of its folder (RFC 9051
    §2.3.1.1): stable while the folder's `pigeon-uidlist` lives; a lost
    uidlist gives a new UIDVALIDITY, so an old id is 404, never another
    message. `parse_id` checks ids against `[0-9]{1,10}-[0-9]{1,10}`
    before any use (400).
  * `list`: every mailbox with its folders, message counts and sizes
    (octets on disk, from the ",S=" of the names, else one stat).
    `mailbox(address)`: one of them.
    `messages`: newest first (highest UID first), paged; with a search at
    most SEARCH_MAX messages are examined, newest first, `complete:
    false` when the folder holds more; a from/to/subject search reads the
    header section of each message (at most mailview.HEADER_MAX octets),
    a text search the whole message.
  * `delete` removes as POP3 DELE removes (`Folder.remove`: the file
    unlinked, cur/ fsynced, the UID expunged from the uidlist); 404 when
    it is gone already.
  * Problems (web/problem.py) for what the request got wrong; OSError
    from the disk propagates (a 500, logged).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from pigeon.mailstore import folders
from pigeon.mailstore.errors import FolderError
from pigeon.mailstore.mailbox import Folder, MailStore, MessageGone, MessageInfo
from pigeon.mailstore.paths import maildir_path
from pigeon.web import mailview
from pigeon.web.mailview import Query
from pigeon.web.problem import Problem
from pigeon.web.routes import bad_param as _bad

__all__ = ["ID_PATTERN", "SEARCH_MAX", "Mailboxes", "folder_name", "parse_id"]

#: Messages a search examines per request, newest first.
SEARCH_MAX = 1000
ID_PATTERN = r"^([0-9]{1,10})-([0-9]{1,10})$"
_ID = re.compile(ID_PATTERN)
_SIZE = re.compile(r",S=(\d+)")


def parse_id(text: str) -> tuple[int, int]:
    """(uidvalidity, uid) of a message id; Problem 400 when it is not one."""
    found = _ID.fullmatch(text)
    if found is None:
        raise _bad("id", "not a message id (UIDVALIDITY-UID, digits)")
    return int(found.group(1)), int(found.group(2))


def folder_name(text: str | None) -> str:
    """The folder a `folder` parameter names: INBOX, "Junk", ".Junk" (on disk)."""
    if not text:
        return folders.INBOX
    if text.startswith(".") and len(text) > 1:
        text = text[1:].replace(".", folders.SEPARATOR)
    return folders.canonical(text)


def _decoded(component: str) -> str:
    return unquote(component, errors="surrogateescape")


def _folder_stats(path: str) -> tuple[int, int]:
    """(messages, octets) of one Maildir, from names and at most one stat each."""
    count = size = 0
    for sub in ("new", "cur"):
        d = os.path.join(path, sub)
        try:
            names = os.listdir(d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if name.startswith("."):
                continue
            found = _SIZE.search(name.partition(":")[0])
            if found is not None:
                octets = int(found.group(1))
            else:
                try:
                    octets = os.stat(os.path.join(d, name)).st_size
                except OSError:
                    continue  # gone meanwhile
            count += 1
            size += octets
    return count, size


def _mailbox_dirs(root: Path) -> list[tuple[str, str]]:
    """(address, Maildir) of every mailbox under `root`, by address."""
    out = []
    try:
        domains = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    for domain in domains:
        ddir = os.path.join(root, domain)
        if domain.startswith("."):
            continue
        try:
            locals_ = sorted(os.listdir(ddir))
        except (FileNotFoundError, NotADirectoryError):
            continue  # not a domain's directory, or removed meanwhile
        for local in locals_:
            mdir = os.path.join(ddir, local)
            if not local.startswith(".") and os.path.isdir(os.path.join(mdir, "cur")):
                out.append((f"{_decoded(local)}@{_decoded(domain)}", mdir))
    return out


def _mailbox(address: str, mdir: str) -> dict[str, Any]:
    stats = [(folders.INBOX, mdir)]
    try:
        listed_folders = folders.list_folders(mdir)
    except FileNotFoundError:  # the mailbox was removed since the listing
        listed_folders = []
    for info in listed_folders:
        if info.name != folders.INBOX and "\\Noselect" not in info.attributes:
            stats.append((info.name, folders.folder_dir(mdir, info.name)))
    listed = []
    for name, path in stats:
        count, size = _folder_stats(path)
        listed.append({"name": name, "messages": count, "size": size})
    return {
        "address": address,
        "messages": sum(f["messages"] for f in listed),
        "size": sum(f["size"] for f in listed),
        "folders": listed,
    }


def _read_file(info: MessageInfo, limit: int | None = None) -> bytes | None:
    """The file's octets (the first `limit`), or None when it is gone."""
    try:
        with open(info.path, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    except FileNotFoundError:
        return None


def _entry(folder: Folder, info: MessageInfo, head: bytes) -> dict[str, Any]:
    return {
        "id": f"{folder.uidvalidity}-{info.uid}",
        "folder": folder.name,
        "size": info.size,
        "received": info.internaldate.isoformat().replace("+00:00", "Z"),
        "flags": sorted(info.flags),
        **mailview.summary(head),
    }


class Mailboxes:
    """The mailbox side of the API over one mailbox root (blocking: threads)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.store = MailStore(root) if root is not None else None

    def maildir(self, address: str) -> str:
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain or self.root is None:
            raise Problem(404, f"no such mailbox: {address}")
        try:
            path = os.fspath(maildir_path(self.root, local, domain))
        except ValueError:
            raise Problem(404, f"no such mailbox: {address}") from None
        if not os.path.isdir(os.path.join(path, "cur")):
            raise Problem(404, f"no such mailbox: {address}")
        return path

    def open(self, address: str, folder: str) -> Folder:
        assert self.store is not None
        local, _, domain = address.rpartition("@")
        self.maildir(address)  # 404 first: a missing mailbox is never created
        user = self.store.user(local, domain, prepare=False)
        try:
            folders.folder_dir(user.maildir, folder)
        except FolderError as exc:
            raise _bad("folder", str(exc)) from None
        try:
            return user.open(folder)
        except FolderError:
            raise Problem(404, f"no such folder in {address}: {folder}") from None

    def mailbox(self, address: str) -> dict[str, Any]:
        """One mailbox's entry of `list` (its folders and counts); 404 when none."""
        return _mailbox(address, self.maildir(address))

    def list(self, limit: int, offset: int) -> dict[str, Any]:
        if self.root is None:
            found = []
        else:
            found = _mailbox_dirs(self.root)
        page = [_mailbox(a, d) for a, d in found[offset : offset + limit]]
        return {"total": len(found), "offset": offset, "limit": limit, "mailboxes": page}

    def messages(
        self, address: str, folder: str, query: Query, limit: int, offset: int
    ) -> dict[str, Any]:
        handle = self.open(address, folder)
        try:
            newest = handle.messages[::-1]
            if not query:
                chosen = newest[offset : offset + limit]
                out = []
                for info in chosen:
                    head = _read_file(info, mailview.HEADER_MAX)
                    if head is not None:
                        out.append(_entry(handle, info, mailview.header_section(head)))
                return {
                    "total": len(newest),
                    "offset": offset,
                    "limit": limit,
                    "complete": True,
                    "messages": out,
                }
            hits = []
            examined = newest[:SEARCH_MAX]
            for info in examined:
                data = _read_file(info, None if query.text else mailview.HEADER_MAX)
                if data is not None and mailview.matches(data, query):
                    hits.append((info, data))
            page = [
                _entry(handle, info, mailview.header_section(data))
                for info, data in hits[offset : offset + limit]
            ]
            return {
                "total": len(hits),
                "offset": offset,
                "limit": limit,
                "complete": len(examined) == len(newest),
                "messages": page,
            }
        finally:
            handle.close()

    def _find(self, handle: Folder, mid: str) -> MessageInfo:
        validity, uid = parse_id(mid)
        info = handle.get(uid) if validity == handle.uidvalidity else None
        if info is None:
            raise Problem(404, f"no such message in {handle.name}: {mid}")
        return info

    def read(self, address: str, folder: str, mid: str) -> tuple[dict[str, Any], bytes]:
        """(the message's list entry without its header fields, its octets)."""
        parse_id(mid)
        handle = self.open(address, folder)
        try:
            info = self._find(handle, mid)
            try:
                return _entry(handle, info, b""), handle.read(info.uid)
            except MessageGone:
                raise Problem(404, f"no such message in {handle.name}: {mid}") from None
        finally:
            handle.close()

    def delete(self, address: str, folder: str, mid: str) -> dict[str, Any]:
        parse_id(mid)
        handle = self.open(address, folder)
        try:
            info = self._find(handle, mid)
            if info.uid not in handle.remove([info.uid]):
                raise Problem(404, f"no such message in {handle.name}: {mid}")
            return {"deleted": mid, "folder": handle.name}
        finally:
            handle.close()

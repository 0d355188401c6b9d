"""Commands about mailboxes: SELECT, EXAMINE, CLOSE, UNSELECT, CREATE, DELETE, RENAME,
SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS.

Contract:
  * Folders are the account's Maildir++ folders (pigeon.mailstore.folders:
    hierarchy separator "/", INBOX the Maildir itself). What the store
    refuses (`FolderError`) is answered NO with its reason and the RFC 5530
    code that fits: NONEXISTENT, ALREADYEXISTS, CANNOT.
  * SELECT/EXAMINE (RFC 9051 §6.3.2, RFC 3501 §6.3.1): FLAGS, EXISTS,
    RECENT 0 (IMAP4rev1 only: pigeon keeps no \\Recent), UNSEEN (rev1),
    PERMANENTFLAGS (none for EXAMINE), UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ
    (RFC 7162 §3.1.2.1: on every SELECT), then OK [READ-WRITE] or
    [READ-ONLY]. A failed SELECT leaves no mailbox selected. SELECT ...
    (CONDSTORE) turns CONDSTORE on (RFC 7162 §3.1.8).
  * CLOSE removes the \\Deleted messages silently (not after EXAMINE);
    UNSELECT does not (RFC 3691).
  * LIST (RFC 9051 §6.3.9, RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE,
    RFC 5819 LIST-STATUS): "*" matches any characters, "%" any but "/";
    selection options SUBSCRIBED, SPECIAL-USE, RECURSIVEMATCH; return
    options SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS. Special-use and
    child attributes are always given. An empty pattern gives the
    separator. LSUB (RFC 3501 §6.3.9) lists subscribed names.
  * STATUS (RFC 9051 §6.3.11): MESSAGES, UIDNEXT, UIDVALIDITY, UNSEEN,
    DELETED, SIZE, HIGHESTMODSEQ, RECENT (0).
"""

from __future__ import annotations

import re
from typing import Any

from pigeon.mailstore.errors import FolderError
from pigeon.mailstore.folders import SPECIAL_USE
from pigeon.proto.imap import response as R
from pigeon.proto.imap.commands import Command, ListArgs, MailboxArg, Rename, Select, Status
from pigeon.readers.imap.session import ImapSession

__all__ = [
    "close",
    "create",
    "delete",
    "list_",
    "rename",
    "select",
    "status",
    "subscribe",
    "unselect",
    "unsubscribe",
]

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


def _code(error: FolderError) -> str:
    text = str(error)
    if text.startswith("no such"):
        return "NONEXISTENT"
    if "exists already" in text:
        return "ALREADYEXISTS"
    return "CANNOT"


def _no(session: ImapSession, tag: str, error: FolderError) -> None:
    session.tagged(tag, "NO", str(error), _code(error))


# --- SELECT / EXAMINE / CLOSE / UNSELECT ----------------------------------------------


async def select(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, Select)
    readonly = command.name == "EXAMINE"
    session.deselect()  # RFC 9051 §6.3.2: even if this SELECT fails
    assert session.user is not None
    try:  # answered from counters: on the loop when the disk shows nothing new,
        # else in one trip to a thread
        quick = session.user.open_unchanged(args.mailbox)
        if quick is not None:
            folder, lines = quick, _select_lines(session, quick, readonly)
        else:
            folder, lines = await session.io(_open, session, args.mailbox, readonly)
    except FolderError as exc:
        _no(session, command.tag, exc)
        return
    if args.condstore:
        session.proto.enable_condstore()
    session.select(folder, readonly)
    session.write(lines)
    session.tagged(
        command.tag,
        "OK",
        f"{command.name} completed",
        "READ-ONLY" if readonly else "READ-WRITE",
    )


def _open(session: ImapSession, name: str, readonly: bool) -> tuple[Any, bytes]:
    assert session.user is not None
    folder = session.user.open(name)
    return folder, _select_lines(session, folder, readonly)


def _select_lines(session: ImapSession, folder: Any, readonly: bool) -> bytes:
    flags = [*SYSTEM_FLAGS, *folder.keywords]
    messages = folder.messages
    out = [
        b"* FLAGS " + R.encode(R.flags(flags)) + b"\r\n",
        b"* %d EXISTS\r\n" % len(messages),
    ]
    if not session.rev2:
        out.append(b"* 0 RECENT\r\n")
        first_unseen = folder.first_unseen()
        if first_unseen:
            out.append(R.untagged_status("OK", "first unseen", f"UNSEEN {first_unseen}"))
    permanent = (
        "PERMANENTFLAGS ()"
        if readonly
        else "PERMANENTFLAGS " + R.encode(R.flags([*flags, "\\*"])).decode()
    )
    out += [
        R.untagged_status("OK", "flags", permanent),
        R.untagged_status("OK", "UIDs valid", f"UIDVALIDITY {folder.uidvalidity}"),
        R.untagged_status("OK", "predicted next UID", f"UIDNEXT {folder.uidnext}"),
        R.untagged_status("OK", "highest", f"HIGHESTMODSEQ {folder.highestmodseq}"),
    ]
    return b"".join(out)


async def close(session: ImapSession, command: Command) -> None:
    folder = session.folder
    if folder is not None and not session.readonly:
        await session.io(folder.expunge)  # RFC 9051 §6.4.1: silently
    session.deselect()
    session.tagged(command.tag, "OK", "CLOSE completed")


async def unselect(session: ImapSession, command: Command) -> None:
    session.deselect()
    session.tagged(command.tag, "OK", "UNSELECT completed")


# --- CREATE / DELETE / RENAME / SUBSCRIBE ----------------------------------------------


async def _user_call(session: ImapSession, command: Command, method: str, *args: Any) -> None:
    assert session.user is not None
    try:
        await session.io(getattr(session.user, method), *args)
    except FolderError as exc:
        _no(session, command.tag, exc)
        return
    session.tagged(command.tag, "OK", f"{command.name} completed")


async def create(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, MailboxArg)
    # RFC 6154 §3 CREATE-SPECIAL-USE: here a folder's special use comes from its
    # name (mailstore/folders.py), so only the use its name gives is accepted.
    named = SPECIAL_USE.get(args.mailbox.split("/")[0]) if "/" not in args.mailbox else None
    if args.special_use and set(args.special_use) != {named}:
        session.tagged(command.tag, "NO", "special use is given by the folder's name", "USEATTR")
        return
    await _user_call(session, command, "create", args.mailbox)


async def delete(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, MailboxArg)
    folder = session.folder
    if folder is not None and folder.name == args.mailbox:
        session.deselect()
    await _user_call(session, command, "delete", args.mailbox)


async def rename(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, Rename)
    await _user_call(session, command, "rename", args.old, args.new)


async def subscribe(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, MailboxArg)
    await _user_call(session, command, "subscribe", args.mailbox)


async def unsubscribe(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, MailboxArg)
    await _user_call(session, command, "unsubscribe", args.mailbox)


# --- LIST / LSUB -------------------------------------------------------------------------


def pattern_matcher(reference: str, pattern: str) -> re.Pattern[str]:
    """RFC 9051 §6.3.9: the reference and the pattern joined; "*" matches any
    characters, "%" any but the separator "/"."""
    whole = reference + pattern
    out = [".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in whole]
    return re.compile("".join(out) + r"\Z", re.S)


def _matches(matcher: re.Pattern[str], name: str) -> bool:
    if name == "INBOX":  # INBOX in any case (RFC 9051 §5.1)
        return bool(re.match(matcher.pattern, name, re.S | re.I))
    return bool(matcher.match(name))


async def list_(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, ListArgs)
    verb = "LSUB" if command.name == "LSUB" else "LIST"
    if verb == "LIST" and args.patterns == ("",):
        session.write(b'* LIST (\\Noselect) "/" ""\r\n')  # the separator (RFC 9051 §6.3.9)
        session.tagged(command.tag, "OK", "LIST completed")
        return
    lines = await session.io(_list_lines, session, args, verb)
    session.write(lines)
    session.tagged(command.tag, "OK", f"{verb} completed")


def _list_lines(session: ImapSession, args: ListArgs, verb: str) -> bytes:
    user = session.user
    assert user is not None
    matchers = [pattern_matcher(args.reference, p) for p in args.patterns]
    folders = {f.name: set(f.attributes) for f in user.list_folders()}
    subscribed = set(user.subscriptions())
    want_subscribed = "SUBSCRIBED" in args.select_options or verb == "LSUB"
    show_subscribed = "SUBSCRIBED" in args.return_options or "SUBSCRIBED" in args.select_options
    names = sorted(set(folders) | (subscribed if want_subscribed else set()), key=_order)
    out = []
    for name in names:
        if not any(_matches(m, name) for m in matchers):
            continue
        attributes = folders.get(name)
        if want_subscribed and name not in subscribed:
            continue
        if "SPECIAL-USE" in args.select_options and not (attributes or set()) & _SPECIAL:
            continue
        if attributes is None:  # subscribed, gone (RFC 5258 §3)
            attributes = {"\\NonExistent"} if verb == "LIST" else {"\\Noselect"}
        if show_subscribed and name in subscribed and verb == "LIST":
            attributes = attributes | {"\\Subscribed"}
        out.append(R.list_response(sorted(attributes), "/", name, session.utf8, verb))
        if (
            args.status_items
            and "\\Noselect" not in attributes
            and "\\NonExistent" not in attributes
        ):
            items = _status_items(session, name, args.status_items)
            if items is not None:
                out.append(R.status_response(name, items, session.utf8))
    return b"".join(out)


_SPECIAL = frozenset({"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"})


def _order(name: str) -> tuple[int, str]:
    return (0 if name == "INBOX" else 1, name)


# --- STATUS ------------------------------------------------------------------------------


async def status(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, Status)
    items = await session.io(_status_items, session, args.mailbox, args.items)
    if items is None:
        session.tagged(command.tag, "NO", f"no such mailbox: {args.mailbox}", "NONEXISTENT")
        return
    session.write(R.status_response(args.mailbox, items, session.utf8))
    session.tagged(command.tag, "OK", "STATUS completed")


def _status_items(
    session: ImapSession, name: str, wanted: tuple[str, ...]
) -> list[tuple[str, int]] | None:
    user = session.user
    assert user is not None
    selected = session.folder
    if selected is not None and selected.name == name:
        folder, mine = selected, True
    else:
        try:
            folder, mine = user.open(name), False
        except FolderError:
            return None
    try:
        messages = folder.messages
        values = {
            "MESSAGES": lambda: len(messages),
            "UIDNEXT": lambda: folder.uidnext,
            "UIDVALIDITY": lambda: folder.uidvalidity,
            "UNSEEN": lambda: sum(1 for m in messages if "\\Seen" not in m.flags),
            "DELETED": lambda: sum(1 for m in messages if "\\Deleted" in m.flags),
            "SIZE": lambda: sum(m.size for m in messages),
            "HIGHESTMODSEQ": lambda: folder.highestmodseq,
            "RECENT": lambda: 0,
        }
        return [(item, values[item]()) for item in wanted if item in values]
    finally:
        if not mine:
            folder.close()

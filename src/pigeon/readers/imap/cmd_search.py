"""SEARCH and UID SEARCH (RFC 9051 §6.4.4; ESEARCH RFC 4731; CONDSTORE RFC 7162 §3.1.5).

Contract:
  * The key tree is the grammar's (pigeon.proto.imap.searchparse) and is
    evaluated by pigeon.proto.imap.search against each message of the
    selected mailbox, in a worker thread. A message file is read only when
    a key needs it (HEADER, FROM, SUBJECT, BODY, TEXT, SENT*), once. When
    every such key reads only envelope header fields (`CACHED_FIELDS`), the
    folder's `pigeon-cache` answers them (pigeon.readers.imap.fields), CHUNK
    messages at a time, and no file is read; with HEADER (or FROM, SUBJECT...)
    and an ASCII string without white space, a message whose cached fields
    do not hold the string in any case is passed over before the full
    match (`_may_match`: encoded-words and 8-bit fields always get it).
  * CHARSET: UTF-8 and US-ASCII (RFC 9051 §6.4.4); any other is NO
    [BADCHARSET (UTF-8 US-ASCII)].
  * Answers: "* SEARCH n..." (IMAP4rev1, UID SEARCH gives UIDs); with
    RETURN (...) or once IMAP4rev2 is enabled, "* ESEARCH (TAG ..) [UID]
    MIN/MAX/COUNT/ALL" (RFC 4731 §3.1, RFC 9051 §7.3.4). A MODSEQ key turns
    CONDSTORE on and adds the highest MODSEQ of the messages found (RFC
    7162 §3.1.5).
  * A message expunged by another program meanwhile does not match.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pigeon.mailstore.errors import MessageGone
from pigeon.proto.imap import response as R
from pigeon.proto.imap.commands import Command
from pigeon.proto.imap.search import Message, SearchContext, matches
from pigeon.proto.imap.searchparse import (
    And,
    DateKey,
    HeaderKey,
    ModSeqKey,
    Not,
    Or,
    SearchArgs,
    SearchKey,
    TextKey,
)
from pigeon.proto.imap.seqset import compress
from pigeon.readers.imap.fields import CACHED_FIELDS, fields_of
from pigeon.readers.imap.session import ImapSession

__all__ = ["CHUNK", "search"]

#: Messages whose cached fields are fetched at once.
CHUNK = 1000


def _uses_modseq(key: SearchKey) -> bool:
    if isinstance(key, ModSeqKey):
        return True
    if isinstance(key, And):
        return any(_uses_modseq(k) for k in key.keys)
    if isinstance(key, Or):
        return _uses_modseq(key.left) or _uses_modseq(key.right)
    if isinstance(key, Not):
        return _uses_modseq(key.key)
    return False


async def search(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, SearchArgs)
    if not args.charset_supported:
        session.tagged(command.tag, "NO", "unsupported charset", "BADCHARSET (UTF-8 US-ASCII)")
        return
    modseq = _uses_modseq(args.key)
    if modseq:
        session.proto.enable_condstore()
    found = await session.io(_found, session, args.key)
    numbers = [info.uid if command.uid else msn for msn, info in found]
    highest = max((info.modseq for _, info in found), default=None) if modseq else None
    if args.return_options is None and not session.rev2:
        session.write(R.search_response(numbers, highest))
    else:
        session.write(
            _esearch(command, args.return_options or frozenset({"ALL"}), numbers, highest)
        )
    session.tagged(command.tag, "OK", "SEARCH completed")


def _found(session: ImapSession, key: SearchKey) -> list[tuple[int, Any]]:
    folder = session.folder
    assert folder is not None
    messages = folder.messages
    ctx = SearchContext(len(messages), messages[-1].uid if messages else 0)
    cached = _cached_fields_only(key)
    needle = _prefilter(key) if cached else None
    out = []
    for start in range(0, len(messages), CHUNK):
        chunk = messages[start : start + CHUNK]
        fields = fields_of(folder, chunk) if cached else None
        for i, info in enumerate(chunk):
            msn = start + i + 1
            load_header = None
            if fields is not None:
                pair = fields[i]
                if pair is None:
                    continue  # expunged meanwhile: no match
                if needle is not None and not _may_match(pair[1], needle):
                    continue
                load_header = _constant(pair[1])

            def load(uid: int = info.uid) -> bytes:
                try:
                    return folder.read(uid)
                except MessageGone:
                    return b""

            view = Message(
                msn,
                info.uid,
                info.flags,
                info.size,
                info.internaldate,
                info.modseq,
                load,
                load_header,
            )
            if matches(key, view, ctx):
                out.append((msn, info))
    return out


def _constant(value: bytes) -> Callable[[], bytes]:
    return lambda: value


def _header_names(key: SearchKey) -> set[str] | None:
    """Lower-case names of the header fields the tree reads; None if it
    reads the body too."""
    if isinstance(key, And):
        keys: list[SearchKey] = list(key.keys)
    elif isinstance(key, Or):
        keys = [key.left, key.right]
    elif isinstance(key, Not):
        keys = [key.key]
    elif isinstance(key, TextKey):
        return None
    elif isinstance(key, HeaderKey):
        return {key.name.lower()}
    elif isinstance(key, DateKey) and key.sent:
        return {"date"}
    else:
        return set()
    names: set[str] = set()
    for k in keys:
        found = _header_names(k)
        if found is None:
            return None
        names |= found
    return names


def _cached_fields_only(key: SearchKey) -> bool:
    """Whether the folder's cached envelope fields answer every key that reads
    the message (pigeon.readers.imap.fields): then no file is read."""
    names = _header_names(key)
    return bool(names) and names is not None and names <= CACHED_FIELDS


def _prefilter(key: SearchKey) -> bytes | None:
    """For HEADER name string (alone or one of the ANDed keys) with an
    ASCII string without white space: that string in lower case. A message
    whose cached fields do not hold it cannot match (`_may_match`)."""
    keys = key.keys if isinstance(key, And) else (key,)
    for k in keys:
        if isinstance(k, HeaderKey) and k.value and k.value.isascii():
            if not any(c.isspace() for c in k.value):
                return k.value.lower().encode("ascii")
    return None


def _may_match(fields: bytes, needle: bytes) -> bool:
    """A necessary condition of a match: the needle in the raw fields (ASCII
    folds like `casefold`); fields with encoded-words (RFC 2047: decoded
    before matching) or 8-bit octets are always tried in full."""
    return needle in fields.lower() or b"=?" in fields or not fields.isascii()


def _esearch(
    command: Command, options: frozenset[str], numbers: list[int], highest: int | None
) -> bytes:
    results: list[tuple[str, int | str]] = []
    if numbers:
        if "MIN" in options:
            results.append(("MIN", numbers[0]))
        if "MAX" in options:
            results.append(("MAX", numbers[-1]))
        if "ALL" in options:
            results.append(("ALL", compress(numbers)))
    if "COUNT" in options:
        results.append(("COUNT", len(numbers)))
    if highest is not None and numbers:
        results.append(("MODSEQ", highest))
    return R.esearch_response(command.tag, command.uid, results)

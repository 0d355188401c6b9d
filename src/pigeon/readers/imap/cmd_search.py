"""SEARCH and UID SEARCH (RFC 9051 §6.4.4; ESEARCH RFC 4731; CONDSTORE RFC 7162 §3.1.5).

Contract:
  * The key tree is the grammar's (pigeon.proto.imap.searchparse) and is
    evaluated by pigeon.proto.imap.search against each message of the
    selected mailbox, in a worker thread. A message file is read only when
    a key needs it (HEADER, FROM, SUBJECT, BODY, TEXT, SENT*), once.
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

from typing import Any

from pigeon.mailstore.errors import MessageGone
from pigeon.proto.imap import response as R
from pigeon.proto.imap.commands import Command
from pigeon.proto.imap.search import Message, SearchContext, matches
from pigeon.proto.imap.searchparse import And, ModSeqKey, Not, Or, SearchArgs, SearchKey
from pigeon.proto.imap.seqset import compress
from pigeon.readers.imap.session import ImapSession

__all__ = ["search"]


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
    out = []
    for msn, info in enumerate(messages, 1):

        def load(uid: int = info.uid) -> bytes:
            try:
                return folder.read(uid)
            except MessageGone:
                return b""

        view = Message(msn, info.uid, info.flags, info.size, info.internaldate, info.modseq, load)
        if matches(key, view, ctx):
            out.append((msn, info))
    return out


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

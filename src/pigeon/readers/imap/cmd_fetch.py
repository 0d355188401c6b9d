"""FETCH and UID FETCH (RFC 9051 §6.4.5, §7.5.2; CONDSTORE RFC 7162 §3.1.4).

Contract:
  * Every attribute of the grammar (pigeon.proto.imap.fetchspec): FLAGS,
    UID, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODYSTRUCTURE, BODY,
    BODY[section]<partial> and BODY.PEEK, RFC822, RFC822.HEADER,
    RFC822.TEXT, BINARY[part] / BINARY.PEEK / BINARY.SIZE (RFC 3516), MODSEQ.
    UID FETCH answers UID in every response. A section that does not exist
    is NIL; a BINARY part whose encoding cannot be undone is NO
    [UNKNOWN-CTE] (RFC 3516 §4.3).
  * BODY[...] and RFC822(.TEXT) set \\Seen, unless .PEEK or the mailbox was
    EXAMINEd (RFC 9051 §6.4.5); the FETCH then carries the new FLAGS.
  * The items are the sans-IO core's (pigeon.proto.imap.fetchrender). The
    MIME tree (pigeon.proto.imap.mime; only parsed for BODYSTRUCTURE, BODY
    and sections with part numbers) is computed once per message and kept
    in the service's bounded `BodyCache`, keyed by the Maildir and the
    message's unique name (its content never changes). ENVELOPE comes from
    the folder's `pigeon-cache` (pigeon.readers.imap.fields), a batch at a
    time. A message file is only read when an attribute needs its octets.
    Message content goes out as literals.
  * Messages expunged by another program meanwhile are left out (RFC 9051
    §7.5.1 lets the server answer what still exists).
  * The work runs in a worker thread in batches (at most BATCH messages or
    about BATCH_OCTETS of answer each), written and drained between
    batches: the memory of a FETCH of every message stays bounded.
  * CHANGEDSINCE (RFC 7162 §3.1.4.1) keeps the messages whose MODSEQ is
    higher and turns CONDSTORE on; with CONDSTORE on, every FETCH with
    FLAGS carries MODSEQ.
"""

from __future__ import annotations

from typing import Any

from pigeon.mailstore.errors import MessageGone
from pigeon.proto.imap import fetchrender, mime, sections
from pigeon.proto.imap import response as R
from pigeon.proto.imap.commands import Command, Fetch
from pigeon.proto.imap.fetchspec import FetchAtt
from pigeon.readers.imap.fields import fields_of
from pigeon.readers.imap.session import ImapSession
from pigeon.readers.imap.targets import BadSet, targets

__all__ = ["BATCH", "BATCH_OCTETS", "fetch"]

BATCH = 200
BATCH_OCTETS = 1024 * 1024

_NEEDS_DATA = frozenset(
    {"BODY[]", "BINARY[]", "BINARY.SIZE", "RFC822", "RFC822.HEADER", "RFC822.TEXT"}
)
_NEEDS_STRUCTURE = frozenset({"ENVELOPE", "BODYSTRUCTURE", "BODY"})


class _CannotDecode(Exception):
    pass


async def fetch(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, Fetch)
    folder = session.folder
    assert folder is not None
    try:
        picked = targets(folder.messages, args.seqset, uid=command.uid)
    except BadSet as exc:
        session.tagged(command.tag, "BAD", str(exc))
        return
    atts = list(args.atts)
    names = {a.name for a in atts}
    if args.changedsince is not None or "MODSEQ" in names:
        session.proto.enable_condstore()
    if args.changedsince is not None:
        picked = [(n, i) for n, i in picked if i.modseq > args.changedsince]
        if "MODSEQ" not in names:
            atts.append(FetchAtt("MODSEQ"))
    if command.uid and "UID" not in names:
        atts.insert(0, FetchAtt("UID"))
    seen = not session.readonly and any(a.sets_seen for a in atts)
    start = 0
    while start < len(picked):
        out, start, failed = await session.io(_batch, session, picked, start, atts, seen)
        session.write(out)
        await session.conn.flush()
        if failed:
            session.tagged(command.tag, "NO", failed, "UNKNOWN-CTE")
            return
    session.tagged(command.tag, "OK", "FETCH completed")


def _batch(
    session: ImapSession,
    picked: list[tuple[int, Any]],
    start: int,
    atts: list[FetchAtt],
    seen: bool,
) -> tuple[bytes, int, str]:
    """The answers for picked[start:...] (module contract): (octets, next start, failure)."""
    folder = session.folder
    assert folder is not None
    chunk = picked[start : start + BATCH]
    if seen:
        unseen = [info.uid for _, info in chunk if "\\Seen" not in info.flags]
        if unseen:
            folder.set_flags(unseen, ["\\Seen"], "add")
    out: list[bytes] = []
    size = 0
    done = start
    envelopes: list[Any] = []
    if any(a.name == "ENVELOPE" for a in atts):
        envelopes = fields_of(folder, [old for _, old in chunk])
    for i, (msn, old) in enumerate(chunk):
        info = folder.get(old.uid)
        done += 1
        if info is None:
            continue
        try:
            env = envelopes[i][0] if envelopes and envelopes[i] is not None else None
            line = _one(session, msn, info, atts, seen and "\\Seen" not in old.flags, env)
        except MessageGone:
            continue
        except _CannotDecode as exc:
            return b"".join(out), done, str(exc)
        out.append(line)
        size += len(line)
        if size >= BATCH_OCTETS:
            break
    return b"".join(out), done, ""


def _one(
    session: ImapSession,
    msn: int,
    info: Any,
    atts: list[FetchAtt],
    newly_seen: bool,
    env: bytes | None,
) -> bytes:
    folder = session.folder
    assert folder is not None
    names = {a.name for a in atts}
    cached = _cached(session, folder, info, atts, env is None)
    data: bytes | None = None
    items: list[bytes] = []
    flags_sent = False
    for att in atts:
        name = att.name
        if name in fetchrender.STORE_ITEMS:
            _, value = fetchrender.store_item(
                att,
                uid=info.uid,
                flags=sorted(info.flags),
                internaldate=info.internaldate,
                modseq=info.modseq,
            )
            encoded = R.encode(value)
            flags_sent = flags_sent or name == "FLAGS"
        elif name == "RFC822.SIZE":
            encoded = b"%d" % info.size
        elif name == "ENVELOPE":
            encoded = env if env is not None else cached.envelope
        elif name in ("BODYSTRUCTURE", "BODY"):
            encoded = mime.bodystructure(cached.root, extended=name == "BODYSTRUCTURE")
        else:
            if data is None:
                data = folder.read(info.uid)
            encoded = _content(att, data, cached.root)
        items.append(att.response_name().encode("ascii") + b" " + encoded)
    if newly_seen and not flags_sent:
        items.append(b"FLAGS " + R.encode(R.flags(sorted(info.flags))))
        flags_sent = True
    if flags_sent and session.condstore and "MODSEQ" not in names:
        items.append(b"MODSEQ (%d)" % info.modseq)
    return b"* %d FETCH (" % msn + b" ".join(items) + b")\r\n"


def _content(att: FetchAtt, data: bytes, root: Any) -> bytes:
    """A section of the message's octets (pigeon.proto.imap.fetchrender), NIL when
    the part does not exist; content always as a literal, as Dovecot sends it
    (clients read section data as a literal; a short quoted one confuses some)."""
    section = att.section
    if section is not None and section.part:
        assert root is not None
        if sections.find_part(root, section.part) is None:
            return b"NIL"
    try:
        _, value = fetchrender.content_item(att, data, root)
    except sections.UnknownEncoding as exc:
        raise _CannotDecode(f"cannot decode part {section}: {exc}") from None
    if value is None:
        return b"NIL"
    if isinstance(value, bytes):
        return b"{%d}\r\n" % len(value) + value
    return R.encode(value)


class _Cached:
    """What is kept of a message in the BodyCache: its MIME tree (when a FETCH
    needed it) and its ENVELOPE."""

    __slots__ = ("root", "envelope")

    def __init__(self, root: Any, envelope: bytes) -> None:
        self.root = root
        self.envelope = envelope


def _cached(
    session: ImapSession, folder: Any, info: Any, atts: list[FetchAtt], want_envelope: bool
) -> _Cached:
    """The message's tree (and ENVELOPE, when the folder's cache did not give
    it) from the BodyCache, computed (and kept) when an attribute needs them
    and they are missing (module contract)."""
    want_tree = any(fetchrender.needs_structure(a) for a in atts)
    want_envelope = want_envelope and any(a.name == "ENVELOPE" for a in atts)
    if not (want_tree or want_envelope):
        return _NOTHING
    cache = session.conn.service.bodies
    key = (folder.path, info.base)
    found = cache.get(key)
    if found is not None and (found.root is not None or not want_tree):
        return found
    data = folder.read(info.uid)
    root = mime.parse_structure(data) if want_tree else None
    _, envelope = fetchrender.content_item(FetchAtt("ENVELOPE"), data, root)
    value = _Cached(root, R.encode(envelope))
    cost = len(value.envelope) + (len(mime.bodystructure(root)) * 3 if root is not None else 0)
    cache.put(key, value, cost)
    return value


_NOTHING = _Cached(None, b"NIL")

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
  * The MIME structure (pigeon.proto.imap.mime) and ENVELOPE are computed
    once per message and kept in the service's bounded `BodyCache`, keyed
    by the Maildir and the message's unique name (its content never changes).
    A message file is only read when an attribute needs its octets.
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
from pigeon.proto.imap import mime, sections
from pigeon.proto.imap import response as R
from pigeon.proto.imap.commands import Command, Fetch
from pigeon.proto.imap.envelope import encode_envelope
from pigeon.proto.imap.fetchspec import FetchAtt
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
    for msn, old in chunk:
        info = folder.get(old.uid)
        done += 1
        if info is None:
            continue
        try:
            line = _one(session, msn, info, atts, seen and "\\Seen" not in old.flags)
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
    session: ImapSession, msn: int, info: Any, atts: list[FetchAtt], newly_seen: bool
) -> bytes:
    folder = session.folder
    assert folder is not None
    names = {a.name for a in atts}
    data: bytes | None = None
    if names & _NEEDS_DATA:
        data = folder.read(info.uid)
    structure = None
    if names & (_NEEDS_STRUCTURE | {"BINARY[]", "BINARY.SIZE", "BODY[]"}):
        structure = _structure(session, folder, info, data)
    items: list[bytes] = []
    flags_sent = False
    for att in atts:
        name = att.name
        value: bytes
        if name == "FLAGS":
            value = R.encode(R.flags(sorted(info.flags)))
            flags_sent = True
        elif name == "UID":
            value = b"%d" % info.uid
        elif name == "MODSEQ":
            value = b"(%d)" % info.modseq
        elif name == "RFC822.SIZE":
            value = b"%d" % info.size
        elif name == "INTERNALDATE":
            value = R.encode(R.date_time(info.internaldate))
        elif name == "ENVELOPE":
            assert structure is not None
            value = structure[1]
        elif name == "BODYSTRUCTURE":
            assert structure is not None
            value = structure[2]
        elif name == "BODY":
            assert structure is not None
            value = mime.bodystructure(structure[0], extended=False)
        else:
            assert data is not None
            value = _content(att, data, structure[0] if structure else None)
        items.append(att.response_name().encode("ascii") + b" " + value)
    if newly_seen and not flags_sent:
        items.append(b"FLAGS " + R.encode(R.flags(sorted(info.flags))))
        flags_sent = True
    if flags_sent and session.condstore and "MODSEQ" not in names:
        items.append(b"MODSEQ (%d)" % info.modseq)
    return b"* %d FETCH (" % msn + b" ".join(items) + b")\r\n"


def _content(att: FetchAtt, data: bytes, root: Any) -> bytes:
    name = att.name
    if name == "RFC822":
        return _literal(data)
    if name in ("RFC822.HEADER", "RFC822.TEXT"):
        root = root if root is not None else mime.parse_structure(data)
        if name == "RFC822.HEADER":
            return _literal(data[root.start : root.body_start])
        return _literal(data[root.body_start : root.end])
    section = att.section
    assert section is not None and root is not None
    if name == "BODY[]":
        found = sections.section_bytes(data, root, section)
        return b"NIL" if found is None else _literal(sections.partial(found, att.partial))
    try:
        decoded = sections.binary_bytes(data, root, section.part)
    except sections.UnknownEncoding as exc:
        raise _CannotDecode(f"cannot decode part {section}: {exc}") from None
    if name == "BINARY.SIZE":
        return b"NIL" if decoded is None else b"%d" % len(decoded)
    if decoded is None:
        return b"NIL"
    decoded = sections.partial(decoded, att.partial)
    return R.encode(R.Literal8(decoded)) if b"\x00" in decoded else _literal(decoded)


def _literal(octets: bytes) -> bytes:
    """Message content always as a literal, as Dovecot sends it: clients read
    section data as a literal (a short, quoted one confuses some)."""
    return b"{%d}\r\n" % len(octets) + octets


def _structure(
    session: ImapSession, folder: Any, info: Any, data: bytes | None
) -> tuple[Any, bytes, bytes]:
    """(MIME tree, ENVELOPE octets, BODYSTRUCTURE octets), from the cache or computed once."""
    cache = session.conn.service.bodies
    key = (folder.path, info.base)
    found = cache.get(key)
    if found is not None:
        return found
    if data is None:
        data = folder.read(info.uid)
    root = mime.parse_structure(data)
    env = encode_envelope(mime.message_envelope(data, root))
    body = mime.bodystructure(root, extended=True)
    value = (root, env, body)
    cache.put(key, value, len(env) + 3 * len(body))
    return value

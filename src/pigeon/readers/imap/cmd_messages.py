"""Commands that change messages: STORE, COPY, MOVE, EXPUNGE (and UID EXPUNGE), APPEND.

Contract:
  * Flags live in the Maildir file names (pigeon.mailstore: `:2,` letters,
    keywords through `dovecot-keywords`), so Dovecot and mutt see them.
  * STORE (RFC 9051 §6.4.6): the new flags of every message named are
    answered with FETCH (FLAGS ...) unless .SILENT; with CONDSTORE on, the
    FETCH carries MODSEQ and is sent even with .SILENT for the messages
    changed (RFC 7162 §3.1.3). UNCHANGEDSINCE: messages changed since are
    left alone and listed in OK [MODIFIED set].
  * COPY (RFC 9051 §6.4.7) answers OK [COPYUID v source-uids dest-uids]
    (RFC 4315 §3); MOVE (RFC 6851 §4.3) sends COPYUID in an untagged OK,
    then an EXPUNGE for every message moved, then OK. A destination that
    does not exist is NO [TRYCREATE].
  * STORE, MOVE and EXPUNGE on an EXAMINEd mailbox are refused by the state
    (NO [READ-ONLY], pigeon.proto.imap.state).
  * EXPUNGE removes the \\Deleted messages (UID EXPUNGE only those named,
    RFC 4315 §2.1) and announces each (RFC 9051 §7.5.1).
  * APPEND (RFC 9051 §6.3.12, LITERAL+ RFC 7888 via the reader) answers OK
    [APPENDUID v uid] (RFC 4315 §3); a literal over `[imap] max_literal` was
    refused by the reader before any of it was stored.
"""

from __future__ import annotations

from typing import Any

from pigeon.mailstore.errors import FolderError
from pigeon.proto.imap import response as R
from pigeon.proto.imap.commands import Append, Command, CopyArgs, Store, UidExpunge
from pigeon.proto.imap.seqset import compress
from pigeon.readers.imap.session import ImapSession
from pigeon.readers.imap.targets import BadSet, targets

__all__ = ["append", "copy", "expunge", "store"]


def _picked(session: ImapSession, command: Command, seqset: Any) -> list[tuple[int, Any]] | None:
    """The messages named, or None after answering BAD."""
    assert session.folder is not None
    try:
        return targets(session.folder.messages, seqset, uid=command.uid)
    except BadSet as exc:
        session.tagged(command.tag, "BAD", str(exc))
        return None


async def store(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, Store)
    folder = session.folder
    assert folder is not None
    picked = _picked(session, command, args.seqset)
    if picked is None:
        return
    if args.unchangedsince is not None:
        session.proto.enable_condstore()  # RFC 7162 §3.1: a CONDSTORE-enabling command
    uids = [info.uid for _, info in picked]
    try:
        changed, failed = await session.io(
            folder.set_flags, uids, args.flags, args.mode, args.unchangedsince
        )
    except FolderError as exc:
        session.tagged(command.tag, "NO", str(exc), "LIMIT")
        return
    changed_uids = {uid for uid, _, _ in changed}
    refused = set(failed)
    msn_by_uid = {info.uid: msn for msn, info in picked}
    out = []
    for uid in uids:
        if uid in refused or (args.silent and not (session.condstore and uid in changed_uids)):
            continue
        info = folder.get(uid)
        if info is not None:
            out.append(session.flags_response(msn_by_uid[uid], info, uid=command.uid))
    session.write(b"".join(out))
    code = None
    if failed:
        numbers = sorted(failed if command.uid else (msn_by_uid[u] for u in failed))
        code = f"MODIFIED {compress(numbers)}"
    session.tagged(command.tag, "OK", "STORE completed", code)


async def copy(session: ImapSession, command: Command) -> None:
    """COPY and MOVE (module contract)."""
    args = command.args
    assert isinstance(args, CopyArgs)
    folder = session.folder
    assert folder is not None
    move = command.name == "MOVE"
    picked = _picked(session, command, args.seqset)
    if picked is None:
        return
    if not picked:
        session.tagged(command.tag, "OK", f"{command.name} completed (no messages)")
        return
    uids = [info.uid for _, info in picked]
    before = folder.messages
    try:
        pairs, validity = await session.io(folder.move if move else folder.copy, uids, args.mailbox)
    except FolderError as exc:
        missing = str(exc).startswith("no such")
        session.tagged(command.tag, "NO", str(exc), "TRYCREATE" if missing else "CANNOT")
        return
    code = None
    if pairs:
        sources = compress(sorted(s for s, _ in pairs))
        dests = compress(sorted(d for _, d in pairs))
        code = f"COPYUID {validity} {sources} {dests}"
    if move:
        if code:
            session.write(R.untagged_status("OK", "moved", code))
        session.write(session.expunge_lines(before, [s for s, _ in pairs]))
        session.tagged(command.tag, "OK", "MOVE completed")
    else:
        session.tagged(command.tag, "OK", "COPY completed", code)


async def expunge(session: ImapSession, command: Command) -> None:
    folder = session.folder
    assert folder is not None
    among = None
    if isinstance(command.args, UidExpunge):
        picked = _picked(session, command, command.args.seqset)
        if picked is None:
            return
        among = [info.uid for _, info in picked]
    before = folder.messages
    gone = await session.io(folder.expunge, among)
    session.write(session.expunge_lines(before, gone))
    session.tagged(command.tag, "OK", "EXPUNGE completed")


async def append(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, Append)
    if not args.message:
        session.tagged(command.tag, "NO", "an empty message is not stored")
        return
    try:
        validity, uid = await session.io(
            _append, session, args.mailbox, args.message, args.flags, args.internaldate
        )
    except FolderError as exc:
        missing = str(exc).startswith("no such")
        session.tagged(command.tag, "NO", str(exc), "TRYCREATE" if missing else "CANNOT")
        return
    session.tagged(command.tag, "OK", "APPEND completed", f"APPENDUID {validity} {uid}")


def _append(
    session: ImapSession, name: str, data: bytes, flags: tuple[str, ...], date: Any
) -> tuple[int, int]:
    selected = session.folder
    if selected is not None and selected.name == name:
        return selected.append(data, flags, date)
    assert session.user is not None
    folder = session.user.open(name)
    try:
        return folder.append(data, flags, date)
    finally:
        folder.close()

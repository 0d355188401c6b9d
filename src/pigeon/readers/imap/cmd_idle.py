"""IDLE (RFC 2177, RFC 9051 §6.3.13): the client waits, the server tells it of new mail at once.

Contract:
  * IDLE answers "+ idling", tells the client at once of changes it has
    not heard of, and from then on whenever the session's Maildir is
    announced (pigeon's local delivery: pigeon.mailstore.notify, the driver
    woken through `call_soon_threadsafe`) or every `[imap] idle_poll`
    seconds (mail other programs wrote): EXPUNGE, EXISTS, FETCH (FLAGS)
    as after any command (session.sync_and_tell).
  * The next line ends it: "DONE" gives OK, anything else BAD (RFC 2177 §3).
    An IDLE held past `[imap] idle_timeout` ends the session with BYE (the
    driver, connection.py). IDLE in the authenticated state only waits.
"""

from __future__ import annotations

from pigeon.proto.imap import response as R
from pigeon.proto.imap.commands import Command
from pigeon.readers.imap.session import ImapSession

__all__ = ["idle", "idle_done"]


async def idle(session: ImapSession, command: Command) -> None:
    session.idling = True
    session.idle_started = session.conn.clock()
    session.idle_tag = command.tag
    session.reader.expect_idle_done()
    session.write(R.continuation("idling"))
    await session.sync_and_tell()


async def idle_done(session: ImapSession, ok: bool) -> None:
    session.idling = False
    if ok:
        session.tagged(session.idle_tag, "OK", "IDLE terminated")
    else:
        session.tagged(session.idle_tag, "BAD", "expected DONE")

"""The commands of every state, and those of the connection itself: CAPABILITY, NOOP, CHECK,
LOGOUT, ID, ENABLE, NAMESPACE, STARTTLS.

Contract:
  * `capabilities(session)` is the list the greeting, CAPABILITY and the
    OK of a login carry (RFC 9051 §7.2.2), as the state machine gives it
    (pigeon.proto.imap.state). Passwords only inside TLS (RFC 9051 §6.2.3,
    RFC 8314): on the "imap" role before STARTTLS the list says STARTTLS
    and LOGINDISABLED and offers no AUTH=; once the connection is encrypted
    (STARTTLS, or the "imaps" role) it offers the `[auth] mechanisms`
    pigeon's SASL code implements. After the login it lists the extensions
    a logged-in client may use.
  * STARTTLS (RFC 9051 §6.2.1): answered OK, then every octet the client
    sent after the command is dropped (the reader's buffer here, the
    stream's in the driver: CVE-2011-0411) and the driver runs the
    handshake. Refused (BAD) when TLS is already on or no certificate exists.
  * ENABLE (RFC 5161, RFC 9051 §6.3.1): IMAP4rev2, CONDSTORE (RFC 7162
    §3.1) and UTF8=ACCEPT (RFC 6855) are known; `* ENABLED` lists those
    newly enabled; others are ignored, as the RFC says.
  * ID (RFC 2971): the client's fields are logged (bounded), ours are the
    name "pigeon".
  * NAMESPACE (RFC 2342): one personal namespace, "" with "/", no others.
"""

from __future__ import annotations

import logging

from pigeon.proto.imap import response as R
from pigeon.proto.imap.commands import Command, Enable, Id
from pigeon.readers.imap.session import ImapSession

__all__ = [
    "capabilities",
    "capability",
    "check",
    "enable",
    "id_",
    "logout",
    "namespace",
    "noop",
    "starttls",
]

log = logging.getLogger("pigeon.imap")


def capabilities(session: ImapSession) -> list[str]:
    """The capability list in this state (module contract; pigeon.proto.imap.state)."""
    return list(session.proto.capabilities())


async def capability(session: ImapSession, command: Command) -> None:
    session.write(b"* CAPABILITY " + " ".join(capabilities(session)).encode() + b"\r\n")
    session.tagged(command.tag, "OK", "CAPABILITY completed")


async def noop(session: ImapSession, command: Command) -> None:
    # The updates follow every command (session.run_command): nothing else to do.
    session.tagged(command.tag, "OK", f"{command.name} completed")


check = noop


async def logout(session: ImapSession, command: Command) -> None:
    session.write(R.bye("logging out"))
    session.tagged(command.tag, "OK", "LOGOUT completed")
    session.deselect()
    session.conn.closing = True


async def id_(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, Id)
    if args.params:
        shown = ", ".join(f"{k}={v!r}" for k, v in args.params[:10])[:300]
        log.info("[%s] ID %s", session.conn.client_ip, shown)
    session.write(b'* ID ("name" "pigeon")\r\n')
    session.tagged(command.tag, "OK", "ID completed")


async def enable(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, Enable)
    newly = session.proto.enable(args.capabilities)
    session.reader.utf8 = session.utf8
    session.write(b"* ENABLED" + b"".join(b" " + c.encode() for c in newly) + b"\r\n")
    session.tagged(command.tag, "OK", "ENABLE completed")


async def namespace(session: ImapSession, command: Command) -> None:
    session.write(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
    session.tagged(command.tag, "OK", "NAMESPACE completed")


async def starttls(session: ImapSession, command: Command) -> None:
    conn = session.conn
    # (Refused by the state before, when TLS is on already or not offered.) Stop reading before the OK goes out: what follows is the handshake.
    conn.stream.pause_reading()
    dropped = session.reader.discard_input()
    if dropped:
        log.warning(
            "[%s]: %d octets pipelined after STARTTLS were discarded", conn.client_ip, dropped
        )
    session.tagged(command.tag, "OK", "begin TLS negotiation now")
    session.tls_requested = True

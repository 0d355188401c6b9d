"""Events the sans-IO server session hands to its driver.

Contract:
  * `ServerSession.next_event()` returns one of these, or `NEED_DATA` when it
    has nothing more to say until more bytes arrive (or a timer fires).
  * Events marked DECISION pause the session: it processes no further input
    until the driver calls `ServerSession.respond(reply_or_None)`. `None`
    means "accept with the standard reply" (250 for MAIL/RCPT, 354 for DATA,
    nothing for a first BDAT chunk). This is how policy (relay checks,
    recipient lookups) and I/O (spool writes, fsync) stay outside the
    protocol core while pipelined commands keep their order.
  * Events are plain frozen values; they carry no sockets, files or clocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pigeon.proto.params import MailParams, RcptParams
from pigeon.vocab.address import Address


class Event:
    """Base class of all session events."""

    __slots__ = ()


class _NeedData(Event):
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
"""Sentinel: feed more bytes (or call on_timer) before asking again."""


@dataclass(frozen=True, slots=True)
class HeloReceived(Event):
    """EHLO or HELO accepted (informational). `esmtp` is True for EHLO."""

    hostname: str
    esmtp: bool


@dataclass(frozen=True, slots=True)
class MailRequested(Event):
    """DECISION: a syntactically valid MAIL FROM. `sender` None is the null path <>."""

    sender: Address | None
    params: MailParams


@dataclass(frozen=True, slots=True)
class RcptRequested(Event):
    """DECISION: a syntactically valid RCPT TO, within the recipient limit."""

    recipient: Address
    params: RcptParams


@dataclass(frozen=True, slots=True)
class DataStarted(Event):
    """DECISION: the client asks to send content (DATA, or the first BDAT chunk).

    The driver opens a spool file here; answering with an error reply (for
    example 452 4.3.1 when the disk is full) refuses the content. For BDAT
    the session still consumes and discards the chunk's octets.
    """

    via: Literal["DATA", "BDAT"]


@dataclass(frozen=True, slots=True)
class DataReceived(Event):
    """Message content to append to the spool: unstuffed, CRLF line endings.

    Emitted in pieces as bytes arrive so a large message is never held whole
    in memory. The session never emits the end-of-data marker itself.
    """

    data: bytes


@dataclass(frozen=True, slots=True)
class DataFinished(Event):
    """DECISION: the content is complete and passed the protocol checks.

    The driver makes the message durable (fsync) and responds with
    `reply.queued(id)`, or with a 4xx/5xx reply if it could not.
    `eight_bit` is True when the content holds octets above 127.
    `received_headers` counts Received: fields in the header section.
    """

    size: int
    eight_bit: bool
    received_headers: int


@dataclass(frozen=True, slots=True)
class DataAborted(Event):
    """The content was refused by the protocol layer; the driver discards the spool.

    The session has already queued the error reply (`reply`); `reason` is a
    short private explanation for the log.
    """

    reason: str
    reply: object  # pigeon.proto.reply.Reply (kept loose to avoid an import cycle)


@dataclass(frozen=True, slots=True)
class TransactionReset(Event):
    """The mail transaction was abandoned (RSET, EHLO/HELO, or a failed DATA).

    Informational: a driver that opened a spool file for the transaction
    discards it if no DataFinished/DataAborted was emitted.
    """


@dataclass(frozen=True, slots=True)
class ConnectionClosing(Event):
    """The session is over (QUIT, timeout, too many errors, fatal input).

    The driver flushes `data_to_send()` and then closes the connection.
    """

    reason: str


# --- STARTTLS (RFC 3207) and AUTH (RFC 4954) ------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """What the driver learned from a completed TLS handshake (for Received: and logs)."""

    version: str  # "TLSv1.3"
    cipher: str  # "TLS_AES_256_GCM_SHA384"
    bits: int  # secret bits of the cipher


@dataclass(frozen=True, slots=True)
class StartTlsRequested(Event):
    """The session said 220 to STARTTLS: the driver must now flush the output,
    run the TLS handshake, then call `tls_started(info)` or `tls_failed(reason)`.

    Until then the session processes no input and has no deadline (the driver
    bounds the handshake). `discarded` counts the octets the client pipelined
    after the STARTTLS line; they were dropped unread (CVE-2011-0411, RFC 3207
    §5): nothing sent in plaintext may be taken as coming through TLS. The
    driver must also drop anything it buffered itself.
    """

    discarded: int


@dataclass(frozen=True, slots=True)
class AuthKeysRequested(Event):
    """DECISION (SCRAM): look up the stored SCRAM keys of `username`.

    Answer with `ServerSession.respond_keys(keys_or_None)`; None (unknown user)
    lets the exchange go on and fail at the proof, so user names cannot be probed.
    """

    mechanism: str
    username: str


@dataclass(frozen=True, slots=True)
class EtrnRequested(Event):
    """DECISION: ETRN (RFC 1985): start delivering the mail queued for `node`.

    `node` is a domain ("example.org") or "@example.org" for the domain and
    its subdomains. respond(None) = 250 "queuing started"; the driver answers
    with a refusal (e.g. 554 5.7.1 for a client not allowed) otherwise.
    """

    node: str


@dataclass(frozen=True, slots=True)
class Authenticated(Event):
    """The session is now authenticated as `username` (235 2.7.0 was queued).

    Informational. It follows the AuthRequested the driver accepted: at once
    for PLAIN and LOGIN, after the client's answer to the server-final
    message for SCRAM (RFC 4954 §4; a client that cancels there is not
    authenticated, and no event comes).
    """

    username: str
    mechanism: str


@dataclass(frozen=True, slots=True)
class AuthRequested(Event):
    """DECISION: a SASL exchange is complete (RFC 4954 §4).

    PLAIN/LOGIN: `password` must be verified (slow, argon2id: do it off the
    event loop); `verified` is None. SCRAM: `password` is None and `verified`
    holds the proof check's result. `authzid` is the requested authorization
    identity ("" when none). Answer `respond(None)` to accept (235 2.7.0, the
    session is then authenticated as `username`), or `respond(reply)`, e.g.
    AUTH_FAILED 535 5.7.8, AUTH_TEMPORARY 454 4.7.0 or
    AUTH_TOO_MANY_FAILURES 421 4.7.0 (which closes the session).
    """

    mechanism: str
    username: str
    authzid: str
    password: str | None = field(default=None, repr=False)
    verified: bool | None = None

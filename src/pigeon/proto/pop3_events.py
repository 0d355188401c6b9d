"""What the POP3 session (pigeon.proto.pop3) tells its driver.

Contract: DECISION events pause the session until the driver answers with
the method named in each docstring; the others are informational. The
refusal kinds are worded by the session (RFC 2449 §8, RFC 3206 codes).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pigeon.proto.sasl import Credentials

__all__ = [
    "REFUSAL_REPLIES",
    "ConnectionClosing",
    "Event",
    "LoginRefused",
    "PasswordLogin",
    "RetrieveRequested",
    "SaslKeysNeeded",
    "SaslLogin",
    "StartTlsRequested",
    "UpdateRequested",
]


class LoginRefused(enum.Enum):
    """Why a login does not open the maildrop (`Pop3Session.refuse_login`)."""

    FAILED = "failed"  # -ERR [AUTH]
    TOO_MANY_FAILURES = "too many failures"  # -ERR [SYS/TEMP], then the session closes
    UNAVAILABLE = "unavailable"  # the account store cannot be read: -ERR [SYS/TEMP]
    IN_USE = "in use"  # another session holds the maildrop: -ERR [IN-USE] (RFC 2449 §8.1.2)
    NO_MAILBOX = "no mailbox"  # the account's name is no address: -ERR [SYS/PERM]
    MAILDROP_ERROR = "maildrop error"  # the Maildir cannot be read: -ERR [SYS/TEMP]


class Event:
    """Base of the POP3 session's events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class PasswordLogin(Event):
    """DECISION: USER/PASS (RFC 1939 §7). `accept_login(listing)` or `refuse_login(kind)`."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SaslKeysNeeded(Event):
    """DECISION: a SCRAM-SHA-256 exchange needs the user's stored keys: `respond_keys(keys)`."""

    username: str


@dataclass(frozen=True, slots=True)
class SaslLogin(Event):
    """DECISION: an AUTH exchange is complete (RFC 5034): like PasswordLogin.
    PLAIN: `credentials.password` must be verified; SCRAM: `credentials.verified`."""

    mechanism: str
    credentials: Credentials


@dataclass(frozen=True, slots=True)
class StartTlsRequested(Event):
    """STLS accepted (RFC 2595 §4): `+OK` is queued; run the handshake after
    writing it, then `tls_started()` or `tls_failed()`. `discarded` octets
    pipelined after STLS were dropped."""

    discarded: int


@dataclass(frozen=True, slots=True)
class RetrieveRequested(Event):
    """DECISION: RETR (body_lines None) or TOP n m (RFC 1939 §7) of message
    `index` (0-based). `retrieve_started(size)`, the message written with
    pop3_content.MessageEncoder, `retrieve_done()`; or `retrieve_failed()`."""

    index: int
    body_lines: int | None
    size: int


@dataclass(frozen=True, slots=True)
class UpdateRequested(Event):
    """DECISION: QUIT in TRANSACTION (RFC 1939 §6): remove messages `deleted`
    (0-based indexes), then `update_done(failures)`."""

    deleted: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ConnectionClosing(Event):
    """The session is over: write what is left and close."""

    reason: str


#: RFC 2449 §8 and RFC 3206 response codes for each refusal.
REFUSAL_REPLIES = {
    LoginRefused.FAILED: b"-ERR [AUTH] Authentication failed",
    LoginRefused.TOO_MANY_FAILURES: b"-ERR [SYS/TEMP] Too many failed logins, try again later",
    LoginRefused.UNAVAILABLE: b"-ERR [SYS/TEMP] Temporary authentication failure",
    LoginRefused.IN_USE: b"-ERR [IN-USE] Mailbox is locked by another POP3 session",
    LoginRefused.NO_MAILBOX: b"-ERR [SYS/PERM] This account has no mailbox",
    LoginRefused.MAILDROP_ERROR: b"-ERR [SYS/TEMP] The mailbox cannot be read now",
}

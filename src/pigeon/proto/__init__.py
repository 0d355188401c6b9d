"""pigeon.proto: the sans-IO SMTP protocol core (no sockets, no asyncio, no clock).

Modules, from the bottom up:
    reply       Reply value type + catalogue (the only source of reply text)
    address     Address, parse_path/split_path (RFC 5321 §4.1.2, RFC 6531)
    params      MAIL/RCPT ESMTP parameters (SIZE, BODY, SMTPUTF8, DSN)
    commands    command-line verb + argument grammar
    linebuf     bounded, CRLF-strict command-line reader
    content     streaming content checks (bare CR/LF, line length, NUL, size, hops)
    datareader  DATA (dot-terminated) and BDAT (counted) readers
    states      the (state, verb) table
    events      events handed to the driver
    scram       SCRAM-SHA-256 key derivation and proof checks (RFC 5802/7677), SASLprep (RFC 4013)
    sasl        SASL server mechanisms PLAIN, LOGIN, SCRAM-SHA-256 (no I/O, no clock)
    secure      STARTTLS and AUTH handlers of the session
    server      ServerSession + SessionConfig
"""

from pigeon.proto.events import (
    NEED_DATA,
    Authenticated,
    AuthKeysRequested,
    AuthRequested,
    ConnectionClosing,
    DataAborted,
    DataFinished,
    DataReceived,
    DataStarted,
    Event,
    HeloReceived,
    MailRequested,
    RcptRequested,
    StartTlsRequested,
    TlsInfo,
    TransactionReset,
)
from pigeon.proto.params import (
    MailParams,
    ParamError,
    RcptParams,
    parse_mail_params,
    parse_rcpt_params,
    xtext_decode,
    xtext_encode,
)
from pigeon.proto.reply import Reply
from pigeon.proto.server import ServerSession, SessionConfig
from pigeon.vocab.address import Address, NonAsciiAddressError, PathError, parse_path, split_path

__all__ = [
    "Address",
    "NonAsciiAddressError",
    "PathError",
    "parse_path",
    "split_path",
    "NEED_DATA",
    "ConnectionClosing",
    "DataAborted",
    "DataFinished",
    "DataReceived",
    "DataStarted",
    "Event",
    "HeloReceived",
    "MailRequested",
    "RcptRequested",
    "TransactionReset",
    "AuthKeysRequested",
    "Authenticated",
    "AuthRequested",
    "StartTlsRequested",
    "TlsInfo",
    "MailParams",
    "ParamError",
    "RcptParams",
    "parse_mail_params",
    "parse_rcpt_params",
    "xtext_decode",
    "xtext_encode",
    "Reply",
    "ServerSession",
    "SessionConfig",
]

"""ServerSession: the sans-IO SMTP server state machine (RFC 5321 + extensions).

TODO(H1): implementation. The API below is fixed; the driver
(pigeon.net.smtpd) and the transcript runner are written against it.

    session = ServerSession(SessionConfig(hostname="mx.example"), now=0.0)
    session.start(now)                # queues the 220 greeting
    out = session.data_to_send()      # bytes to write (may be b"")
    session.receive_data(b"EHLO x\\r\\n", now)
    ev = session.next_event()         # an Event, or NEED_DATA
    session.respond(None | Reply)     # answer a DECISION event
    session.next_deadline()           # float | None: when to call on_timer
    session.on_timer(now)             # fires timeouts (421 4.4.2 + ConnectionClosing)
    session.receive_eof()             # the peer closed its side
    session.shutdown()                # SIGTERM drain: 421 at the next command
                                      # boundary (a transaction in DATA finishes first)
    session.closed                    # True once ConnectionClosing was emitted
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Protocol limits and policy switches of one server session."""

    hostname: str = "localhost"
    #: Largest message accepted, in octets (SIZE, RFC 1870). 0 means no limit.
    max_message_size: int = 10_240_000
    #: Recipients per transaction; past it RCPT gets 452 4.5.3 (RFC 5321 §4.5.3.1.8).
    max_recipients: int = 1000
    #: Error replies (4xx/5xx to commands) before 421 and disconnect.
    max_errors: int = 20
    #: Command line limit incl. CRLF (RFC 5321 §4.5.3.1.4 = 512; 4.5.3.1.5 notes
    #: extensions may lengthen it by their parameters, hence the default 2048
    #: applies to MAIL/RCPT with parameters and 512 to the rest).
    max_command_line: int = 512
    max_command_line_with_params: int = 2048
    #: Text line limit in DATA incl. CRLF (RFC 5321 §4.5.3.1.6).
    max_text_line: int = 1000
    #: Received: header count above which a message is a loop (RFC 5321 §6.3).
    hop_limit: int = 100
    #: Seconds a client has to send one whole command line (RFC 5321 §4.5.3.2.7).
    command_timeout: float = 300.0
    #: Seconds of silence allowed while receiving content (§4.5.3.2.5 data block).
    data_timeout: float = 180.0
    #: Seconds a whole DATA/BDAT phase may take at most (drip protection).
    data_deadline: float = 3600.0
    #: What to do with a bare CR or LF in content: "reject" = 521 5.5.2 and close
    #: (like Postfix smtpd_forbid_bare_newline=yes).
    bare_newline: Literal["reject"] = "reject"
    #: 8-bit octets without BODY=8BITMIME: "accept" (recorded, like Postfix) or "reject".
    eight_bit_undeclared: Literal["accept", "reject"] = "accept"
    #: Advertised extensions can be switched off one by one.
    enable_pipelining: bool = True
    enable_chunking: bool = True
    enable_smtputf8: bool = True
    enable_dsn: bool = True
    enable_8bitmime: bool = True

"""SessionConfig: the protocol limits and switches of one SMTP server session.

Contract:
  * A frozen value, made from the configuration by `pigeon.config.load.
    session_config()` and per listener role by `pigeon.net.listener`; the
    session (proto/server.py, proto/secure.py) only reads it.
  * Every field has the default the embedded configuration has; a limit of
    0 means "no limit" where its comment says so.
  * `pigeon.proto.server` re-exports it (`from pigeon.proto.server import
    SessionConfig` keeps working).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["SessionConfig"]


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
    #: NOOP/RSET/VRFY/HELP/ETRN commands allowed (states.VERB_FLAGS junk) since
    #: the session began or its last accepted message; one more gets 421
    #: 4.7.0 and the session closes (Postfix smtpd_junk_command_limit).
    max_junk_commands: int = 100
    #: Command line limit incl. CRLF (RFC 5321 §4.5.3.1.4 = 512; 4.5.3.1.5 notes
    #: extensions may lengthen it by their parameters, hence the default 2048
    #: applies to MAIL/RCPT with parameters and 512 to the rest).
    max_command_line: int = 512
    max_command_line_with_params: int = 2048
    #: Text line limit in DATA incl. CRLF (RFC 5321 §4.5.3.1.6).
    max_text_line: int = 1000
    #: Largest header section (octets up to the empty line) of a message;
    #: bigger gets 552 5.3.4 at the end of the data. 0 = no limit.
    max_header_size: int = 102_400
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
    #: ETRN (RFC 1985): advertised and answered; the driver decides who may.
    #: Off by default: only backup-MX set-ups need it.
    enable_etrn: bool = False
    #: Offer STARTTLS (RFC 3207); the driver must be able to run a handshake.
    starttls: bool = False
    #: SASL mechanisms offered with AUTH (RFC 4954), e.g. ("PLAIN", "LOGIN",
    #: "SCRAM-SHA-256"); empty: AUTH is not offered (502 5.5.1).
    auth_mechanisms: tuple[str, ...] = ()
    #: MAIL needs a successful AUTH first (submission, RFC 6409 §4.3): 530 5.7.0.
    auth_required: bool = False

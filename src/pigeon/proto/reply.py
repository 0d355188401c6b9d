"""SMTP replies: one value type and the catalogue of the replies pigeon sends.

Contract:
  * Every reply the server sends is a `Reply` value. No module builds reply
    strings inline: protocol code picks an entry from this catalogue (or one of
    the small factory functions below) so that codes, enhanced status codes and
    wording stay consistent and testable.
  * `Reply.to_bytes(enhanced=...)` is the only serialisation. Enhanced status
    codes (RFC 2034 §3) are written on every line when the session negotiated
    them (the client said EHLO), and left out otherwise.
  * Reply text never carries internal details (exception text, paths): the
    private cause of a failure goes to the log, the client sees a public reply.

Codes follow RFC 5321 §4.2; enhanced codes follow RFC 3463 and the IANA
registry of enhanced status codes (RFC 5248).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: a three-digit code, an optional enhanced code, text lines."""

    code: int
    enhanced: str | None
    lines: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        if not self.lines:
            raise ValueError("a reply needs at least one line of text")

    @property
    def positive(self) -> bool:
        return self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def to_bytes(self, enhanced: bool = True) -> bytes:
        """Serialise as RFC 5321 §4.2.1 reply lines ("250-..." then "250 ...")."""
        out = []
        last = len(self.lines) - 1
        for i, line in enumerate(self.lines):
            sep = " " if i == last else "-"
            if enhanced and self.enhanced:
                out.append(f"{self.code}{sep}{self.enhanced} {line}\r\n")
            else:
                out.append(f"{self.code}{sep}{line}\r\n")
        return "".join(out).encode("utf-8")

    def __str__(self) -> str:
        return self.to_bytes().decode("utf-8").rstrip("\r\n").replace("\r\n", " / ")


def reply(code: int, enhanced: str | None, *lines: str) -> Reply:
    """Build a Reply from a code, an enhanced code and one or more lines."""
    return Reply(code, enhanced, tuple(lines))


# --- Connection -----------------------------------------------------------


def greeting(hostname: str) -> Reply:
    return reply(220, None, f"{hostname} ESMTP pigeon")


def closing(hostname: str) -> Reply:
    return reply(221, "2.0.0", f"{hostname} closing connection")


def shutting_down(hostname: str) -> Reply:
    # RFC 5321 §3.8: 421 when the service must shut down.
    return reply(421, "4.3.2", f"{hostname} Service shutting down, try again later")


def timeout(hostname: str) -> Reply:
    return reply(421, "4.4.2", f"{hostname} Error: timeout exceeded")


def too_many_errors(hostname: str) -> Reply:
    return reply(421, "4.7.0", f"{hostname} Error: too many errors")


def too_many_junk_commands(hostname: str) -> Reply:
    # Like too many errors: the session is of no use, free the slot (RFC 5321 §3.8 permits 421).
    return reply(421, "4.7.0", f"{hostname} Error: too many junk commands")


def too_many_connections(hostname: str) -> Reply:
    return reply(421, "4.7.0", f"{hostname} Error: too many connections")


def too_many_connections_from_ip(hostname: str) -> Reply:
    return reply(421, "4.7.0", f"{hostname} Error: too many connections from your address")


PREGREET = reply(554, "5.5.0", "Error: SMTP protocol synchronization (talked before greeting)")

# --- Generic command outcomes -----------------------------------------------

OK = reply(250, "2.0.0", "Ok")
RESET_OK = reply(250, "2.0.0", "Ok")
NOOP_OK = reply(250, "2.0.0", "Ok")
SENDER_OK = reply(250, "2.1.0", "Ok")
RECIPIENT_OK = reply(250, "2.1.5", "Ok")
VRFY_CANNOT = reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery")
START_DATA = reply(354, None, "End data with <CR><LF>.<CR><LF>")


def helo_ok(hostname: str) -> Reply:
    return reply(250, None, hostname)


def ehlo_ok(hostname: str, extensions: list[str]) -> Reply:
    # The EHLO reply carries no enhanced code on its lines (RFC 2034 §3 applies
    # to replies after EHLO; Postfix sends the keyword list bare as well).
    return Reply(250, None, (hostname, *extensions))


def help_text() -> Reply:
    return reply(
        214,
        "2.0.0",
        "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
        "See RFC 5321; mail to <postmaster> for help with this server",
    )


def queued(queue_id: str) -> Reply:
    return reply(250, "2.0.0", f"Ok: queued as {queue_id}")


def bdat_chunk_ok(octets: int) -> Reply:
    return reply(250, "2.0.0", f"Ok: {octets} octets received")


# --- Sequence and syntax errors (RFC 5321 §4.2.2, §4.3.2) --------------------

UNKNOWN_COMMAND = reply(500, "5.5.2", "Error: command not recognized")
LINE_TOO_LONG = reply(500, "5.5.2", "Error: line too long")
BAD_LINE_ENDING = reply(500, "5.5.2", "Error: command line must end with <CR><LF>")
NUL_IN_COMMAND = reply(500, "5.5.2", "Error: NUL character in command")
SYNTAX_ERROR = reply(501, "5.5.4", "Syntax error in parameters or arguments")
NOT_IMPLEMENTED = reply(502, "5.5.1", "Error: command not implemented")
BAD_SEQUENCE = reply(503, "5.5.1", "Error: bad sequence of commands")
NEED_HELO = reply(503, "5.5.1", "Error: send HELO/EHLO first")
NEED_MAIL = reply(503, "5.5.1", "Error: need MAIL command")
NEED_RCPT = reply(503, "5.5.1", "Error: need RCPT command")
NESTED_MAIL = reply(503, "5.5.1", "Error: nested MAIL command")
NO_VALID_RECIPIENTS = reply(554, "5.5.1", "Error: no valid recipients")
BDAT_AFTER_DATA_MIX = reply(503, "5.5.1", "Error: DATA not allowed after BDAT in one transaction")
BDAT_FAILED = reply(503, "5.5.1", "Error: an earlier BDAT of this transaction failed; send RSET")
PARAM_UNKNOWN = reply(555, "5.5.4", "Error: unsupported MAIL FROM/RCPT TO parameter")
HELO_SYNTAX = reply(501, "5.5.4", "Syntax: EHLO/HELO hostname")
BAD_SENDER_SYNTAX = reply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT_SYNTAX = reply(501, "5.1.3", "Bad recipient address syntax")
NON_ASCII_ADDRESS = reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
INVALID_UTF8 = reply(501, "5.6.7", "Error: invalid UTF-8 in command")

# --- Size, recipients, resources (RFC 1870, RFC 5321 §4.5.3.1) ---------------

MESSAGE_TOO_BIG = reply(552, "5.3.4", "Error: message size exceeds fixed limit")
HEADER_TOO_BIG = reply(552, "5.3.4", "Error: message header size exceeds fixed limit")
TOO_MANY_RECIPIENTS = reply(452, "4.5.3", "Error: too many recipients")
INSUFFICIENT_STORAGE = reply(
    452, "4.3.1", "Insufficient system storage"
)  # RFC 3463 X.3.1, Postfix's words
LOCAL_ERROR = reply(451, "4.3.0", "Error: queue file write error, try again later")
#: A receive check failed (a bug or an unusable resource of the check): try later.
CHECK_FAILED = reply(451, "4.3.0", "Error: temporary local problem, try again later")

# --- Message content (DATA/BDAT) ------------------------------------------------

BARE_NEWLINE = reply(521, "5.5.2", "Error: bare <CR> or <LF> received (RFC 5321 §2.3.8)")
# In a BDAT chunk the framing is by length, so the session can go on: the
# chunk (and its transaction) is refused without closing the connection.
BARE_NEWLINE_CHUNK = reply(
    554, "5.5.2", "Error: bare <CR> or <LF> in BDAT content (RFC 5321 §2.3.8)"
)
TEXT_LINE_TOO_LONG = reply(
    500, "5.5.2", "Error: message line longer than 1000 octets (RFC 5321 §4.5.3.1.6)"
)
NUL_IN_DATA = reply(554, "5.6.0", "Error: message contains NUL characters")
EIGHT_BIT_UNDECLARED = reply(554, "5.6.0", "Error: 8-bit data requires BODY=8BITMIME")
MAIL_LOOP = reply(554, "5.4.6", "Error: too many hops (mail loop detected)")

# --- ETRN (RFC 1985 §5) ---------------------------------------------------------

ETRN_DENIED = reply(554, "5.7.1", "Error: ETRN access denied")
ETRN_SYNTAX = reply(501, "5.5.4", "Syntax: ETRN domain")
ETRN_QUEUE_UNSUPPORTED = reply(458, "4.3.0", "Error: unable to queue messages for a named queue")


def etrn_started(node: str) -> Reply:
    return reply(250, "2.0.0", f"Queuing for node {node} started")


def etrn_nothing(node: str) -> Reply:
    return reply(251, "2.0.0", f"No messages waiting for node {node}")


# --- Policy (recipients, relaying) ----------------------------------------------

RELAY_DENIED = reply(554, "5.7.1", "Error: relay access denied")
UNKNOWN_USER = reply(550, "5.1.1", "Error: recipient address rejected: user unknown")
#: limits.new_mailboxes_per_hour reached (a rate limit, so 4xx as Postfix's anvil limits).
TOO_MANY_NEW_MAILBOXES = reply(
    450, "4.7.1", "Error: too many new mailboxes from your address, try again later"
)

# --- STARTTLS (RFC 3207) -----------------------------------------------------------

STARTTLS_READY = reply(220, "2.0.0", "Ready to start TLS")
TLS_ALREADY_ACTIVE = reply(503, "5.5.1", "Error: TLS already active")  # RFC 3207 §4.2
TRANSACTION_IN_PROGRESS = reply(503, "5.5.1", "Error: MAIL transaction in progress")
TLS_REQUIRED = reply(530, "5.7.0", "Must issue a STARTTLS command first")  # RFC 3207 §4

# --- AUTH (RFC 4954) ------------------------------------------------------------------

AUTH_OK = reply(235, "2.7.0", "Authentication successful")  # RFC 4954 §6
AUTH_REQUIRED = reply(530, "5.7.0", "Authentication required")  # RFC 4954 §6
AUTH_ALREADY = reply(503, "5.5.1", "Error: already authenticated")  # RFC 4954 §4
AUTH_CANCELLED = reply(501, "5.0.0", "Authentication cancelled")  # RFC 4954 §4 "*"
AUTH_BAD_BASE64 = reply(501, "5.5.2", "Error: cannot decode response")  # RFC 4954 §4
AUTH_BAD_MECHANISM = reply(504, "5.5.4", "Error: unrecognized authentication type")  # RFC 4954 §4
AUTH_FAILED = reply(535, "5.7.8", "Error: authentication failed")  # RFC 4954 §6
AUTH_TEMPORARY = reply(454, "4.7.0", "Error: temporary authentication failure")  # RFC 4954 §6
AUTH_ENCRYPTION_REQUIRED = reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)  # RFC 4954 §6, RFC 5248
AUTH_TOO_MANY_FAILURES = reply(
    421, "4.7.0", "Error: too many failed authentications, try again later"
)
SENDER_NOT_OWNED = reply(553, "5.7.1", "Error: sender address not owned by the authenticated user")
FROM_NOT_OWNED = reply(
    553, "5.7.1", "Error: From: header address not owned by the authenticated user"
)


def auth_challenge(b64: str) -> Reply:
    """334 with a base64 challenge (RFC 4954 §4); the text may be empty."""
    # Reply needs a line; an empty challenge is "334 " on the wire, which
    # to_bytes produces from the empty string (enhanced codes are never
    # put on 334 lines, see RFC 4954 §4).
    return Reply(334, None, (b64,))

"""Command lines: verb recognition and argument grammar (RFC 5321 §4.1).

Contract:
  * `parse_command(line)` takes one command line *without* its CRLF (bytes
    the line buffer already checked for length, bare LF and NUL) and returns
    a `Command` or raises `CommandError` carrying the catalogue reply:
      - invalid UTF-8 -> INVALID_UTF8 (RFC 6531 allows UTF-8 in commands);
      - a verb we know but do not offer (EXPN, ETRN, ...) -> NOT_IMPLEMENTED
        502 5.5.1 (STARTTLS and AUTH are known; the session answers 502
        itself when its configuration does not offer them);
      - anything else unknown -> UNKNOWN_COMMAND 500 5.5.2.
  * Verbs are case-insensitive (RFC 5321 §2.4); `Command.verb` is uppercase.
  * The argument helpers (`mail_argument`, `rcpt_argument`, `bdat_argument`)
    check the per-verb syntax and raise `CommandError` with the reply too.
  * This module decides nothing about state; see `states.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pigeon.proto import reply as R
from pigeon.proto.reply import Reply

KNOWN = frozenset(
    {
        "EHLO",
        "HELO",
        "MAIL",
        "RCPT",
        "DATA",
        "BDAT",
        "RSET",
        "NOOP",
        "QUIT",
        "VRFY",
        "HELP",
        "STARTTLS",
        "AUTH",
        "ETRN",
    }
)
# Recognised but not offered: RFC 5321 §4.2.4 says 502 for these.
UNIMPLEMENTED = frozenset(
    {"EXPN", "TURN", "ATRN", "SEND", "SOML", "SAML", "XCLIENT", "XFORWARD", "BURL"}
)
# Verbs whose command line may carry ESMTP parameters (RFC 5321 §4.5.3.1.4),
# and AUTH with its initial response (RFC 4954 §4).
LONG_LINE_VERBS = (b"MAIL ", b"RCPT ", b"AUTH ")

_BDAT_ARG = re.compile(r"([0-9]{1,20})(?: +(LAST))? *", re.IGNORECASE)  # RFC 3030 §3


class CommandError(ValueError):
    """A command line was refused before reaching the state machine."""

    def __init__(self, reply: Reply, detail: str = "") -> None:
        super().__init__(detail or str(reply))
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Command:
    verb: str  # uppercase
    arg: str  # the text after the verb and its separating space(s)


def parse_command(line: bytes) -> Command:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(R.INVALID_UTF8) from None
    verb, _, arg = text.partition(" ")
    verb = verb.upper()
    if verb in KNOWN:
        return Command(verb, arg.strip(" "))
    if verb in UNIMPLEMENTED:
        raise CommandError(R.NOT_IMPLEMENTED)
    raise CommandError(R.UNKNOWN_COMMAND)


def is_long_line_verb(prefix: bytes | bytearray) -> bool:
    """True when a (possibly partial) line starts with MAIL/RCPT/AUTH + space."""
    return prefix[:5].upper() in LONG_LINE_VERBS


def _after_keyword(arg: str, keyword: str) -> str:
    if arg[: len(keyword)].upper() != keyword:
        raise CommandError(R.SYNTAX_ERROR, f"expected {keyword}")
    return arg[len(keyword) :]


def mail_argument(arg: str) -> str:
    """The text after "FROM:" of `MAIL FROM:<path> [SP params]` (§4.1.1.2)."""
    return _after_keyword(arg, "FROM:")


def rcpt_argument(arg: str) -> str:
    """The text after "TO:" of `RCPT TO:<path> [SP params]` (§4.1.1.3)."""
    return _after_keyword(arg, "TO:")


def bdat_argument(arg: str) -> tuple[int, bool]:
    """(size, last) from `BDAT <size> [LAST]` (RFC 3030 §3)."""
    m = _BDAT_ARG.fullmatch(arg)
    if m is None:
        raise CommandError(R.SYNTAX_ERROR, "bad BDAT argument")
    return int(m.group(1)), m.group(2) is not None

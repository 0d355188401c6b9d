"""Command recognition and argument grammar."""

from __future__ import annotations

import pytest

from pigeon.proto import reply as R
from pigeon.proto.commands import (
    Command,
    CommandError,
    bdat_argument,
    mail_argument,
    parse_command,
    rcpt_argument,
)


@pytest.mark.parametrize(
    "line, cmd",
    [
        (b"EHLO x.example", Command("EHLO", "x.example")),
        (b"ehlo   x.example  ", Command("EHLO", "x.example")),
        (b"mail FROM:<a@b>", Command("MAIL", "FROM:<a@b>")),
        (b"DATA", Command("DATA", "")),
        (b"NoOp", Command("NOOP", "")),
        (b"starttls", Command("STARTTLS", "")),  # the session answers 502 when not offered
        (b"AUTH PLAIN =", Command("AUTH", "PLAIN =")),
    ],
)
def test_parse(line: bytes, cmd: Command) -> None:
    assert parse_command(line) == cmd


@pytest.mark.parametrize(
    "line, reply",
    [
        (b"EXPN x", R.NOT_IMPLEMENTED),
        (b"ATRN", R.NOT_IMPLEMENTED),
        (b"XCLIENT A=B", R.NOT_IMPLEMENTED),
        (b"TURN", R.NOT_IMPLEMENTED),
        (b"FOO", R.UNKNOWN_COMMAND),
        (b"", R.UNKNOWN_COMMAND),
        (b" NOOP", R.UNKNOWN_COMMAND),
        (b"NOOP \xff", R.INVALID_UTF8),
    ],
)
def test_refused(line: bytes, reply) -> None:
    with pytest.raises(CommandError) as exc:
        parse_command(line)
    assert exc.value.reply == reply


def test_arguments() -> None:
    assert mail_argument("from:<a@b> SIZE=1") == "<a@b> SIZE=1"
    assert rcpt_argument("To: <a@b>") == " <a@b>"
    assert bdat_argument("100") == (100, False)
    assert bdat_argument("0 last") == (0, True)
    for bad in ("", "x", "-1", "1 FIRST", "1LAST"):
        with pytest.raises(CommandError):
            bdat_argument(bad)
    with pytest.raises(CommandError):
        mail_argument("TO:<a@b>")

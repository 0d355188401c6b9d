"""The literal-aware IMAP command reader (pigeon.proto.imap.reader)."""

from __future__ import annotations

import pytest

from pigeon.proto.imap.commands import Append, Command, Login
from pigeon.proto.imap.reader import (
    AuthResponse,
    Bad,
    CommandReader,
    Continue,
    IdleDone,
    LineTooLong,
    TooBig,
)

MB = 1024 * 1024


def events(reader: CommandReader, data: bytes) -> list[object]:
    reader.receive(data)
    out = []
    while (ev := reader.next_event()) is not None:
        out.append(ev)
    return out


def test_simple_commands_and_pipelining() -> None:
    r = CommandReader(max_literal=MB)
    evs = events(r, b"a1 NOOP\r\na2 CAPABILITY\r\na3 LOGOUT\r\n")
    assert [(e.tag, e.name) for e in evs if isinstance(e, Command)] == [
        ("a1", "NOOP"),
        ("a2", "CAPABILITY"),
        ("a3", "LOGOUT"),
    ]


def test_partial_line_waits_and_bare_lf_is_accepted() -> None:
    r = CommandReader(max_literal=MB)
    assert events(r, b"a1 NO") == []
    assert events(r, b"OP") == []
    (ev,) = events(r, b"\n")
    assert isinstance(ev, Command) and ev.name == "NOOP"


def test_empty_lines_between_commands_are_ignored() -> None:
    r = CommandReader(max_literal=MB)
    (ev,) = events(r, b"\r\n\r\na NOOP\r\n")
    assert isinstance(ev, Command)


def test_synchronizing_literal_asks_for_continuation() -> None:
    # RFC 9051 §7.5 example: LOGIN with a literal password
    r = CommandReader(max_literal=MB)
    assert events(r, b"A001 LOGIN {11}\r\n") == [Continue()]
    assert r.in_command
    assert events(r, b"FRED FOOBAR {7}\r\n") == [Continue()]
    (ev,) = events(r, b"fat man\r\n")
    assert ev == Command("A001", "LOGIN", args=Login("FRED FOOBAR", b"fat man"))


def test_non_synchronizing_literal_sends_no_continuation() -> None:
    r = CommandReader(max_literal=MB)
    (ev,) = events(r, b"a LOGIN {4+}\r\nuser {4+}\r\npass\r\n")
    assert ev == Command("a", "LOGIN", args=Login("user", b"pass"))


APPEND = (
    b"A003 APPEND saved-messages (\\Seen) {30}\r\n"
    b"Subject: afternoon meeting\r\n\r\n"
    b"\r\n"
    b"A004 NOOP\r\n"
)


@pytest.mark.parametrize("cut", range(1, len(APPEND)))
def test_literal_split_at_every_byte(cut: int) -> None:
    r = CommandReader(max_literal=MB)
    evs = events(r, APPEND[:cut]) + events(r, APPEND[cut:])
    assert evs[0] == Continue()
    append, noop = evs[1:]
    assert isinstance(append, Command) and isinstance(append.args, Append)
    assert append.args.message == b"Subject: afternoon meeting\r\n\r\n"
    assert append.args.flags == ("\\Seen",)
    assert isinstance(noop, Command) and noop.name == "NOOP"


def test_feeding_one_byte_at_a_time() -> None:
    r = CommandReader(max_literal=MB)
    evs = []
    for b in APPEND:
        evs += events(r, bytes([b]))
    assert [type(e).__name__ for e in evs] == ["Continue", "Command", "Command"]


def test_literal_shorter_than_announced_waits_bounded() -> None:
    r = CommandReader(max_literal=100)
    assert events(r, b"a LOGIN u {50}\r\n") == [Continue()]
    assert events(r, b"only ten..\r\n") == []  # waits for the rest; the driver's time-out ends it
    assert r.buffered <= 50


def test_literal_longer_than_announced_is_a_bad_then_resynchronises() -> None:
    r = CommandReader(max_literal=100)
    evs = events(r, b"a LOGIN u {3+}\r\npassword\r\nb NOOP\r\n")
    assert evs[0] == Bad("a", evs[0].text)  # "sword" after the literal breaks the grammar
    assert isinstance(evs[1], Command) and evs[1].tag == "b"


def test_synchronizing_literal_over_the_limit_is_no_toobig_without_buffering() -> None:
    r = CommandReader(max_literal=50 * MB)
    evs = events(r, b"a APPEND INBOX {104857600}\r\n")
    assert evs == [TooBig("a", "NO", close=False)]
    assert r.buffered == 0 and not r.in_command
    (ev,) = events(r, b"b NOOP\r\n")  # the connection carries on
    assert isinstance(ev, Command) and ev.tag == "b"


def test_non_synchronizing_literal_over_the_limit_closes() -> None:
    r = CommandReader(max_literal=50 * MB)
    evs = r.feed(b"a APPEND INBOX {104857600+}\r\n" + b"x" * 65536)
    assert evs == [TooBig("a", "BAD", close=True)]


def test_100mb_of_literal_bytes_after_a_refusal_keep_memory_bounded() -> None:
    """A client that ignores the NO and sends 100 MB anyway: never more than a line is kept."""
    r = CommandReader(max_literal=1 * MB)
    assert events(r, b"a APPEND INBOX {104857600}\r\n") == [TooBig("a", "NO", close=False)]
    chunk = b"y" * (1 * MB)
    seen = []
    for _ in range(100):
        seen += events(r, chunk)
        assert r.buffered <= r.max_line
    assert all(isinstance(e, LineTooLong) for e in seen) or seen == []


def test_line_too_long_is_reported_once_and_skipped() -> None:
    r = CommandReader(max_literal=MB)
    evs = events(r, b"a1 NOOP " + b"x" * 20000)
    assert evs == []
    assert r.buffered == 0
    evs = events(r, b"y" * 10000 + b"\r\na2 NOOP\r\n")
    assert evs[0] == LineTooLong("a1")
    assert isinstance(evs[1], Command) and evs[1].tag == "a2"


def test_command_size_is_bounded_across_literals() -> None:
    r = CommandReader(max_literal=MB, max_command=1000)
    data = b"a LOGIN " + b"u" * 600 + b" {1+}\r\nx" + b"p" * 600 + b"\r\n"
    evs = events(r, data)
    assert evs[0] == TooBig("a", "BAD", close=False)


def test_literal_count_is_bounded() -> None:
    r = CommandReader(max_literal=MB, max_literals=3)
    data = b"a ID (" + b"{1+}\r\nk {1+}\r\nv " * 3 + b")\r\n"
    evs = r.feed(data)
    assert TooBig("a", "BAD", close=True) in evs


def test_nul_in_command_line_is_bad() -> None:
    r = CommandReader(max_literal=MB)
    assert events(r, b"a NO\x00OP\r\n") == [Bad("a", "NUL in command line")]


def test_invalid_tag_before_a_literal_is_refused_without_continuation() -> None:
    r = CommandReader(max_literal=MB)
    (ev,) = events(r, b"+x LOGIN {5}\r\n")
    assert ev == Bad("*", "Invalid command before literal")


def test_no_continuation_for_a_command_that_takes_no_literal() -> None:
    r = CommandReader(max_literal=MB)
    assert events(r, b"a FROB {5}\r\n") == [Bad("a", "Invalid command before literal")]
    assert events(r, b"b NOOP {5}\r\n") == [Bad("b", "Invalid command before literal")]
    assert events(r, b"c UID NOOP {5}\r\n") == [Bad("c", "Invalid command before literal")]
    assert events(r, b"d UID SEARCH TEXT {5}\r\n") == [Continue()]
    r = CommandReader(max_literal=MB)
    # a non-synchronizing literal is read (bounded), then BAD, and the session goes on
    evs = events(r, b"e FROB {5+}\r\nhello\r\nf NOOP\r\n")
    assert isinstance(evs[0], Bad) and evs[0].tag == "e"
    assert isinstance(evs[1], Command) and evs[1].tag == "f"
    evs = events(r, b"+bad {3+}\r\nabc\r\ng NOOP\r\n")
    assert isinstance(evs[0], Bad) and evs[0].tag == "*"
    assert isinstance(evs[1], Command) and evs[1].tag == "g"


def test_unknown_command_and_bad_syntax_are_bad_with_the_tag() -> None:
    r = CommandReader(max_literal=MB)
    evs = events(r, b"t1 FROB\r\nt2 FETCH\r\n*\r\nt3 SELECT\r\n")
    assert [e.tag for e in evs if isinstance(e, Bad)] == ["t1", "t2", "*", "t3"]


def test_idle_done_and_anything_else() -> None:
    r = CommandReader(max_literal=MB)
    evs = r.feed(b"a IDLE\r\nDONE\r\nb NOOP\r\n")
    assert len(evs) == 1 and isinstance(evs[0], Command) and evs[0].name == "IDLE"
    r.expect_idle_done()
    assert r.next_event() == IdleDone(True)
    ev = r.next_event()
    assert isinstance(ev, Command) and ev.tag == "b"
    r.expect_idle_done()
    assert events(r, b"c NOOP\r\n") == [IdleDone(False)]
    r.expect_idle_done()
    assert events(r, b"done\r\n") == [IdleDone(True)]


def test_authenticate_continuation_lines() -> None:
    r = CommandReader(max_literal=MB)
    (ev,) = r.feed(b"a AUTHENTICATE PLAIN\r\nAGZyZWQAcGFzcw==\r\n")
    assert isinstance(ev, Command) and ev.name == "AUTHENTICATE"
    r.expect_auth_response()
    assert r.next_event() == AuthResponse(b"\x00fred\x00pass")
    r.expect_auth_response()
    assert events(r, b"*\r\n") == [AuthResponse(None, cancelled=True)]
    r.expect_auth_response()
    assert events(r, b"not base64!\r\n") == [AuthResponse(None)]
    r.expect_auth_response()
    assert events(r, b"\r\n") == [AuthResponse(b"")]


def test_feed_stops_after_starttls_and_discard_input() -> None:
    # RFC 9051 §6.2.1: commands pipelined after STARTTLS are not read
    r = CommandReader(max_literal=MB)
    evs = r.feed(b"a STARTTLS\r\nb LOGIN u p\r\n")
    assert len(evs) == 1 and isinstance(evs[0], Command) and evs[0].name == "STARTTLS"
    assert r.discard_input() == len(b"b LOGIN u p\r\n")
    assert r.next_event() is None


def test_feed_stops_after_enable_so_the_next_name_is_read_in_the_new_mode() -> None:
    r = CommandReader(max_literal=MB)
    evs = r.feed('a ENABLE UTF8=ACCEPT\r\nb SELECT "Entwürfe"\r\n'.encode())
    assert len(evs) == 1 and isinstance(evs[0], Command) and evs[0].name == "ENABLE"
    r.utf8 = True
    (ev,) = r.feed(b"")
    assert isinstance(ev, Command) and ev.args.mailbox == "Entwürfe"  # type: ignore[union-attr]


def test_utf8_mode_switches_mailbox_decoding() -> None:
    r = CommandReader(max_literal=MB)
    (ev,) = events(r, b"a SELECT Entw&APw-rfe\r\n")
    assert isinstance(ev, Command) and ev.args.mailbox == "Entwürfe"  # type: ignore[union-attr]
    (bad,) = events(r, 'b SELECT "Entwürfe"\r\n'.encode())
    assert isinstance(bad, Bad)
    r.utf8 = True
    (ev,) = events(r, 'c SELECT "Entwürfe"\r\n'.encode())
    assert isinstance(ev, Command) and ev.args.mailbox == "Entwürfe"  # type: ignore[union-attr]


def test_binary_literal8_in_append() -> None:
    r = CommandReader(max_literal=MB)
    evs = events(r, b"a APPEND INBOX ~{3}\r\n\x00\x01\x02\r\n")
    assert evs[0] == Continue()
    assert isinstance(evs[1], Command) and evs[1].args == Append(
        "INBOX", (), None, b"\x00\x01\x02", True
    )
    # literal8 where a string is expected is BAD
    (ev,) = events(r, b"b LOGIN ~{1+}\r\nx p\r\n")
    assert isinstance(ev, Bad)


def test_only_a_logged_in_append_may_send_a_big_literal() -> None:
    big = 1 * MB
    r = CommandReader(max_literal=2 * MB)
    # before login: every literal counts against the 64 KiB command bound
    assert events(r, b"a LOGIN {100000}\r\n") == [TooBig("a", "NO", close=False)]
    assert events(r, b"b APPEND INBOX {%d}\r\n" % big) == [TooBig("b", "NO", close=False)]
    assert r.feed(b"c LOGIN u {70000+}\r\n") == [TooBig("c", "BAD", close=True)]
    r = CommandReader(max_literal=2 * MB)
    r.authenticated = True
    assert events(r, b"d APPEND INBOX {%d}\r\n" % big) == [Continue()]
    (ev,) = events(r, b"x" * big + b"\r\n")
    assert isinstance(ev, Command) and isinstance(ev.args, Append) and len(ev.args.message) == big
    # other commands stay small after login too
    assert events(r, b"e SEARCH TEXT {100000}\r\n") == [TooBig("e", "NO", close=False)]


def test_command_text_over_the_bound_before_a_non_synchronizing_literal_closes() -> None:
    r = CommandReader(max_literal=MB, max_command=100)
    assert r.feed(b"a LOGIN " + b"u" * 200 + b" {5+}\r\nhello\r\n") == [
        TooBig("a", "BAD", close=True)
    ]

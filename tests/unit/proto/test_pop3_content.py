"""A message as POP3 sends it (proto/pop3_content.py): CRLF, byte-stuffing, TOP,
and the size STAT/LIST announce (RFC 1939 §3, §5, §7)."""

from __future__ import annotations

import pytest

from pigeon.proto.pop3_content import MAX_HELD, MessageEncoder, crlf_size

MESSAGE = b"From: a@example.test\nSubject: dots\n\n.starts with a dot\nplain\r\n..two\n.\nlast"


def encode(data: bytes, body_lines=None, step: int | None = None) -> bytes:
    encoder = MessageEncoder(body_lines)
    step = step or len(data) or 1
    out = b"".join(encoder.feed(data[i : i + step]) for i in range(0, len(data), step))
    return out + encoder.finish()


def unstuff(sent: bytes) -> bytes:
    """What a client reads back (RFC 1939 §3): the terminator off, one dot removed."""
    assert sent.endswith(b"\r\n.\r\n") or sent == b".\r\n"
    body = sent[: -len(b".\r\n")]
    return b"".join(
        (line[1:] if line.startswith(b".") else line) for line in body.splitlines(keepends=True)
    )


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, None])
def test_crlf_stuffed_and_terminated_whatever_the_chunks(step):
    sent = encode(MESSAGE, step=step)
    assert sent == (
        b"From: a@example.test\r\nSubject: dots\r\n\r\n..starts with a dot\r\nplain\r\n"
        b"...two\r\n..\r\nlast\r\n.\r\n"
    )
    assert len(unstuff(sent)) == crlf_size(MESSAGE)  # the "exact size" of RFC 1939 §5


def test_a_message_that_ends_with_a_line_ending_gets_no_extra_line():
    sent = encode(b"Subject: x\r\n\r\nbody\r\n")
    assert sent == b"Subject: x\r\n\r\nbody\r\n.\r\n"
    assert crlf_size(b"Subject: x\n\nbody\n") == len(b"Subject: x\r\n\r\nbody\r\n")
    assert encode(b"") == b".\r\n" and crlf_size(b"") == 0


@pytest.mark.parametrize("step", [1, 5, None])
def test_top_sends_the_header_the_blank_line_and_n_body_lines(step):
    assert encode(MESSAGE, 0, step) == b"From: a@example.test\r\nSubject: dots\r\n\r\n.\r\n"
    assert encode(MESSAGE, 2, step) == (
        b"From: a@example.test\r\nSubject: dots\r\n\r\n..starts with a dot\r\nplain\r\n.\r\n"
    )
    assert encode(MESSAGE, 100, step) == encode(MESSAGE)


def test_top_of_a_message_without_a_body_sends_it_whole():
    assert encode(b"Subject: only a header\n", 3) == b"Subject: only a header\r\n.\r\n"


def test_an_endless_line_is_sent_in_pieces_and_only_its_start_is_stuffed():
    encoder = MessageEncoder()
    line = b"." + b"x" * (3 * MAX_HELD)
    out = b""
    for i in range(0, len(line), 4096):
        piece = encoder.feed(line[i : i + 4096])
        assert len(encoder._held) <= MAX_HELD + 4096  # bounded memory
        out += piece
    out += encoder.finish()
    assert out == b"." + line + b"\r\n.\r\n"


def test_a_cr_at_a_piece_boundary_still_ends_its_line():
    encoder = MessageEncoder()
    out = encoder.feed(b"a" * (MAX_HELD + 10) + b"\r")
    out += encoder.feed(b"\n.b\n") + encoder.finish()
    assert out == b"a" * (MAX_HELD + 10) + b"\r\n..b\r\n.\r\n"


@pytest.mark.parametrize("step", [1, 2, 5])
def test_the_size_can_be_counted_piece_by_piece(step):
    for data in (MESSAGE, b"a\r\nb\r\n", b"x\r", b"\r\n\r\n.", b""):
        pieces = [data[i : i + step] for i in range(0, len(data), step)]
        assert crlf_size(pieces) == crlf_size(data)

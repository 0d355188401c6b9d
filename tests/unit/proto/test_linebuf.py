"""CommandLineReader: length limits, strict CRLF, NUL; split invariance."""

from __future__ import annotations

import pytest

from pigeon.proto import reply as R
from pigeon.proto.linebuf import CommandLineReader


def read_all(chunks: list[bytes]) -> list[object]:
    r = CommandLineReader(512, 2048)
    buf = bytearray()
    out: list[object] = []
    for chunk in chunks:
        buf += chunk
        while (item := r.next_line(buf)) is not None:
            out.append(item)
        assert len(buf) <= 2048  # never holds more than the longest line
    return out


STREAM = (
    b"NOOP\r\n"
    + b"NOOP "
    + b"x" * 600
    + b"\r\n"
    + b"MAIL FROM:<a@b> "
    + b"y" * 1000
    + b"\r\n"
    + b"RCPT "
    + b"z" * 3000
    + b"\r\nbare\nNO\rOP\r\nA\x00B\r\n"
    + b"x" * 506
    + b"\r\n"
    + b"x" * 511
    + b"\r\nQUIT\r\n"
)
EXPECTED = [
    b"NOOP",
    R.LINE_TOO_LONG,
    b"MAIL FROM:<a@b> " + b"y" * 1000,
    R.LINE_TOO_LONG,
    R.BAD_LINE_ENDING,
    R.BAD_LINE_ENDING,
    R.NUL_IN_COMMAND,
    b"x" * 506,
    R.LINE_TOO_LONG,
    b"QUIT",
]


def test_stream() -> None:
    assert read_all([STREAM]) == EXPECTED


@pytest.mark.parametrize("step", [1, 7, 100, 511, 512, 513, 2047, 2048, 4000])
def test_split_invariance(step: int) -> None:
    chunks = [STREAM[i : i + step] for i in range(0, len(STREAM), step)]
    assert read_all(chunks) == EXPECTED


def test_every_two_way_split() -> None:
    data = b"EHLO x\r\n" + b"q" * 600 + b"\r\nNOOP\n" + b"MAIL " + b"m" * 100 + b"\r\n"
    whole = read_all([data])
    for cut in range(len(data) + 1):
        assert read_all([data[:cut], data[cut:]]) == whole

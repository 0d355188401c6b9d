"""DATA/BDAT content reading: smuggling defence, unstuffing, limits, split invariance."""

from __future__ import annotations

import pytest
from proto_helpers import in_bdat, in_data

from pigeon.proto import reply as R
from pigeon.proto.content import ContentScanner
from pigeon.proto.datareader import BARE, DONE, MORE, DotReader
from pigeon.proto.events import DataAborted, DataFinished

SMUGGLE = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r\n",
    b"\r\n.\r",
    b"\r.\r",
    b"\n.\r",
    b"\r\n.\rX",
    b"\rX",
    b"X\nY",
    b"\n",
]
SECOND = b"MAIL FROM:<e@x.example>\r\nRCPT TO:<v@d.example>\r\nDATA\r\nevil\r\n.\r\n"


def result(d) -> tuple:
    # Content streamed before a failure depends on where the input was split;
    # the driver discards it on DataAborted, so only kept content is compared.
    aborted = any(isinstance(e, DataAborted) for e in d.events)
    return (None if aborted else bytes(d.content)), d.kinds(), bytes(d.out), d.session.closed


def feed_whole(data: bytes, maker=in_data, **cfg) -> tuple:
    d = maker(**cfg)
    d.send(data)
    return result(d)


def feed_split(data: bytes, cut: int, maker=in_data, **cfg) -> tuple:
    d = maker(**cfg)
    d.send(data[:cut])
    if not d.session.closed:
        d.send(data[cut:])
    return result(d)


def feed_bytewise(data: bytes, maker=in_data, **cfg) -> tuple:
    d = maker(**cfg)
    for i in range(len(data)):
        if d.session.closed:
            break
        d.send(data[i : i + 1])
    return result(d)


CASES = [
    b"Subject: x\r\n\r\nhello\r\n.\r\nNOOP\r\n",
    b".\r\n",
    b"..\r\n...x\r\n.y\r\nz.\r\n.\r\n",
    b"a\r\n.\r\nMAIL FROM:<a@b.example>\r\n",
    b"Received: a\r\nreceived: b\r\nX: y\r\n\r\nReceived: body\r\n.\r\n",
    b"x" * 1200 + b"\r\n.\r\n",
    b"x" * 998 + b"\r\n" + b"y" * 998 + b"\r\n.\r\n",
    b"a\x00b\r\n.\r\n",
    b"caf\xc3\xa9\r\n.\r\n",
    b"x" * 1500 + b"\r" + b"\n.\r\n",
] + [b"Subject: s\r\n\r\nfirst" + s + SECOND for s in SMUGGLE]


@pytest.mark.parametrize("data", CASES, ids=range(len(CASES)))
def test_split_invariance(data: bytes) -> None:
    whole = feed_whole(data)
    for cut in range(len(data) + 1):
        assert feed_split(data, cut) == whole, cut
    assert feed_bytewise(data) == whole


@pytest.mark.parametrize("sep", SMUGGLE)
def test_smuggling_is_refused_and_closes(sep: bytes) -> None:
    d = in_data()
    d.send(b"Subject: s\r\n\r\nfirst" + sep + SECOND)
    assert bytes(d.out) == R.BARE_NEWLINE.to_bytes()
    assert d.kinds() == ["DataAborted", "ConnectionClosing"]
    assert not any(isinstance(e, DataFinished) for e in d.events)
    assert d.session.closed
    d.send(b"NOOP\r\n")  # nothing more is read
    assert bytes(d.out) == R.BARE_NEWLINE.to_bytes()


def test_unstuffing_and_end() -> None:
    content, kinds, out, closed = feed_whole(b"..\r\n...x\r\n.y\r\nz.\r\n.\r\nNOOP\r\n")
    assert content == b".\r\n..x\r\ny\r\nz.\r\n"
    assert kinds == ["DataFinished"]
    assert out == R.queued("Q1").to_bytes() + R.NOOP_OK.to_bytes()
    assert not closed


def test_empty_message() -> None:
    content, kinds, _, _ = feed_whole(b".\r\n")
    assert content == b"" and kinds == ["DataFinished"]


@pytest.mark.parametrize(
    "data, failure",
    [
        (b"x" * 999 + b"\r\n.\r\n", R.TEXT_LINE_TOO_LONG),
        (b"x" * 5000 + b"\r\n.\r\n", R.TEXT_LINE_TOO_LONG),
        (b"a\x00\r\n.\r\n", R.NUL_IN_DATA),
        (b"Received: x\r\n" * 101 + b"\r\n.\r\n", R.MAIL_LOOP),
    ],
)
def test_content_failures_continue_session(data: bytes, failure) -> None:
    d = in_data()
    d.send(data + b"NOOP\r\n")
    assert bytes(d.out) == failure.to_bytes() + R.NOOP_OK.to_bytes()
    assert d.kinds() == ["DataAborted", "TransactionReset"]
    assert d.events[0].reply == failure
    assert not d.session.closed


def test_line_of_exactly_1000_octets_is_fine() -> None:
    content, kinds, _, _ = feed_whole(b"x" * 998 + b"\r\n.\r\n")
    assert kinds == ["DataFinished"] and len(content) == 1000


def test_size_limit_stops_emitting() -> None:
    d = in_data(max_message_size=100)
    d.send(b"x" * 50 + b"\r\n")
    d.send(b"y" * 60 + b"\r\n")
    d.send(b"z" * 60 + b"\r\n.\r\n")
    assert bytes(d.out) == R.MESSAGE_TOO_BIG.to_bytes()
    assert len(d.content) <= 100
    assert d.kinds() == ["DataAborted", "TransactionReset"]


def test_8bit_flag_and_reject() -> None:
    d = in_data()
    d.send(b"caf\xc3\xa9\r\n.\r\n")
    fin = [e for e in d.events if isinstance(e, DataFinished)]
    assert fin and fin[0].eight_bit
    d = in_data(eight_bit_undeclared="reject")
    d.send(b"caf\xc3\xa9\r\n.\r\n")
    assert bytes(d.out) == R.EIGHT_BIT_UNDECLARED.to_bytes()


def test_received_count() -> None:
    d = in_data()
    d.send(b"Received: a\r\nRECEIVED: b\r\nX-Received: c\r\n\r\nReceived: d\r\n.\r\n")
    fin = [e for e in d.events if isinstance(e, DataFinished)]
    assert fin[0].received_headers == 2


def test_partial_line_held_back_is_bounded() -> None:
    scanner = ContentScanner(max_text_line=1000, max_size=0, hop_limit=100, reject_8bit=False)
    reader = DotReader(scanner, 1000)
    buf = bytearray(b"x" * 5000)
    piece, status = reader.read(buf)
    assert status == MORE and len(buf) == 0 and piece is None and scanner.failed
    buf = bytearray(b"y" * 10 + b"\r")
    assert reader.read(buf) == (None, MORE)  # short partial: held
    buf += b"\n.\r\n"
    assert reader.read(buf)[1] == DONE


def test_bare_cr_in_partial_line_detected_at_once() -> None:
    scanner = ContentScanner(max_text_line=1000, max_size=0, hop_limit=100, reject_8bit=False)
    reader = DotReader(scanner, 1000)
    assert reader.read(bytearray(b"ab\rc")) == (None, BARE)


# --- BDAT -----------------------------------------------------------------------

BDAT_CASES = [
    b"BDAT 12\r\nSubject: x\r\nBDAT 8 LAST\r\n\r\nbody\r\nNOOP\r\n",
    b"BDAT 5\r\nab\r\ncBDAT 3 LAST\r\n\r\nxNOOP\r\n",
    b"BDAT 6\r\nab\ncd\rBDAT 1\r\nxNOOP\r\n",
    b"BDAT 3\r\nab\rBDAT 2 LAST\r\n\nxNOOP\r\n",
    b"BDAT 0 LAST\r\nNOOP\r\n",
]


@pytest.mark.parametrize("data", BDAT_CASES, ids=range(len(BDAT_CASES)))
def test_bdat_split_invariance(data: bytes) -> None:
    whole = feed_whole(data, in_bdat)
    for cut in range(len(data) + 1):
        assert feed_split(data, cut, in_bdat) == whole, cut
    assert feed_bytewise(data, in_bdat) == whole


def test_bdat_cr_lf_across_chunks_is_fine() -> None:
    d = in_bdat()
    d.send(b"BDAT 3\r\nab\rBDAT 2 LAST\r\n\nx")
    assert bytes(d.content) == b"ab\r\nx"
    assert d.kinds() == ["DataStarted", "DataFinished"]


def test_bdat_trailing_bare_cr_fails() -> None:
    d = in_bdat()
    d.send(b"BDAT 3 LAST\r\nab\r")
    assert bytes(d.out) == R.BARE_NEWLINE_CHUNK.to_bytes()
    assert not d.session.closed


def test_bdat_refused_start_consumes_octets() -> None:
    d = in_bdat()
    d.auto = False
    d.send(b"BDAT 6\r\nNOOP\r\nBDAT 6 LAST\r\nRSET\r\nNOOP\r\n")
    assert d.kinds() == ["DataStarted"]
    d.session.respond(R.INSUFFICIENT_STORAGE)
    d.pump()
    assert bytes(d.out) == (
        R.INSUFFICIENT_STORAGE.to_bytes() + R.BDAT_FAILED.to_bytes() + R.NOOP_OK.to_bytes()
    )
    assert d.content == b""

"""Property tests: the DATA reader against a slow, obviously-correct reference."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from proto_helpers import in_data

from pigeon.proto import reply as R
from pigeon.proto.events import DataAborted, DataFinished

TOKENS = [b"\r", b"\n", b"\r\n", b".", b"a", b"Received: x", b"\x00", b"\xc3\xa9", b"\r\n.\r\n"]
MAX_LINE = 24


def reference(stream: bytes):
    """Per-line reading of RFC 5321 DATA with strict CRLF; returns
    ("bare",) | ("more",) | ("done", content, failure)."""
    i, out = 0, bytearray()
    while True:
        if stream.startswith(b".\r\n", i):
            break
        j = stream.find(b"\n", i)
        if j == -1:
            return ("bare",) if b"\r" in stream[i:-1] else ("more",)
        line = stream[i : j + 1]
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            return ("bare",)
        out += line[1:] if line.startswith(b".") else line
        i = j + 1
    content = bytes(out)
    lines = content.split(b"\r\n")[:-1]
    failure = None
    if any(len(line) + 2 > MAX_LINE for line in lines):
        failure = R.TEXT_LINE_TOO_LONG
    elif b"\x00" in content:
        failure = R.NUL_IN_DATA
    return ("done", content, failure)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40), st.lists(st.integers(0, 400), max_size=6))
def test_matches_reference(tokens: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(tokens)
    d = in_data(max_text_line=MAX_LINE)
    points = sorted({c % (len(stream) + 1) for c in cuts}) + [len(stream)]
    prev = 0
    for p in points:
        if d.session.closed:
            break
        d.send(stream[prev:p])
        prev = p
    expected = reference(stream)
    kinds = d.kinds()
    if expected[0] == "bare":
        assert kinds == ["DataAborted", "ConnectionClosing"]
        assert d.events[0].reply == R.BARE_NEWLINE
        return
    if expected[0] == "more":
        assert not d.session.closed
        assert not any(isinstance(e, (DataFinished, DataAborted)) for e in d.events)
        return
    _, content, failure = expected
    if failure is None:
        assert kinds[0] == "DataFinished"
        assert bytes(d.content) == content
        assert d.events[0].size == len(content)
    else:
        assert kinds[:2] == ["DataAborted", "TransactionReset"]
        assert d.events[0].reply == failure


def test_long_line_hop_agrees_with_splitting_every_line():
    """_has_long_line (window hops) against the obvious definition, on
    random line lengths around the limit."""
    import random

    from pigeon.proto.content import _has_long_line

    def obvious(data, start, end, limit):
        return max(map(len, data[start:end].split(b"\n"))) + 1 > limit

    rng = random.Random(7)
    for _ in range(5000):
        limit = rng.choice([3, 5, 10, 50, 1000])
        lines = [
            b"x"
            * rng.choice(
                [0, 1, limit - 2, limit - 1, limit, limit + 1, rng.randrange(0, 2 * limit)]
            )
            for _ in range(rng.randrange(1, 8))
        ]
        data = b"h\n" + b"\n".join(lines) + b"\ntail"
        start, end = data.find(b"\n") + 1, data.rfind(b"\n")
        assert _has_long_line(data, start, end, limit) == obvious(data, start, end, limit), (
            limit,
            [len(x) for x in lines],
        )


HEADER_TOKENS = [b"Received: x\r\n", b"X: y\r\n", b" folded\r\n", b"\r\n", b"body\r\n"]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(HEADER_TOKENS), min_size=1, max_size=30),
    st.lists(st.integers(0, 400), max_size=6),
    st.integers(1, 120),
)
def test_header_size_limit_does_not_depend_on_the_split(tokens, cuts, limit):
    from pigeon.proto.content import ContentScanner

    content = b"".join(tokens)
    end = content.find(b"\r\n\r\n")
    if content.startswith(b"\r\n"):
        header = 0  # no header fields at all
    else:
        header = end + 2 if end != -1 else len(content)
    scanner = ContentScanner(
        max_text_line=1000, max_size=0, hop_limit=2, reject_8bit=False, max_header_size=limit
    )
    points = sorted({c % (len(content) + 1) for c in cuts}) + [len(content)]
    prev = 0
    for p in points:
        assert scanner.feed(content[prev:p])
        prev = p
    assert scanner.finish()
    if header > limit:
        assert scanner.failure == R.HEADER_TOO_BIG
    else:
        assert scanner.header_size == header
        assert scanner.failure in (None, R.MAIL_LOOP)
        assert (scanner.failure == R.MAIL_LOOP) == (content[:header].count(b"Received:") > 2)

"""ENVELOPE, BODYSTRUCTURE, BODY[section] (pigeon.proto.imap.mime, sections, fetchrender).

The fixture messages in tests/fixtures/imap/messages/ were fetched from
Dovecot (tests/fixtures/imap/capture_dovecot.py -> dovecot.json); our answers
must read as the same values. When Dovecot is installed the capture is
re-run, so the file cannot drift from what Dovecot really says.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pytest
from imap_values import parse_fetch

from pigeon.proto.imap import response as R
from pigeon.proto.imap.fetchrender import content_item, needs_content, needs_structure
from pigeon.proto.imap.fetchspec import FetchAtt, Section, parse_fetch_atts
from pigeon.proto.imap.lexer import Cursor, RawCommand
from pigeon.proto.imap.mime import MAX_DEPTH, Part, bodystructure, parse_structure
from pigeon.proto.imap.sections import UnknownEncoding, binary_bytes, find_part, section_bytes

FIXTURES = Path(__file__).parents[2] / "fixtures" / "imap"
sys.path.insert(0, str(FIXTURES))
import capture_dovecot  # noqa: E402

DOVECOT = json.loads((FIXTURES / "dovecot.json").read_text())
#: Where we knowingly differ from Dovecot on broken input (both answers are
#: valid IMAP): Dovecot invents an empty text/plain child for a multipart
#: without a boundary and writes SYNTAX_ERROR for an unclosed "<"; the
#: BINARY of a multipart is its octets as they are, where Dovecot re-encodes
#: every part inside as binary.
DIFFERENT = {
    "malformed": {"ENVELOPE"},
    "nested_related": {"BINARY[1]", "BINARY.SIZE[1]"},
}


def atts(items: str) -> tuple[FetchAtt, ...]:
    return parse_fetch_atts(Cursor(RawCommand((f"({items})".encode(),), ())))


def ours(data: bytes, items: str) -> bytes:
    root = parse_structure(data)
    return R.fetch_response(1, [content_item(a, data, root) for a in atts(items)])


def fixture(name: str) -> bytes:
    return (FIXTURES / "messages" / f"{name}.eml").read_bytes()


@pytest.mark.parametrize("name", sorted(DOVECOT))
def test_fetch_matches_dovecot(name: str) -> None:
    data = fixture(name)
    theirs = parse_fetch(DOVECOT[name]["fetch"].encode("latin-1"))
    mine = parse_fetch(ours(data, capture_dovecot.ITEMS))
    assert mine.keys() == theirs.keys()
    for key in theirs:
        if key in DIFFERENT.get(name, ()):
            continue
        assert mine[key] == theirs[key], key


@pytest.mark.parametrize("name", sorted(DOVECOT))
def test_binary_matches_dovecot(name: str) -> None:
    data = fixture(name)
    answer = DOVECOT[name]["binary"]
    if "[UNKNOWN-CTE]" in answer:
        with pytest.raises(UnknownEncoding):
            ours(data, capture_dovecot.BINARY_ITEMS)
        return
    mine = parse_fetch(ours(data, capture_dovecot.BINARY_ITEMS))
    theirs = parse_fetch(answer.encode("latin-1"))
    assert mine.keys() == theirs.keys()
    for key in theirs:
        if key not in DIFFERENT.get(name, ()):
            assert mine[key] == theirs[key], key


def test_capture_is_what_dovecot_says(tmp_path: Path) -> None:
    from pigeon.testing.live import require_tool

    require_tool("dovecot")
    if not Path(capture_dovecot.IMAP).exists():
        pytest.fail(f"{capture_dovecot.IMAP} missing: install dovecot-imapd")
    fresh = capture_dovecot.capture()
    for name, entry in DOVECOT.items():
        for key in ("fetch", "binary"):
            # the timing in Dovecot's tagged NO differs from run to run
            assert parse_or_line(fresh[name][key]) == parse_or_line(entry[key]), (name, key)


def parse_or_line(text: str) -> object:
    if text.startswith("*"):
        return parse_fetch(text.encode("latin-1"))
    return text.split(" (")[0]


def test_structure_is_cacheable_as_json_and_pickle() -> None:
    for name in DOVECOT:
        root = parse_structure(fixture(name))
        again = Part.from_data(json.loads(json.dumps(root.to_data())))
        assert again == root
        assert pickle.loads(pickle.dumps(root)) == root
        assert bodystructure(again) == bodystructure(root)


def nested(depth: int) -> bytes:
    head = b"From: a@example.test\r\nSubject: deep\r\n"
    out = b""
    for level in range(depth):
        out += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
    out += b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    for level in reversed(range(depth)):
        out += b"--b%d--\r\n" % level
    return head + out


def test_nesting_depth_1000_is_served_flat_without_recursion_error() -> None:
    data = nested(1000)
    root = parse_structure(data)
    depth, node = 0, root
    while node.children:
        node = node.children[0]
        depth += 1
    assert depth == MAX_DEPTH
    assert (node.type, node.subtype) == ("application", "octet-stream")
    encoded = bodystructure(root)
    assert encoded.count(b"(") == encoded.count(b")")
    # the flat leaf is still fetchable by part number
    flat = section_bytes(data, root, Section((1,) * MAX_DEPTH))
    assert flat.startswith(b"--b%d" % MAX_DEPTH)
    assert Part.from_data(json.loads(json.dumps(root.to_data()))) == root


def test_nested_message_rfc822_depth_is_bounded() -> None:
    data = b"Subject: leaf\r\n\r\nbody\r\n"
    for _ in range(200):
        data = b"Content-Type: message/rfc822\r\n\r\n" + data
    root = parse_structure(data)
    encoded = bodystructure(root)
    assert encoded.count(b"message") <= MAX_DEPTH * 2


def test_many_parts_are_bounded() -> None:
    parts = b"".join(b"--x\r\nContent-Type: text/plain\r\n\r\n%d\r\n" % i for i in range(5000))
    data = b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n' + parts + b"--x--\r\n"
    root = parse_structure(data)
    assert 1 < len(root.children) <= 2000


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n",
        b"\xff\xfe\x00garbage",
        b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n",
        b'Content-Type: multipart/mixed; boundary="a"\r\n\r\n--a\r\n--a\r\n--a--',
        b"Content-Type: message/rfc822\r\n\r\n",
        b'Content-Type: ;;;==="\r\nContent-Disposition: ;\r\n\r\nx',
        b'From: <<<<\r\nTo: "unterminated\r\nCc: (comment (nested\r\n\r\n',
        b"Subject: \xc3\x28 bad utf-8\r\n\r\n\x80\x81",
        b"no header at all, just text\nand more\n",
        b"\tcontinuation first\r\nFrom: a@b\r\n\r\n",
    ],
)
def test_malformed_input_gives_a_structure_never_an_exception(data: bytes) -> None:
    root = parse_structure(data)
    everything = (
        "ENVELOPE BODYSTRUCTURE BODY BODY[] BODY[1] BODY[1.MIME] BODY[HEADER] BODY[TEXT] "
        + (
            "BODY[1.1] BODY[2.HEADER] BODY[HEADER.FIELDS (From)] RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE"
        )
    )
    out = R.fetch_response(1, [content_item(a, data, root) for a in atts(everything)])
    assert parse_fetch(out)  # reads back as a well-formed response


def test_eight_bit_header_values_are_sent_back_unchanged() -> None:
    data = b"Subject: caf\xe9 \xff\r\nFrom: J\xc3\xb6rg <j@example.test>\r\n\r\nx"
    env = parse_fetch(ours(data, "ENVELOPE"))["ENVELOPE"]
    assert isinstance(env, list)
    assert env[1] == b"caf\xe9 \xff"
    assert env[2] == [[b"J\xc3\xb6rg", None, b"j", b"example.test"]]


def test_sections_of_a_forwarded_message() -> None:
    data = fixture("forwarded")
    root = parse_structure(data)
    inner = find_part(root, (2,))
    assert inner is not None and inner.message is not None
    assert section_bytes(data, root, Section((2,), "HEADER")).startswith(b'From: "Carol C"')
    assert section_bytes(data, root, Section((2, 1))) == b"hi there"
    assert section_bytes(data, root, Section((2, 2))) == b"<b>hi there</b>"
    assert section_bytes(data, root, Section((2, 2), "MIME")) == b"Content-Type: text/html\r\n\r\n"
    assert section_bytes(data, root, Section((9,))) == b""
    assert find_part(root, (2, 1, 1)) == find_part(
        root, (2, 1)
    )  # a leaf's ".1" is itself (Dovecot)
    assert find_part(root, (1, 1, 1)) is not None and find_part(root, (3,)) is None


def test_binary_undoes_the_transfer_encoding() -> None:
    data = fixture("alternative")
    root = parse_structure(data)
    assert binary_bytes(data, root, (1,)) == "Grüße".encode()
    data = fixture("mixed_attachment")
    root = parse_structure(data)
    assert binary_bytes(data, root, (2,)) == b"%PDF-1"
    out = ours(b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n", "BINARY[1]")
    assert b"~{3}\r\n\x00\x01\x02" in out  # NUL: literal8 (RFC 3516 §4.2)


def test_what_needs_the_file() -> None:
    flags_only = atts("FLAGS UID INTERNALDATE MODSEQ RFC822.SIZE")
    assert not any(needs_content(a) for a in flags_only)
    assert all(needs_content(a) for a in atts("ENVELOPE BODY[] RFC822.HEADER"))
    assert needs_structure(atts("BODYSTRUCTURE")[0]) and not needs_structure(atts("RFC822")[0])


def test_store_items_and_lenient_base64() -> None:
    import datetime as dt

    from pigeon.proto.imap.fetchrender import store_item

    when = dt.datetime(2024, 2, 1, 9, 5, 3, tzinfo=dt.UTC)
    items = [
        store_item(a, uid=7, flags=["\\Seen", "$Junk"], internaldate=when, modseq=12)
        for a in atts("FLAGS UID INTERNALDATE MODSEQ")
    ]
    assert R.fetch_response(3, items) == (
        b'* 3 FETCH (FLAGS (\\Seen $Junk) UID 7 INTERNALDATE " 1-Feb-2024 09:05:03 +0000" '
        b"MODSEQ (12))\r\n"
    )
    # RFC 2045 §6.8: characters outside the alphabet are ignored, a ragged end completed
    data = b"Content-Transfer-Encoding: base64\r\n\r\nQU!!JD\r\nRA\r\n"
    assert binary_bytes(data, parse_structure(data), (1,)) == b"ABCD"


@pytest.mark.parametrize("name", sorted(DOVECOT))
def test_fast_paths_answer_as_the_tree_does(name: str) -> None:
    """ENVELOPE and top-level sections without the MIME tree == with it."""
    data = fixture(name)
    root = parse_structure(data)
    for att in atts(
        capture_dovecot.ITEMS + " RFC822 RFC822.HEADER RFC822.TEXT BINARY[] BINARY.SIZE[]"
    ):
        assert content_item(att, data) == content_item(att, data, root), att


HOSTILE = {
    # each was quadratic once or could be: a slow run here is the regression
    "folded-200k-lines": b"X: a\r\n" + b" x\r\n" * 200_000 + b"\r\nbody",
    "angle-colons": b"To: " + b"<a>:" * 100_000 + b"\r\n\r\n",
    "semicolons-in-quotes": b"Content-Type: text/plain" + b'; a="x' * 100_000 + b"\r\n\r\n",
    "open-comments": b"From: " + b"(" * 100_000 + b"\r\n\r\n",
    "near-boundaries": b"Content-Type: multipart/mixed; boundary=a\r\n\r\n" + b"--ab\r\n" * 100_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_headers_are_read_in_linear_time(name: str) -> None:
    data = HOSTILE[name]
    root = parse_structure(data)
    items = [
        content_item(a, data, root) for a in atts("ENVELOPE BODYSTRUCTURE BODY[HEADER.FIELDS (X)]")
    ]
    assert parse_fetch(R.fetch_response(1, items))
    assert len(root.params) <= 100 + 1  # MAX_PARAMS, and the default charset written out

"""Property and fuzz tests of the IMAP protocol core (pigeon.proto.imap).

CI runs a short default; `make fuzz` runs many more examples
(PIGEON_FUZZ_EXAMPLES) and the atheris entry points atheris_imap_*.py.
Properties (imap_targets.py):
  * the command reader, fed random octets or IMAP-shaped token soup in
    pieces of any size, yields only its documented events, never raises,
    and keeps at most max(max_line, max_literal) octets after each drain;
  * the same input gives the same events whatever the piece size;
  * the MIME structure, every content FETCH item and the text SEARCH keys
    take any octets without an exception but UnknownEncoding;
  * modified UTF-7: encode/decode round trips both ways;
  * the response encoder's strings read back as the same octets.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import imap_targets as targets
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pigeon.proto.imap import mutf7
from pigeon.proto.imap import response as R

EXAMPLES = int(os.environ.get("PIGEON_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TOKENS = [
    b"a1 ",
    b"* ",
    b"+ ",
    b"UID ",
    b"FETCH ",
    b"SEARCH ",
    b"APPEND ",
    b"LOGIN ",
    b"SELECT ",
    b"LIST ",
    b"STORE ",
    b"IDLE",
    b"AUTHENTICATE PLAIN",
    b"DONE",
    b"1:* ",
    b"(",
    b")",
    b"[",
    b"]",
    b"<0.10>",
    b'"',
    b"\\",
    b" ",
    b"{0}",
    b"{3}",
    b"{5+}",
    b"~{2}",
    b"{99999999999}",
    b"{12+}",
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b"\xff\xc3\xa9",
    b"BODY.PEEK[1.2.HEADER.FIELDS (From)]",
    b"OR NOT ",
    b"CHARSET UTF-8 ",
    b"INBOX",
    b"&AGE-",
    b"=",
    b"AGE=",
]
soup = st.lists(st.sampled_from(TOKENS), max_size=60).map(b"".join)


@FUZZ
@given(st.binary(max_size=2000))
@example(b"\x00\x00a APPEND INBOX {104857600+}\r\n")
@example(b"\x01\x7f" + b"x" * 5000)
def test_reader_takes_any_octets(data: bytes) -> None:
    targets.imap_reader_target(data)


@FUZZ
@given(soup, st.integers(1, 64), st.integers(0, 64))
def test_reader_takes_imap_shaped_soup(data: bytes, split: int, max_literal: int) -> None:
    targets.run_reader(data, split, max_literal)


@FUZZ
@given(soup, st.integers(1, 16))
def test_events_do_not_depend_on_how_the_bytes_arrive(data: bytes, split: int) -> None:
    whole = targets.run_reader(data, max(len(data), 1), 64)
    pieces = targets.run_reader(data, split, 64)
    assert pieces == whole


@FUZZ
@given(st.binary(max_size=3000))
def test_mime_takes_any_octets(data: bytes) -> None:
    targets.imap_mime_target(data)


MIME_TOKENS = [
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/plain; charset=utf-8\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b'Content-Disposition: attachment; filename="a"\r\n',
    b"From: a <b@c>\r\n",
    b"Subject: =?utf-8?q?x?=\r\n",
    b"\r\n",
    b"--b\r\n",
    b"--b--\r\n",
    b"QUJD\r\n",
    b"=C3=A9=\r\n",
    b"\xff\xfe",
    b" folded\r\n",
    b"no colon\r\n",
]


@FUZZ
@given(st.lists(st.sampled_from(MIME_TOKENS), max_size=80).map(b"".join))
def test_mime_takes_mime_shaped_soup(data: bytes) -> None:
    targets.imap_mime_target(data)


@FUZZ
@given(st.text(max_size=60))
@example("~peter/mail/台北/日本語")
@example("&&-&")
def test_mutf7_round_trip(name: str) -> None:
    encoded = mutf7.encode(name)
    assert encoded.isascii() and all(0x20 <= ord(c) <= 0x7E for c in encoded)
    assert mutf7.decode(encoded) == name


@FUZZ
@given(st.binary(max_size=80))
def test_mutf7_decode_is_strict(data: bytes) -> None:
    targets.mutf7_target(data)


_QUOTED = re.compile(rb'^"((?:[^"\\\r\n]|\\["\\])*)"$', re.S)
_LITERAL = re.compile(rb"^\{(\d+)\}\r\n", re.S)


@FUZZ
@given(st.binary(max_size=300), st.booleans())
def test_encoded_strings_read_back(data: bytes, utf8: bool) -> None:
    out = R.string(data, utf8)
    quoted = _QUOTED.match(out)
    if quoted:
        assert re.sub(rb"\\(.)", rb"\1", quoted.group(1), flags=re.S) == data
        assert utf8 or data.isascii()
    else:
        literal = _LITERAL.match(out)
        assert literal is not None and out[literal.end() :] == data
        assert int(literal.group(1)) == len(data)


SEEDS = sorted((Path(__file__).parent / "corpus").glob("imap_*/*"))


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_imap_corpus_seed(seed) -> None:
    {"imap_reader": targets.imap_reader_target, "imap_mime": targets.imap_mime_target}[
        seed.parent.name
    ](seed.read_bytes())

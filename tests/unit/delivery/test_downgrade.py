"""8bit -> 7bit conversion (RFC 6152 §3): QP for text, base64 for the rest, headers kept."""

from __future__ import annotations

import base64
import io
import quopri

import pytest

from pigeon.delivery.downgrade import DowngradeError, convert_to_temp, downgrade_to_7bit
from pigeon.testing.fakes import BytesContent

HEAD = (
    b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: hello\r\n  folded subject\r\n"
    b"MIME-Version: 1.0\r\n"
)


def convert(tmp_path, raw: bytes) -> bytes:
    out = io.BytesIO()
    n = downgrade_to_7bit(BytesContent(raw), out)
    assert n == len(out.getvalue())
    return out.getvalue()


def test_text_part_becomes_quoted_printable_headers_untouched(tmp_path):
    raw = (
        HEAD + b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"\r\ncaf\xc3\xa9\r\nFrom here\r\n.dot\r\n"
    )
    out = convert(tmp_path, raw)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(HEAD.rstrip(b"\r\n"))  # folding and order kept
    assert b"Content-Transfer-Encoding: quoted-printable" in head
    assert head.count(b"Content-Transfer-Encoding") == 1
    assert all(b < 128 for b in out) and b"\n" not in out.replace(b"\r\n", b"")
    assert quopri.decodestring(body).replace(b"\r\n", b"\n") == "café\nFrom here\n.dot\n".encode()


def test_multipart_binary_part_becomes_base64_seven_bit_parts_kept(tmp_path):
    blob = bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b"")
    raw = (
        HEAD + b'Content-Type: multipart/mixed; boundary="BB"\r\n'
        b"Content-Transfer-Encoding: 8bit\r\n\r\npreamble\r\n"
        b"--BB\r\nContent-Type: text/plain\r\n\r\nplain ascii\r\n"
        b"--BB\r\nContent-Type: application/octet-stream\r\n\r\n" + blob + b"\r\n--BB--\r\n"
    )
    out = convert(tmp_path, raw)
    assert all(b < 128 for b in out)
    assert b"Content-Transfer-Encoding: 7bit" in out  # the container
    assert b"Content-Type: text/plain\r\n\r\nplain ascii\r\n" in out
    b64 = out.split(b"Content-Transfer-Encoding: base64\r\n\r\n")[1].split(b"\r\n--BB")[0]
    assert base64.b64decode(b64) == blob


def test_eight_bit_header_cannot_be_converted(tmp_path):
    with pytest.raises(DowngradeError) as e:
        convert(tmp_path, b"Subject: caf\xc3\xa9\r\n\r\nbody\r\n")
    assert e.value.status == "5.6.3"


def test_the_conversion_for_a_peer_is_a_private_temporary_file(tmp_path):
    raw = HEAD + b"Content-Type: text/plain\r\n\r\ncaf\xc3\xa9\r\n"
    converted = convert_to_temp(BytesContent(raw))
    try:
        with converted.open() as fh:
            data = fh.read()
        assert data.isascii() and converted.size == len(data)
        assert (converted.path.stat().st_mode & 0o777) == 0o600
    finally:
        converted.remove()
    assert not converted.path.exists()
    with pytest.raises(DowngradeError):  # nothing left behind when impossible
        convert_to_temp(BytesContent(b"Subject: caf\xc3\xa9\r\n\r\nx\r\n"))

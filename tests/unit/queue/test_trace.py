"""The Received: field (RFC 5321 §4.4)."""

from email import message_from_bytes

from hypothesis import given
from hypothesis import strategies as st

from pigeon.queue.trace import received_header, transmission_type


def test_single_recipient_has_for_clause():
    h = received_header(
        helo="client.example",
        client_ip="192.0.2.7",
        hostname="mx.test",
        protocol="ESMTP",
        queue_id="ABC123",
        recipients=["bob@example.org"],
        timestamp=0,
    )
    assert h == (
        b"Received: from client.example ([192.0.2.7])\r\n"
        b"\tby mx.test (pigeon) with ESMTP id ABC123\r\n"
        b"\tfor <bob@example.org>; Thu, 01 Jan 1970 00:00:00 +0000\r\n"
    )


def test_several_recipients_are_not_disclosed():
    h = received_header(
        helo="c",
        client_ip="2001:db8::1",
        hostname="mx.test",
        protocol="ESMTP",
        queue_id="Q",
        recipients=["a@x", "b@y"],
        timestamp=0,
    )
    assert b"for <" not in h and b"a@x" not in h
    assert b"([IPv6:2001:db8::1])" in h
    msg = message_from_bytes(h + b"\r\nbody")
    assert msg["Received"].split(";")[-1].strip().startswith("Thu, 01 Jan 1970")


def test_helo_cannot_inject_header_fields():
    h = received_header(
        helo="evil\r\nBcc: x@y",
        client_ip="127.0.0.1",
        hostname="mx",
        protocol="SMTP",
        queue_id="Q",
        recipients=["a@b"],
        timestamp=0,
    )
    assert h.count(b"\r\n") == 3 and b"\r\nBcc" not in h


def test_transmission_types():
    assert transmission_type(False, False) == "SMTP"
    assert transmission_type(True, False) == "ESMTP"
    assert transmission_type(True, True) == "UTF8SMTP"


def test_transmission_types_with_tls_and_auth():
    # RFC 3848 and RFC 6531 §3.7.3: S for TLS, A for AUTH.
    assert transmission_type(True, False, tls=True) == "ESMTPS"
    assert transmission_type(True, False, auth=True) == "ESMTPA"
    assert transmission_type(True, False, tls=True, auth=True) == "ESMTPSA"
    assert transmission_type(True, True, tls=True, auth=True) == "UTF8SMTPSA"
    assert transmission_type(True, True, tls=True) == "UTF8SMTPS"
    assert transmission_type(False, False, tls=True) == "SMTP"


def test_tls_version_and_cipher_in_a_comment():
    from pigeon.proto.events import TlsInfo

    h = received_header(
        helo="c",
        client_ip="192.0.2.7",
        hostname="mx.test",
        protocol="ESMTPSA",
        queue_id="Q",
        recipients=["a@b"],
        timestamp=0,
        tls=TlsInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256),
    )
    assert (
        b"\tby mx.test (pigeon) with ESMTPSA (using TLSv1.3 with cipher "
        b"TLS_AES_256_GCM_SHA384 (256 bits)) id Q\r\n"
    ) in h


@given(st.text(max_size=300) | st.text(alphabet="ab.()\\\r\n\t\x00é", max_size=40))
def test_cleaning_keeps_printable_text_and_replaces_everything_else(text):
    from pigeon.queue.trace import _clean

    expected = "".join(ch if ch.isprintable() and ch not in "()\\" else "?" for ch in text)
    assert _clean(text) == expected[:255]

"""ARC sealing (forwarding/arc.py): sets that dkimpy's own verifier accepts.

The keys are published in a dict standing for DNS here; the end-to-end test
(tests/e2e/test_forwarding.py) does the same through a real DNS server.
"""

from __future__ import annotations

import base64

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pigeon.forwarding.arc import ArcError, ArcSealer

NOW = 1_796_000_000
MESSAGE = (
    b"Received: from client.example by mx.first.example; Sun, 6 Dec 2026 07:00:00 +0000\r\n"
    b"From: Alice <alice@origin.example>\r\n"
    b"To: fwd@first.example\r\n"
    b"Subject: forwarded\r\n"
    b"\r\n"
    b"Hello,\r\nthis goes on.\r\n"
)


def _key() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


@pytest.fixture(scope="module")
def keys():
    return _key(), _key()


def _zone(**records: str):
    def lookup(name: str) -> str | None:
        return records.get(name)

    def dnsfunc(name, timeout=5):
        text = lookup((name.decode() if isinstance(name, bytes) else name).rstrip("."))
        return text.encode() if text is not None else None

    return lookup, dnsfunc


def _verify(message: bytes, dnsfunc):
    cv, sets, reason = dkim.arc_verify(message, dnsfunc=dnsfunc)
    return cv, sets, reason


def test_first_seal_verifies_with_cv_none(keys):
    (pem, record), _ = keys
    lookup, dnsfunc = _zone(**{"sel._domainkey.first.example": record})
    sealer = ArcSealer("first.example", "sel", pem, "mx.first.example")
    fields = sealer.seal(MESSAGE, now=NOW, verify_chain=lookup)
    sealed = fields + MESSAGE
    cv, sets, reason = _verify(sealed, dnsfunc)
    assert cv == dkim.CV_Pass, reason
    assert [s["cv"] for s in sets] == [b"none"]
    assert fields.startswith(b"ARC-Seal: i=1; cv=none;")
    assert b"ARC-Authentication-Results: i=1; mx.first.example;" in fields


def test_aar_copies_our_topmost_authentication_results(keys):
    (pem, record), _ = keys
    lookup, dnsfunc = _zone(**{"sel._domainkey.first.example": record})
    message = (
        b"Authentication-Results: mx.first.example;\r\n spf=pass smtp.mailfrom=origin.example;"
        b"\r\n dkim=pass header.d=origin.example\r\n"
        b"Authentication-Results: elsewhere.example; spf=fail\r\n"
        b"Authentication-Results: mx.first.example; spf=softfail\r\n" + MESSAGE
    )
    fields = ArcSealer("first.example", "sel", pem, "mx.first.example").seal(
        message, now=NOW, verify_chain=lookup
    )
    aar = fields.split(b"ARC-Authentication-Results:", 1)[1]
    assert b"spf=pass smtp.mailfrom=origin.example" in aar
    assert b"dkim=pass header.d=origin.example" in aar
    assert b"softfail" not in aar and b"elsewhere" not in aar
    cv, _, reason = _verify(fields + message, dnsfunc)
    assert cv == dkim.CV_Pass, reason


def test_second_hop_verifies_the_chain_and_seals_pass(keys):
    (pem1, record1), (pem2, record2) = keys
    lookup, dnsfunc = _zone(
        **{"sel._domainkey.first.example": record1, "s2._domainkey.second.example": record2}
    )
    once = ArcSealer("first.example", "sel", pem1, "mx.first.example")
    hop1 = once.seal(MESSAGE, now=NOW, verify_chain=lookup) + MESSAGE
    twice = ArcSealer("second.example", "s2", pem2, "mx.second.example")
    hop2 = twice.seal(hop1, now=NOW + 60, verify_chain=lookup) + hop1
    cv, sets, reason = _verify(hop2, dnsfunc)
    assert cv == dkim.CV_Pass, reason
    assert sorted(s["cv"] for s in sets) == [b"none", b"pass"]


def test_a_broken_chain_is_sealed_fail(keys):
    (pem1, record1), (pem2, record2) = keys
    lookup, _ = _zone(
        **{"sel._domainkey.first.example": record1, "s2._domainkey.second.example": record2}
    )
    hop1 = ArcSealer("first.example", "sel", pem1, "mx.first.example").seal(
        MESSAGE, now=NOW, verify_chain=lookup
    ) + MESSAGE.replace(b"this goes on", b"this was changed")
    fields = ArcSealer("second.example", "s2", pem2, "mx.second.example").seal(
        hop1, now=NOW, verify_chain=lookup
    )
    assert b"cv=fail" in fields


def test_our_arc_result_is_the_cv(keys):
    (pem1, record1), (pem2, _) = keys
    lookup, _ = _zone(**{"sel._domainkey.first.example": record1})
    hop1 = (
        ArcSealer("first.example", "sel", pem1, "mx.first.example").seal(
            MESSAGE, now=NOW, verify_chain=lookup
        )
        + MESSAGE
    )
    claimed = b"Authentication-Results: mx.second.example; arc=fail\r\n" + hop1
    asked: list[str] = []

    def never(name: str) -> str | None:
        asked.append(name)
        return None

    fields = ArcSealer("second.example", "s2", pem2, "mx.second.example").seal(
        claimed, now=NOW, verify_chain=never
    )
    assert b"cv=fail" in fields and asked == []


def test_message_without_from_cannot_be_sealed(keys):
    (pem, _), _ = keys
    with pytest.raises(ArcError):
        ArcSealer("first.example", "sel", pem, "mx.first.example").seal(
            b"Subject: no sender\r\n\r\nbody\r\n", now=NOW, verify_chain=lambda name: None
        )


def test_results_that_do_not_parse_still_give_a_seal(keys):
    (pem, record), _ = keys
    lookup, dnsfunc = _zone(**{"sel._domainkey.first.example": record})
    message = b"Authentication-Results: mx.first.example; spf=pass (unclosed\r\n" + MESSAGE
    fields = ArcSealer("first.example", "sel", pem, "mx.first.example").seal(
        message, now=NOW, verify_chain=lookup
    )
    assert b"ARC-Authentication-Results: i=1; mx.first.example;\r\n arc=none" in fields
    cv, _, reason = _verify(fields + message, dnsfunc)
    assert cv == dkim.CV_Pass, reason

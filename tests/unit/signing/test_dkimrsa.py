"""signing/dkimrsa.py: dkimpy's RSA steps by OpenSSL give dkimpy's own answers."""

from __future__ import annotations

import base64
import hashlib

import dkim
import dkim.crypto
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pigeon.signing import dkimrsa

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _public(key) -> dict[str, int]:
    numbers = key.public_key().public_numbers()
    return {"modulus": numbers.n, "publicExponent": numbers.e}


@pytest.mark.parametrize("algorithm", [hashlib.sha256, hashlib.sha1])
def test_sign_is_byte_for_byte_dkimpys(algorithm):
    # PKCS#1 v1.5 signatures are deterministic: OpenSSL's must be dkimpy's bytes.
    private = dkim.crypto.parse_pem_private_key(_pem(KEY))
    for text in (b"", b"a message", b"x" * 5000):
        ours = dkimrsa.rsa_sign(algorithm(text), private)
        theirs = dkim.crypto.RSASSA_PKCS1_v1_5_sign(algorithm(text), private)
        assert ours == theirs


@pytest.mark.parametrize("algorithm", [hashlib.sha256, hashlib.sha1])
def test_verify_agrees_with_dkimpy_on_good_altered_and_wrong_key_signatures(algorithm):
    private = dkim.crypto.parse_pem_private_key(_pem(KEY))
    good = dkim.crypto.RSASSA_PKCS1_v1_5_sign(algorithm(b"signed"), private)
    altered = bytes([good[0] ^ 1]) + good[1:]
    cases = [
        (algorithm(b"signed"), good, _public(KEY), True),
        (algorithm(b"other text"), good, _public(KEY), False),
        (algorithm(b"signed"), altered, _public(KEY), False),
        (algorithm(b"signed"), good, _public(OTHER), False),
        (algorithm(b"signed"), good[:-1], _public(KEY), False),
    ]
    for digest, signature, public, expected in cases:
        assert dkimrsa.rsa_verify(digest, signature, public) is expected
        assert dkim.crypto.RSASSA_PKCS1_v1_5_verify(digest, signature, public) is expected


def test_installed_dkimpy_signs_and_verifies_whole_messages():
    dkimrsa.install()
    assert dkim.RSASSA_PKCS1_v1_5_sign is dkimrsa.rsa_sign
    assert dkim.RSASSA_PKCS1_v1_5_verify is dkimrsa.rsa_verify
    message = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nbody\r\n"
    signature = dkim.sign(message, b"s", b"example.test", _pem(KEY))
    der = KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    assert dkim.verify(signature + message, dnsfunc=lambda name, timeout=5: record)
    assert not dkim.verify(
        signature + message.replace(b"body", b"bodY"), dnsfunc=lambda n, timeout=5: record
    )

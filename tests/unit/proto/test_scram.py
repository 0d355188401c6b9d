"""SCRAM-SHA-256 primitives against the RFC 7677 §3 test vector, and SASLprep."""

from __future__ import annotations

import base64

import pytest

from pigeon.proto import scram

# RFC 7677 §3: user "user", password "pencil".
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
FIRST_BARE = b"n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
FINAL_NO_PROOF = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
AUTH_MESSAGE = FIRST_BARE + b"," + SERVER_FIRST + b"," + FINAL_NO_PROOF
PROOF = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
SERVER_SIG = base64.b64decode("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def test_rfc7677_vector():
    keys = scram.derive_keys("pencil", SALT, 4096)
    assert scram.client_proof("pencil", SALT, 4096, AUTH_MESSAGE) == PROOF
    assert scram.check_proof(keys, AUTH_MESSAGE, PROOF)
    assert scram.server_signature(keys, AUTH_MESSAGE) == SERVER_SIG
    assert scram.expected_server_signature("pencil", SALT, 4096, AUTH_MESSAGE) == SERVER_SIG


def test_wrong_proof_and_length():
    keys = scram.derive_keys("pencil", SALT, 4096)
    assert not scram.check_proof(keys, AUTH_MESSAGE, bytes(32))
    assert not scram.check_proof(keys, AUTH_MESSAGE, PROOF[:10])


def test_saslprep():
    assert scram.saslprep("I\u00adX") == "IX"  # soft hyphen maps to nothing (RFC 4013 §3)
    assert scram.saslprep("user") == "user"
    assert scram.saslprep("\u2168") == "IX"  # NFKC
    assert scram.saslprep("a\u00a0b") == "a b"  # non-ASCII space to space
    with pytest.raises(ValueError):
        scram.saslprep("\u0007")  # control character

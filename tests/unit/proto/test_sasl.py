"""The sans-IO SASL mechanisms: PLAIN, LOGIN, SCRAM-SHA-256 step by step."""

from __future__ import annotations

import base64

import pytest

from pigeon.proto import scram
from pigeon.proto.sasl import (
    Challenge,
    Credentials,
    Login,
    Malformed,
    NeedKeys,
    Plain,
    ScramSha256,
    new_mechanism,
)


def test_plain_initial_and_continuation():
    assert Plain().start(b"\0alice\0pw") == Credentials("alice", "", "pw")
    m = Plain()
    assert m.start(None) == Challenge(b"")
    assert m.step(b"admin\0alice\0pw") == Credentials("alice", "admin", "pw")


@pytest.mark.parametrize(
    "data",
    [
        b"alice\0pw",
        b"\0\0pw",
        b"\0alice\0",
        b"\0a\0b\0c",
        b"\0\xff\0pw",
        b"\0" + b"a" * 300 + b"\0pw",
    ],
)
def test_plain_malformed(data):
    assert isinstance(Plain().start(data), Malformed)


def test_login():
    m = Login()
    assert m.start(None) == Challenge(b"Username:")
    assert m.step(b"alice") == Challenge(b"Password:")
    assert m.step(b"pw") == Credentials("alice", "", "pw")
    m = Login()
    assert m.start(b"alice") == Challenge(b"Password:")
    assert isinstance(Login().start(b""), Malformed)


def _scram_client(mech, password, keys, *, user="user", tamper=False):
    first_bare = f"n={user},r=clientnonce".encode()
    step = mech.start(b"n,," + first_bare)
    assert step == NeedKeys(user)
    challenge = mech.keys(keys)
    assert isinstance(challenge, Challenge)
    attrs = dict(kv.split(b"=", 1) for kv in challenge.data.split(b","))
    assert attrs[b"r"].startswith(b"clientnonce")
    salt, iters = base64.b64decode(attrs[b"s"]), int(attrs[b"i"])
    without_proof = b"c=biws,r=" + attrs[b"r"]
    auth_message = first_bare + b"," + challenge.data + b"," + without_proof
    proof = scram.client_proof(password, salt, iters, auth_message)
    if tamper:
        proof = bytes([proof[0] ^ 1]) + proof[1:]
    result = mech.step(without_proof + b",p=" + base64.b64encode(proof))
    return result, auth_message, salt, iters


def test_scram_success_and_server_signature():
    keys = scram.derive_keys("pencil", b"saltsaltsalt", 4096)
    mech = ScramSha256(nonce=lambda: b"servernonce!")
    result, auth_message, salt, iters = _scram_client(mech, "pencil", keys)
    assert result == Credentials("user", "", None, verified=True)
    expected = scram.expected_server_signature("pencil", salt, iters, auth_message)
    assert mech.success_data() == b"v=" + base64.b64encode(expected)


def test_scram_wrong_password_unknown_user_and_tampering():
    keys = scram.derive_keys("pencil", b"saltsaltsalt", 4096)
    assert _scram_client(ScramSha256(), "wrong", keys)[0].verified is False
    assert _scram_client(ScramSha256(), "pencil", keys, tamper=True)[0].verified is False
    # Unknown user: the exchange goes on with fake keys and fails at the proof.
    result = _scram_client(ScramSha256(), "pencil", None)[0]
    assert result == Credentials("user", "", None, verified=False)


@pytest.mark.parametrize(
    "first",
    [
        b"p=tls-unique,,n=user,r=x",
        b"n,,r=x",
        b"n,,n=us=er,r=x",
        b"x,,n=user,r=x",
        b"n,,m=ext,n=user,r=x",
        b"n,,n=,r=x",
    ],
)
def test_scram_bad_client_first(first):
    assert isinstance(ScramSha256().start(first), Malformed)


def test_scram_saslname_and_authzid():
    step = ScramSha256().start(b"n,a=admin,n=us=2Cer=3D,r=abc")
    assert step == NeedKeys("us,er=")


def test_scram_bad_channel_binding_fails():
    keys = scram.derive_keys("pencil", b"salt", 4096)
    mech = ScramSha256()
    mech.start(b"n,,n=user,r=abc")
    challenge = mech.keys(keys)
    nonce = dict(kv.split(b"=", 1) for kv in challenge.data.split(b","))[b"r"]
    result = mech.step(b"c=eSws,r=" + nonce + b",p=" + base64.b64encode(bytes(32)))
    assert result.verified is False
    assert isinstance(ScramSha256().step(b"junk"), Malformed)


def test_new_mechanism():
    assert new_mechanism("PLAIN").name == "PLAIN"
    with pytest.raises(ValueError):
        new_mechanism("CRAM-MD5")

"""STARTTLS and AUTH in the sans-IO session (proto/secure.py): no sockets, integer time."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from proto_helpers import Drive

from pigeon.proto import reply as R
from pigeon.proto import scram
from pigeon.proto.events import (
    NEED_DATA,
    Authenticated,
    AuthKeysRequested,
    AuthRequested,
    ConnectionClosing,
    StartTlsRequested,
    TlsInfo,
)
from pigeon.proto.params import MailParams
from pigeon.proto.server import ServerSession, SessionConfig

TLS = TlsInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128)
MECHS = ("PLAIN", "LOGIN", "SCRAM-SHA-256")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


ALICE_PW = b64(b"\0alice\0pw")


def drive(**cfg) -> Drive:
    cfg.setdefault("starttls", True)
    cfg.setdefault("auth_mechanisms", MECHS)
    d = Drive(ServerSession(SessionConfig(**cfg), now=0, sasl_nonce=lambda: b"N" * 18))
    d.auto = False
    d.session.start(0)
    d.pump()
    d.out.clear()
    return d


def tls(d: Drive, ehlo: bool = True) -> Drive:
    d.send(b"EHLO c\r\nSTARTTLS\r\n")
    assert isinstance(d.events[-1], StartTlsRequested)
    d.session.tls_started(TLS, 0)
    d.out.clear()
    d.events.clear()
    if ehlo:
        d.send(b"EHLO c\r\n")
        d.out.clear()
    return d


def lines(d: Drive) -> list[bytes]:
    out = bytes(d.out).split(b"\r\n")[:-1]
    d.out.clear()
    return out


def test_starttls_discards_pipelined_input_and_resets():
    d = drive()
    d.send(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
    d.session.respond(None)
    d.pump()
    d.send(b"RSET\r\n")
    d.out.clear()
    d.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<x@y.example>\r\n")
    assert lines(d) == [b"220 2.0.0 Ready to start TLS"]
    assert d.events[-1] == StartTlsRequested(discarded=len(b"RSET\r\nMAIL FROM:<x@y.example>\r\n"))
    assert d.session.next_deadline() is None
    d.send(b"NOOP\r\n")  # a driver bug; nothing is processed meanwhile
    assert lines(d) == []
    d.session.tls_started(TLS, 5)
    d.pump()
    assert lines(d) == []  # nothing was answered in TLS
    assert d.session.helo_name is None and d.session.tls == TLS and not d.session.esmtp
    d.send(b"MAIL FROM:<a@b.example>\r\n")
    assert lines(d) == [b"503 Error: send HELO/EHLO first"]
    d.send(b"EHLO c\r\n")
    ehlo = lines(d)
    assert b"250-STARTTLS" not in ehlo and b"250 STARTTLS" not in ehlo
    assert ehlo[-1] == b"250 AUTH PLAIN LOGIN SCRAM-SHA-256"
    d.send(b"STARTTLS\r\n")
    assert lines(d) == [b"503 5.5.1 Error: TLS already active"]


def test_starttls_not_offered_and_sequence():
    d = drive(starttls=False)
    d.send(b"EHLO c\r\nSTARTTLS\r\n")
    assert lines(d)[-1] == b"502 5.5.1 Error: command not implemented"
    d = drive()
    d.send(b"STARTTLS\r\n")
    assert lines(d) == [b"503 Error: send HELO/EHLO first"]


def test_tls_failed_closes_without_reply():
    d = drive()
    d.send(b"EHLO c\r\nSTARTTLS\r\n")
    d.out.clear()
    d.session.tls_failed("bad record")
    d.pump()
    assert lines(d) == []
    assert d.events[-1] == ConnectionClosing("TLS handshake failed: bad record")


def test_implicit_tls_session():
    s = ServerSession(SessionConfig(auth_mechanisms=MECHS, auth_required=True), now=0)
    s.tls_started(TLS)
    s.start(0)
    s.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n", 0)
    while s.next_event() is not NEED_DATA:
        pass
    out = s.data_to_send()
    assert b"250-AUTH PLAIN LOGIN SCRAM-SHA-256" not in out  # last line: no dash
    assert b"250 AUTH PLAIN LOGIN SCRAM-SHA-256\r\n" in out and b"STARTTLS" not in out
    assert out.endswith(b"530 5.7.0 Authentication required\r\n")


def test_auth_needs_tls():
    d = drive()
    d.send(b"EHLO c\r\n")
    assert b"AUTH" not in bytes(d.out)
    d.out.clear()
    for line in (b"AUTH PLAIN " + b64(b"\0u\0p").encode(), b"AUTH LOGIN", b"AUTH SCRAM-SHA-256"):
        d.send(line + b"\r\n")
        assert lines(d) == [
            b"538 5.7.11 Encryption required for requested authentication mechanism"
        ]
    assert not any(isinstance(e, AuthRequested) for e in d.events)


def test_auth_plain_accept_and_refuse():
    d = tls(drive())
    d.send(f"AUTH PLAIN {ALICE_PW}\r\n".encode())
    assert d.events[-1] == AuthRequested("PLAIN", "alice", "", "pw", None)
    assert "pw" not in repr(d.events[-1])  # never in logs via repr
    d.session.respond(R.AUTH_FAILED)
    d.pump()
    assert lines(d) == [b"535 5.7.8 Error: authentication failed"]
    d.send(b"AUTH PLAIN\r\n")
    assert lines(d) == [b"334 "]
    d.send(f"{ALICE_PW}\r\n".encode())
    d.session.respond(None)
    d.pump()
    assert lines(d) == [b"235 2.7.0 Authentication successful"]
    assert d.session.auth_user == "alice" and d.session.auth_mechanism == "PLAIN"
    d.send(b"EHLO c\r\n")
    assert b"AUTH" not in bytes(d.out)  # not offered twice
    d.out.clear()
    d.send(b"AUTH LOGIN\r\n")
    assert lines(d) == [b"503 5.5.1 Error: already authenticated"]


def test_auth_login_cancel_bad_base64_and_limits():
    d = tls(drive())
    d.send(b"AUTH LOGIN\r\n*\r\n")
    assert lines(d) == [b"334 VXNlcm5hbWU6", b"501 5.0.0 Authentication cancelled"]
    d.send(b"AUTH LOGIN\r\n!!!\r\n")
    assert lines(d) == [b"334 VXNlcm5hbWU6", b"501 5.5.2 Error: cannot decode response"]
    d.send(b"AUTH LOGIN\r\n" + b"A" * 5000 + b"\r\n")
    assert lines(d) == [b"334 VXNlcm5hbWU6", b"500 5.5.2 Error: line too long"]
    assert len(d.session._buf) < 3000  # bounded
    d.send(b"AUTH CRAM-MD5\r\nAUTH\r\nAUTH PLAIN a b\r\n")
    assert lines(d) == [
        b"504 5.5.4 Error: unrecognized authentication type",
        b"501 5.5.4 Syntax error in parameters or arguments",
        b"501 5.5.4 Syntax error in parameters or arguments",
    ]
    d.send(b"AUTH PLAIN =\r\n")  # empty initial response
    assert lines(d) == [b"501 5.5.2 Error: cannot decode response"]


def test_auth_refused_in_transaction_and_before_ehlo():
    d = drive()
    d.send(b"AUTH PLAIN =\r\n")
    assert lines(d) == [b"503 Error: send HELO/EHLO first"]
    d = tls(drive())
    d.send(b"MAIL FROM:<a@b.example>\r\n")
    d.session.respond(None)
    d.pump()
    d.out.clear()
    d.send(b"AUTH PLAIN =\r\n")
    assert lines(d) == [b"503 5.5.1 Error: MAIL transaction in progress"]


def test_auth_421_closes():
    d = tls(drive())
    d.send(f"AUTH PLAIN {ALICE_PW}\r\n".encode())
    d.session.respond(R.AUTH_TOO_MANY_FAILURES)
    d.pump()
    assert lines(d) == [b"421 4.7.0 Error: too many failed authentications, try again later"]
    assert d.session.closed


def test_submission_requires_tls_then_auth_and_auth_param():
    d = drive(auth_required=True)
    d.send(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
    assert lines(d)[-1] == b"530 5.7.0 Must issue a STARTTLS command first"
    tls(d)
    d.send(b"MAIL FROM:<a@b.example>\r\n")
    assert lines(d) == [b"530 5.7.0 Authentication required"]
    d.send(f"AUTH PLAIN {ALICE_PW}\r\n".encode())
    d.session.respond(None)
    d.pump()
    d.out.clear()
    d.send(b"MAIL FROM:<a@b.example> AUTH=<>\r\n")
    assert d.events[-1].params == MailParams(auth="<>")
    d.session.respond(None)
    d.pump()
    d.send(b"RSET\r\nMAIL FROM:<a@b.example>\r\n")
    assert d.events[-1].params == MailParams(auth="alice")  # RFC 4954 §5: our own identity
    d.session.respond(None)
    d.pump()
    d.send(b"RSET\r\nMAIL FROM:<a@b.example> AUTH=someone+40else\r\n")
    assert d.events[-1].params == MailParams(auth="<>")  # not trusted


def test_auth_param_unauthenticated_is_empty():
    d = tls(drive())
    d.send(b"MAIL FROM:<a@b.example> AUTH=bob@b.example\r\n")
    assert d.events[-1].params == MailParams(auth="<>")


def test_scram_exchange_in_the_session():
    keys = scram.derive_keys("pencil", b"0123456789abcdef", 4096)
    d = tls(drive())
    first_bare = b"n=alice,r=cnonce"
    d.send(f"AUTH SCRAM-SHA-256 {b64(b'n,,' + first_bare)}\r\n".encode())
    assert d.events[-1] == AuthKeysRequested("SCRAM-SHA-256", "alice")
    with pytest.raises(RuntimeError):
        d.session.respond(None)  # keys go through respond_keys
    d.session.respond_keys(keys)
    d.pump()
    server_first = base64.b64decode(lines(d)[0][4:])
    nonce = dict(kv.split(b"=", 1) for kv in server_first.split(b","))[b"r"]
    without = b"c=biws,r=" + nonce
    auth_message = first_bare + b"," + server_first + b"," + without
    proof = scram.client_proof("pencil", keys.salt, 4096, auth_message)
    d.send(f"{b64(without + b',p=' + base64.b64encode(proof))}\r\n".encode())
    assert d.events[-1] == AuthRequested("SCRAM-SHA-256", "alice", "", None, True)
    d.session.respond(None)
    d.pump()
    v = base64.b64decode(lines(d)[0][4:])
    assert v == b"v=" + base64.b64encode(scram.server_signature(keys, auth_message))
    assert not any(isinstance(e, Authenticated) for e in d.events)  # not yet: 334 v=...
    d.send(b"\r\n")
    assert lines(d) == [b"235 2.7.0 Authentication successful"]
    assert d.session.auth_user == "alice"
    assert d.events[-1] == Authenticated("alice", "SCRAM-SHA-256")


def scram_until_server_final(d: Drive) -> None:
    keys = scram.derive_keys("pencil", b"0123456789abcdef", 4096)
    first_bare = b"n=alice,r=cnonce"
    d.send(f"AUTH SCRAM-SHA-256 {b64(b'n,,' + first_bare)}\r\n".encode())
    d.session.respond_keys(keys)
    d.pump()
    server_first = base64.b64decode(lines(d)[0][4:])
    nonce = dict(kv.split(b"=", 1) for kv in server_first.split(b","))[b"r"]
    without = b"c=biws,r=" + nonce
    proof = scram.client_proof(
        "pencil", keys.salt, 4096, first_bare + b"," + server_first + b"," + without
    )
    d.send(f"{b64(without + b',p=' + base64.b64encode(proof))}\r\n".encode())
    d.session.respond(None)  # the driver accepted the proof
    d.pump()
    assert lines(d)[0].startswith(b"334 ")


@pytest.mark.parametrize("answer", [b"*", b"Zm9v"])
def test_a_scram_client_that_does_not_confirm_is_not_authenticated(answer):
    """RFC 4954 §4: the exchange ends with the client's empty answer to the
    server-final message; without it no 235, no Authenticated event."""
    d = tls(drive())
    scram_until_server_final(d)
    d.send(answer + b"\r\n")
    assert lines(d)[0][:3] in (b"501",)
    assert d.session.auth_user is None
    assert not any(isinstance(e, Authenticated) for e in d.events)


def test_plain_is_authenticated_with_its_235():
    d = tls(drive())
    d.send(f"AUTH PLAIN {ALICE_PW}\r\n".encode())
    d.session.respond(None)
    d.pump()
    assert lines(d) == [b"235 2.7.0 Authentication successful"]
    assert d.events[-1] == Authenticated("alice", "PLAIN")


def test_failed_scram_proof_is_never_accepted():
    keys = scram.derive_keys("pencil", b"0123456789abcdef", 4096)
    d = tls(drive())
    d.send(f"AUTH SCRAM-SHA-256 {b64(b'n,,n=alice,r=c')}\r\n".encode())
    d.session.respond_keys(keys)
    d.pump()
    server_first = base64.b64decode(lines(d)[0][4:])
    nonce = dict(kv.split(b"=", 1) for kv in server_first.split(b","))[b"r"]
    d.send(f"{b64(b'c=biws,r=' + nonce + b',p=' + base64.b64encode(bytes(32)))}\r\n".encode())
    assert d.events[-1].verified is False
    d.session.respond(None)  # a careless driver
    d.pump()
    assert lines(d) == [b"535 5.7.8 Error: authentication failed"]
    assert d.session.auth_user is None


def test_there_is_no_switch_for_auth_over_plaintext():
    """AUTH needs TLS, whatever the configuration (RFC 4954 §4, RFC 8314 §3)."""
    assert "auth_without_tls" not in {f.name for f in dataclasses.fields(SessionConfig)}
    d = drive(starttls=False)
    d.send(b"EHLO c\r\n")
    assert b"AUTH" not in bytes(d.out)

"""Client-side AUTH PLAIN (RFC 4954 §4, RFC 4616) for smarthost relaying."""

import base64

from pigeon.proto.client import AuthDone, ClientSession, Ready


def ready_session():
    s = ClientSession(helo_name="client.test")
    s.receive_data(b"220 relay.test ESMTP\r\n")
    s.data_to_send()
    s.receive_data(b"250-relay.test\r\n250 AUTH PLAIN LOGIN\r\n")
    assert isinstance(s.next_event(), Ready)
    return s


def test_auth_plain_initial_response_and_success():
    s = ready_session()
    assert "PLAIN" in s.extensions.auth_mechanisms
    s.authenticate("alice@example.test", "p\u00e4ss")
    line = s.data_to_send()
    verb, mech, token = line.rstrip(b"\r\n").split(b" ")
    assert (verb, mech) == (b"AUTH", b"PLAIN")
    assert base64.b64decode(token) == b"\0alice@example.test\0p\xc3\xa4ss"
    assert s.next_event() is None and not s.ready
    s.receive_data(b"235 2.7.0 Authentication successful\r\n")
    ev = s.next_event()
    assert isinstance(ev, AuthDone) and ev.reply.code == 235 and s.ready


def test_auth_refused_leaves_session_usable_for_quit():
    s = ready_session()
    s.authenticate("alice", "wrong")
    s.data_to_send()
    s.receive_data(b"535 5.7.8 Authentication credentials invalid\r\n")
    ev = s.next_event()
    assert isinstance(ev, AuthDone) and ev.reply.code == 535
    s.quit()
    assert s.data_to_send() == b"QUIT\r\n"

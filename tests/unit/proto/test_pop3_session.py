"""The sans-IO POP3 session (proto/pop3.py): every command in every state,
the TLS rules, SASL, line limits and the UPDATE state (RFC 1939, 2449, 2595, 5034)."""

from __future__ import annotations

import base64

import pytest

from pigeon.proto import scram
from pigeon.proto.pop3 import MAX_LINE, MAX_SASL_LINE, Pop3Session, Pop3Settings
from pigeon.proto.pop3_events import (
    ConnectionClosing,
    LoginRefused,
    PasswordLogin,
    SaslKeysNeeded,
    SaslLogin,
    StartTlsRequested,
    UpdateRequested,
)
from pigeon.proto.pop3_events import RetrieveRequested as Retrieve

LISTING = [(120, "uid-one"), (300, "uid-two"), (45, "uid-three")]


def lines(session: Pop3Session) -> list[bytes]:
    return session.data_to_send().split(b"\r\n")[:-1]


def new(tls=True, **kw) -> Pop3Session:
    return Pop3Session(Pop3Settings(tls=tls, stls=not tls, **kw))


def logged_in(**kw) -> Pop3Session:
    s = new(**kw)
    events = s.receive_data(b"USER alice@example.test\r\nPASS secret\r\n")
    assert events == [PasswordLogin("alice@example.test", "secret")]
    assert s.accept_login(LISTING) == []
    lines(s)
    return s


def test_greeting_and_quit_in_authorization_deletes_nothing():
    s = new()
    assert s.greeting() == b"+OK POP3 server ready\r\n"
    assert s.receive_data(b"QUIT\r\n") == [ConnectionClosing("QUIT")]
    assert lines(s) == [b"+OK Bye"]
    assert s.closed


def test_capa_before_tls_offers_stls_and_no_password():
    """RFC 2595 §2.2 / RFC 8314: no USER, no SASL before TLS; STLS instead."""
    s = new(tls=False)
    s.receive_data(b"CAPA\r\n")
    assert lines(s) == [
        b"+OK Capability list follows",
        b"TOP",
        b"UIDL",
        b"RESP-CODES",
        b"AUTH-RESP-CODE",
        b"PIPELINING",
        b"STLS",
        b"IMPLEMENTATION pigeon",
        b".",
    ]


def test_capa_inside_tls_offers_user_and_sasl_and_no_stls():
    s = new(mechanisms=("PLAIN", "SCRAM-SHA-256"))
    s.receive_data(b"capa\r\n")  # commands are case-insensitive (RFC 1939 §3)
    out = lines(s)
    assert b"USER" in out and b"SASL PLAIN SCRAM-SHA-256" in out and b"STLS" not in out


def test_capa_in_transaction_lists_no_login_capabilities():
    s = logged_in()
    s.receive_data(b"CAPA\r\n")
    out = lines(s)
    assert b"USER" not in out and not any(line.startswith(b"SASL") for line in out)
    assert b"TOP" in out and out[-1] == b"."


@pytest.mark.parametrize("command", [b"USER alice", b"PASS secret", b"AUTH PLAIN", b"AUTH"])
def test_no_login_before_tls(command):
    s = new(tls=False)
    assert s.receive_data(command + b"\r\n") == []
    assert lines(s) == [b"-ERR [AUTH] Plaintext authentication is disabled here: use STLS first"]


def test_stls_discards_pipelined_plaintext_and_starts_afresh():
    """RFC 2595 §4; CVE-2011-0411: nothing sent before the handshake counts."""
    s = new(tls=False)
    events = s.receive_data(b"STLS\r\nUSER mallory\r\n")
    assert events == [StartTlsRequested(discarded=len(b"USER mallory\r\n"))]
    assert lines(s) == [b"+OK Begin TLS negotiation"]
    s.tls_started()
    assert s.receive_data(b"PASS x\r\n") == []
    assert lines(s) == [b"-ERR USER first"]  # the pipelined USER never happened
    s.receive_data(b"STLS\r\n")
    assert lines(s) == [b"-ERR Already in TLS"]


def test_stls_without_a_certificate_and_a_failed_handshake():
    s = Pop3Session(Pop3Settings(tls=False, stls=False))
    s.receive_data(b"STLS\r\n")
    assert lines(s) == [b"-ERR STLS is not available"]
    s = new(tls=False)
    s.receive_data(b"STLS\r\n")
    lines(s)
    s.tls_failed()
    assert s.closed


def test_user_pass_accepted_opens_the_maildrop():
    s = new()
    assert s.receive_data(b"USER alice\r\n") == []
    assert lines(s) == [b"+OK Send the password"]
    assert s.receive_data(b"PASS with spaces \r\n") == [PasswordLogin("alice", "with spaces ")]
    s.accept_login(LISTING)
    assert lines(s) == [b"+OK Logged in, 3 messages (465 octets)"]
    assert s.state == "TRANSACTION"


@pytest.mark.parametrize(
    "refusal, reply",
    [
        (LoginRefused.FAILED, b"-ERR [AUTH] Authentication failed"),
        (LoginRefused.UNAVAILABLE, b"-ERR [SYS/TEMP] Temporary authentication failure"),
        (LoginRefused.IN_USE, b"-ERR [IN-USE] Mailbox is locked by another POP3 session"),
        (LoginRefused.NO_MAILBOX, b"-ERR [SYS/PERM] This account has no mailbox"),
        (LoginRefused.MAILDROP_ERROR, b"-ERR [SYS/TEMP] The mailbox cannot be read now"),
    ],
)
def test_refused_logins_stay_in_authorization(refusal, reply):
    s = new()
    s.receive_data(b"USER alice\r\nPASS x\r\nSTAT\r\n")
    lines(s)
    s.refuse_login(refusal)
    assert lines(s) == [reply, b"-ERR Command not valid in this state"]
    assert s.state == "AUTHORIZATION" and not s.closed
    s.receive_data(b"PASS again\r\n")
    assert lines(s) == [b"-ERR USER first"]  # USER is forgotten after a failure


def test_too_many_failures_closes_the_session():
    s = new()
    s.receive_data(b"USER alice\r\nPASS x\r\n")
    lines(s)
    assert s.refuse_login(LoginRefused.TOO_MANY_FAILURES) == [
        ConnectionClosing("too many failed logins")
    ]
    assert lines(s) == [b"-ERR [SYS/TEMP] Too many failed logins, try again later"]


def test_auth_without_argument_lists_the_mechanisms():
    s = new(mechanisms=("PLAIN", "SCRAM-SHA-256"))
    s.receive_data(b"AUTH\r\n")
    assert lines(s) == [b"+OK", b"PLAIN", b"SCRAM-SHA-256", b"."]


def test_auth_plain_with_and_without_initial_response():
    s = new()
    token = base64.b64encode(b"\x00alice\x00secret")
    events = s.receive_data(b"AUTH PLAIN " + token + b"\r\n")
    assert [type(e) for e in events] == [SaslLogin]
    assert events[0].credentials.username == "alice" and events[0].credentials.password == "secret"
    s = new()
    assert s.receive_data(b"AUTH PLAIN\r\n") == []
    assert lines(s) == [b"+ "]  # RFC 5034 §4: an empty challenge
    events = s.receive_data(token + b"\r\n")
    assert events[0].mechanism == "PLAIN"


def test_auth_unknown_mechanism_bad_base64_and_cancel():
    s = new()
    s.receive_data(b"AUTH CRAM-MD5\r\nAUTH PLAIN !!!\r\nAUTH PLAIN\r\n*\r\n")
    assert lines(s) == [
        b"-ERR Unrecognized authentication type",
        b"-ERR Cannot decode the initial response",
        b"+ ",
        b"-ERR Authentication cancelled",
    ]
    assert s.state == "AUTHORIZATION"


def test_auth_scram_sha_256_full_exchange():
    """RFC 5802 through RFC 5034: the keys are asked for; the server-final
    message is a challenge answered by an empty line before the login is decided."""
    keys = scram.derive_keys("secret", b"salt-salt-salt16")
    s = new(nonce=lambda: b"server-nonce")
    first_bare = b"n=alice,r=clientnonce"
    events = s.receive_data(
        b"AUTH SCRAM-SHA-256 " + base64.b64encode(b"n,," + first_bare) + b"\r\n"
    )
    assert events == [SaslKeysNeeded("alice")]
    assert s.respond_keys(keys) == []
    (challenge,) = lines(s)
    server_first = base64.b64decode(challenge[2:])
    attrs = dict(a.split(b"=", 1) for a in server_first.split(b","))
    final_bare = b"c=" + base64.b64encode(b"n,,") + b",r=" + attrs[b"r"]
    auth_message = first_bare + b"," + server_first + b"," + final_bare
    proof = scram.client_proof("secret", keys.salt, keys.iterations, auth_message)
    s.receive_data(base64.b64encode(final_bare + b",p=" + base64.b64encode(proof)) + b"\r\n")
    (final,) = lines(s)
    expected = scram.expected_server_signature("secret", keys.salt, keys.iterations, auth_message)
    assert base64.b64decode(final[2:]) == b"v=" + base64.b64encode(expected)
    events = s.receive_data(b"\r\n")
    assert [type(e) for e in events] == [SaslLogin] and events[0].credentials.verified


def test_a_wrong_scram_proof_is_decided_as_a_failed_login():
    keys = scram.derive_keys("secret", b"salt-salt-salt16")
    s = new()
    first = b"n,,n=alice,r=abc"
    s.receive_data(b"AUTH SCRAM-SHA-256 " + base64.b64encode(first) + b"\r\n")
    s.respond_keys(keys)
    challenge = lines(s)[0]
    nonce = dict(a.split(b"=", 1) for a in base64.b64decode(challenge[2:]).split(b","))[b"r"]
    final = b"c=biws,r=" + nonce + b",p=" + base64.b64encode(b"x" * 32)
    events = s.receive_data(base64.b64encode(final) + b"\r\n")
    assert [type(e) for e in events] == [SaslLogin]
    assert events[0].credentials.verified is False


def test_stat_list_uidl():
    s = logged_in()
    s.receive_data(b"STAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nUIDL 3\r\n")
    assert lines(s) == [
        b"+OK 3 465",
        b"+OK 3 messages (465 octets)",
        b"1 120",
        b"2 300",
        b"3 45",
        b".",
        b"+OK 2 300",
        b"+OK Unique-ID listing follows",
        b"1 uid-one",
        b"2 uid-two",
        b"3 uid-three",
        b".",
        b"+OK 3 uid-three",
    ]


@pytest.mark.parametrize("arg", [b"0", b"4", b"x", b"-1", b"9999999999"])
def test_bad_message_numbers(arg):
    s = logged_in()
    for command in (b"LIST", b"UIDL", b"RETR", b"DELE", b"TOP"):
        s.receive_data(command + b" " + arg + (b" 1" if command == b"TOP" else b"") + b"\r\n")
        (reply,) = lines(s)
        assert reply in (b"-ERR No such message", b"-ERR Invalid message number")


def test_dele_marks_rset_unmarks_and_marked_messages_are_hidden():
    """RFC 1939 §5: marked messages are not listed nor counted; §6: RSET."""
    s = logged_in()
    s.receive_data(b"DELE 2\r\nDELE 2\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 2\r\nRSET\r\nSTAT\r\n")
    assert lines(s) == [
        b"+OK Message 2 deleted",
        b"-ERR Message 2 already deleted",
        b"+OK 2 165",
        b"+OK 2 messages (165 octets)",
        b"1 120",
        b"3 45",
        b".",
        b"-ERR Message 2 already deleted",
        b"-ERR Message 2 already deleted",
        b"+OK 3 messages (465 octets)",
        b"+OK 3 465",
    ]


def test_retr_and_top_are_decisions_that_keep_pipelined_commands_waiting():
    s = logged_in()
    events = s.receive_data(b"RETR 2\r\nTOP 1 5\r\nNOOP\r\n")
    assert events == [Retrieve(1, None, 300)]
    s.retrieve_started(300)
    assert lines(s) == [b"+OK 300 octets"]
    assert s.retrieve_done() == [Retrieve(0, 5, 120)]
    s.retrieve_started(None)
    assert lines(s) == [b"+OK"]
    assert s.retrieve_done() == []
    assert lines(s) == [b"+OK"]  # NOOP


def test_top_needs_two_numbers_and_a_failed_read_is_sys_temp():
    s = logged_in()
    s.receive_data(b"TOP 1\r\nTOP 1 x\r\n")
    assert lines(s) == [b"-ERR TOP needs a message number and a number of lines"] * 2
    s.receive_data(b"RETR 1\r\n")
    s.retrieve_failed()
    assert lines(s) == [b"-ERR [SYS/TEMP] The message cannot be read now"]


def test_quit_in_transaction_enters_update_with_the_marked_messages():
    s = logged_in()
    events = s.receive_data(b"DELE 3\r\nDELE 1\r\nQUIT\r\n")
    assert events == [UpdateRequested((0, 2))]
    assert s.state == "UPDATE"
    assert s.update_done(0) == [ConnectionClosing("QUIT")]
    assert lines(s) == [
        b"+OK Message 3 deleted",
        b"+OK Message 1 deleted",
        b"+OK Bye, 1 messages left",
    ]


def test_update_that_could_not_remove_everything_says_so():
    s = logged_in()
    s.receive_data(b"DELE 1\r\nQUIT\r\n")
    lines(s)
    s.update_done(1)
    assert lines(s) == [b"-ERR [SYS/TEMP] 1 deleted messages not removed"]


def test_a_dropped_connection_or_the_auto_logout_never_enters_update():
    """RFC 1939 §3, §6: deletions happen only after QUIT."""
    s = logged_in()
    s.receive_data(b"DELE 1\r\n")
    lines(s)
    assert s.receive_data(b"") == [ConnectionClosing("client closed the connection")]
    s = logged_in()
    s.receive_data(b"DELE 1\r\n")
    lines(s)
    assert s.timed_out() == [ConnectionClosing("auto-logout")]
    assert lines(s) == [b"-ERR Auto-logout: idle for too long"]


@pytest.mark.parametrize(
    "command", [b"STAT", b"LIST", b"UIDL", b"RETR 1", b"DELE 1", b"NOOP", b"RSET", b"TOP 1 1"]
)
def test_transaction_commands_in_authorization_are_refused(command):
    s = new()
    s.receive_data(command + b"\r\n")
    assert lines(s) == [b"-ERR Command not valid in this state"]


@pytest.mark.parametrize("command", [b"USER bob", b"PASS x", b"AUTH PLAIN", b"STLS"])
def test_authorization_commands_in_transaction_are_refused(command):
    s = logged_in()
    s.receive_data(command + b"\r\n")
    assert lines(s) == [b"-ERR Command not valid in this state"]


def test_unknown_commands_and_too_many_errors_close_the_session():
    s = new(max_errors=3)
    events = s.receive_data(b"APOP a b\r\nLAST\r\nXYZZY\r\nNOOP\r\n")
    assert events == [ConnectionClosing("too many bad commands")]
    assert lines(s) == [b"-ERR Unknown command"] * 3 + [b"-ERR Too many bad commands, closing"]


def test_an_overlong_line_is_refused_without_being_held_whole():
    s = new()
    s.receive_data(b"NOOP " + b"x" * MAX_LINE + b"\r\nCAPA\r\n")
    out = lines(s)
    assert out[0] == b"-ERR Line too long" and out[1] == b"+OK Capability list follows"
    s = new()
    for _ in range(100):  # 1.6 MB without a line end: never buffered whole
        s.receive_data(b"y" * 16384)
        assert len(s._in) <= 16384 + 12 * 1024
    s.receive_data(b"\r\nNOOP\r\n")
    assert lines(s) == [b"-ERR Line too long", b"-ERR Command not valid in this state"]


def test_bare_lf_lines_and_8bit_garbage_get_an_answer():
    s = new()
    s.receive_data(b"CAPA\nUSER \xff\xfe\r\n\x00\x01\r\n")
    out = lines(s)
    assert out[-2:] == [b"-ERR USER needs a user name", b"-ERR Unknown command"]


def test_an_auth_line_may_be_longer_than_a_command_but_is_bounded_too():
    """RFC 5034 §4: an initial response may make the AUTH line longer than 255
    octets; it is read (here: decoded and found malformed), up to MAX_SASL_LINE."""
    s = new()
    s.receive_data(b"AUTH PLAIN " + b"A" * (MAX_LINE + 4) + b"\r\n")
    assert lines(s) == [b"-ERR [AUTH] PLAIN needs authzid NUL authcid NUL password"]
    s.receive_data(b"AUTH PLAIN " + b"A" * MAX_SASL_LINE + b"\r\n")
    assert lines(s) == [b"-ERR Line too long"]

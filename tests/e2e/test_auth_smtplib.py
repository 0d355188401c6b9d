"""Submission with Python's smtplib: STARTTLS + AUTH on 587, SMTP_SSL on 465, bad cases."""

from __future__ import annotations

import base64
import smtplib

import pytest
from secure_helpers import CONFIG, PASSWORD, USER, add_user, insecure_context, message

from pigeon.proto import scram
from pigeon.testing.live import maildir_messages, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(pigeon_factory):
    proc = pigeon_factory(CONFIG)
    add_user(proc)
    return proc


def test_starttls_and_plain_login_on_submission(server):
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as s:
        s.ehlo("client.example")
        assert s.has_extn("starttls") and not s.has_extn("auth")
        s.starttls(context=insecure_context())
        s.ehlo("client.example")
        assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN", "SCRAM-SHA-256"]
        assert s.login(USER, PASSWORD)[0] == 235
        s.sendmail(
            USER,
            ["bob@example.test", "friend@elsewhere.example"],
            message(USER, "bob@example.test", "submitted"),
        )
    files = wait_for(lambda: maildir_messages(server.data_dir, "bob@example.test"))
    content = files[0].read_bytes()
    assert b"with ESMTPSA (using TLSv1.3 with cipher TLS_" in content, content[:400]


def test_auth_login_mechanism(server):
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as s:
        s.starttls(context=insecure_context())
        s.ehlo("client.example")
        s.user, s.password = USER, PASSWORD
        assert s.auth("LOGIN", s.auth_login, initial_response_ok=False)[0] == 235


def test_implicit_tls_submissions(server):
    with smtplib.SMTP_SSL(
        "127.0.0.1", server.submissions_port, timeout=10, context=insecure_context()
    ) as s:
        s.ehlo("client.example")
        assert not s.has_extn("starttls")
        assert s.login(USER, PASSWORD)[0] == 235
        s.sendmail(USER, ["alice@example.test"], message(USER, USER, "over 465"))
    files = wait_for(lambda: maildir_messages(server.data_dir, USER))
    assert b"with ESMTPSA (using TLSv1" in files[0].read_bytes()


def test_scram_sha_256(server):
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as s:
        s.starttls(context=insecure_context())
        s.ehlo("client.example")
        cnonce = "rOprNGfwEbeRWgbNEkqO"
        first_bare = f"n={USER},r={cnonce}"
        code, resp = s.docmd(
            "AUTH", "SCRAM-SHA-256 " + base64.b64encode(("n,," + first_bare).encode()).decode()
        )
        assert code == 334
        server_first = base64.b64decode(resp)
        attrs = dict(kv.split(b"=", 1) for kv in server_first.split(b","))
        assert attrs[b"r"].startswith(cnonce.encode())
        salt, iters = base64.b64decode(attrs[b"s"]), int(attrs[b"i"])
        without_proof = b"c=biws,r=" + attrs[b"r"]
        auth_message = first_bare.encode() + b"," + server_first + b"," + without_proof
        proof = scram.client_proof(PASSWORD, salt, iters, auth_message)
        final = without_proof + b",p=" + base64.b64encode(proof)
        code, resp = s.docmd(base64.b64encode(final).decode())
        assert code == 334
        expected = scram.expected_server_signature(PASSWORD, salt, iters, auth_message)
        assert base64.b64decode(resp) == b"v=" + base64.b64encode(expected)
        assert s.docmd("")[0] == 235
        assert s.docmd("MAIL FROM:<alice@example.test>")[0] == 250


def test_plaintext_auth_is_refused(server):
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as s:
        s.ehlo("client.example")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            s.login(USER, PASSWORD)  # not advertised before TLS
        code, resp = s.docmd(
            "AUTH", "PLAIN " + base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
        )
        assert (code, resp) == (
            538,
            b"5.7.11 Encryption required for requested authentication mechanism",
        )
        assert s.docmd("MAIL FROM:<alice@example.test>")[0] == 530


def test_smtp_listener_does_not_offer_auth(server):
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.starttls(context=insecure_context())
        s.ehlo("client.example")
        assert not s.has_extn("auth")
        assert s.docmd("AUTH PLAIN =")[0] == 502


@pytest.mark.parametrize("user, password", [(USER, "wrong"), ("nobody@example.test", PASSWORD)])
def test_wrong_password_and_unknown_user(server, user, password):
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as s:
        s.starttls(context=insecure_context())
        s.ehlo("client.example")
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            s.login(user, password)
        assert exc.value.smtp_code == 535 and exc.value.smtp_error.startswith(b"5.7.8")
        assert s.docmd("MAIL FROM:<alice@example.test>")[0] == 530


def test_sender_must_be_owned(server):
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as s:
        s.starttls(context=insecure_context())
        s.ehlo("client.example")
        s.login(USER, PASSWORD)
        code, resp = s.mail("bob@example.test")
        assert (code, resp[:5]) == (553, b"5.7.1")
        assert s.mail("alice@example.test")[0] == 250


def test_from_header_must_be_owned(server):
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as s:
        s.starttls(context=insecure_context())
        s.ehlo("client.example")
        s.login(USER, PASSWORD)
        s.mail(USER)
        s.rcpt("bob@example.test")
        code, resp = s.data(b"From: The Boss <boss@example.test>\r\nSubject: forged\r\n\r\nhi\r\n")
        assert (code, resp[:5]) == (553, b"5.7.1")
        # Its own address, with a display name, in any case: accepted.
        s.mail(USER)
        s.rcpt("bob@example.test")
        code, _ = s.data(f"From: Alice <{USER.upper()}>\r\nSubject: mine\r\n\r\nhi\r\n".encode())
        assert code == 250
    assert len(wait_for(lambda: maildir_messages(server.data_dir, "bob@example.test"))) == 1


def _auth_fail(port: int, source: str) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0)) as s:
        s.starttls(context=insecure_context())
        s.ehlo("client.example")
        code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{USER}\0bad".encode()).decode())
        return code


def test_failed_logins_are_slowed_then_refused_per_ip(pigeon_factory):
    proc = pigeon_factory(
        CONFIG + "[auth]\nslow_after = 1\nfailure_delay = 0.2\nmax_failures = 3\nlockout = 60\n"
    )
    add_user(proc)
    codes = [_auth_fail(proc.submission_port, "127.0.0.1") for _ in range(3)]
    assert codes == [535, 535, 421]
    with smtplib.SMTP("127.0.0.1", proc.submission_port, timeout=10) as s:
        s.starttls(context=insecure_context())
        s.ehlo("client.example")
        code, resp = s.docmd(
            "AUTH", "PLAIN " + base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
        )
        assert (code, resp[:5]) == (421, b"4.7.0")  # even the right password
    # Another client address is not affected.
    with smtplib.SMTP(
        "127.0.0.1", proc.submission_port, timeout=10, source_address=("127.0.0.2", 0)
    ) as s:
        s.starttls(context=insecure_context())
        s.ehlo("client.example")
        assert s.login(USER, PASSWORD)[0] == 235

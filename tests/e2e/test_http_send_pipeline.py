"""POST /api/send with a token bound to an account: SMTP submission's pipeline (docs/api.md).

A live pigeon; each message is sent both ways where the verdict is
compared: by smtplib on the submission port, logged in as the account,
and by curl to the HTTP API with a token made by `pigeon token add
--account`. The rate limit of the account, the ownership of the sender,
a milter (Debian's libmilter, tests/e2e/milters/actions.py) and a plugin
(contrib/plugins/archive.py) apply to both; the API message is
DKIM-signed (OpenDKIM verifies it) and arrives in the Maildir.
"""

from __future__ import annotations

import json
import smtplib
from pathlib import Path

import pytest
from dkim_helpers import opendkim_verify, published_txt, zone_records
from secure_helpers import PASSWORD, USER, add_user, insecure_context
from test_http_api import problem, send

from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.live import PigeonProcess, maildir_messages, wait_for
from pigeon.testing.milters import libmilter, require_libmilter

pytestmark = pytest.mark.e2e

WAIT = 30
DOMAIN = '[domains."example.test"]\nmailboxes = ["alice", "bob", "carol"]\n'
PLUGINS = Path(__file__).resolve().parents[2] / "contrib" / "plugins"
MILTER = Path(__file__).parent / "milters" / "actions.py"


def _token(server, name: str, account: str | None = USER) -> str:
    extra = ["--account", account] if account else []
    done = server.command("token", "add", name, "--scope", "send", *extra, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _message(sender: str, subject: str, extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: bob@example.test\r\nSubject: {subject}\r\n{extra}"
        f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n\r\nHello Bob.\r\n"
    ).encode()


def _smtp(server, sender: str, message: bytes) -> tuple[int, bytes]:
    """(code, text) of the first refusal of a submission, or (250, b"") when queued."""
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60) as client:
        client.starttls(context=insecure_context())
        client.login(USER, PASSWORD)
        try:
            client.sendmail(sender, ["bob@example.test"], message)
        except smtplib.SMTPSenderRefused as exc:
            return exc.smtp_code, exc.smtp_error
        except smtplib.SMTPRecipientsRefused as exc:
            return next(iter(exc.recipients.values()))
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error
    return 250, b""


def _api(server, token: str, message: bytes):
    return send(server, {"raw": message.decode(), "to": "bob@example.test"}, token)


def _arrived(server, count: int = 1) -> list[bytes]:
    found = wait_for(
        lambda: len(maildir_messages(server.data_dir, "bob@example.test")) >= count, WAIT
    )
    assert found, server.log()
    return [p.read_bytes() for p in maildir_messages(server.data_dir, "bob@example.test")]


def _same_verdict(doc: dict, smtp: tuple[int, bytes]) -> None:
    code, text = smtp
    assert doc["smtp_code"] == code
    assert text.decode().startswith(doc["enhanced_code"] + " ")
    assert text.decode().split(" ", 1)[1] in doc["detail"]


def test_the_sender_must_be_the_accounts_own_as_on_the_submission_port(pigeon_factory):
    server = pigeon_factory(DOMAIN)
    add_user(server)
    token = _token(server, "alice-app")
    theirs = _message("carol@example.test", "not mine")
    smtp = _smtp(server, "carol@example.test", theirs)
    assert smtp[0] == 553, smtp
    doc = problem(_api(server, token, theirs), 403)
    assert doc["stage"] == "MAIL" and doc["address"] == "carol@example.test"
    _same_verdict(doc, smtp)
    # The envelope sender is the account's but the From: is not: the From: check.
    forged = _message("carol@example.test", "forged from")
    smtp = _smtp(server, USER, forged)
    assert smtp[0] == 553, smtp
    doc = problem(
        send(server, {"raw": forged.decode(), "from": USER, "to": "bob@example.test"}, token), 403
    )
    assert doc["stage"] == "END-OF-MESSAGE"
    _same_verdict(doc, smtp)
    # Its own address: queued, with our Received: field naming the HTTP API.
    status, _, body = _api(server, token, _message(USER, "mine"))
    assert status == 202, body
    queued = json.loads(body)
    assert queued["sender"] == USER and queued["recipients"] == ["bob@example.test"]
    arrived = _arrived(server)[0]
    assert b"Subject: mine" in arrived
    assert f"with HTTP id {queued['queue_id']}".encode() in arrived
    # A token without an account is local submission by an administrator:
    # any sender at our domains.
    admin = _token(server, "admin-app", account=None)
    status, _, body = _api(server, admin, theirs)
    assert status == 202, body


def test_a_token_for_an_account_that_does_not_exist(pigeon_factory):
    server = pigeon_factory(DOMAIN)
    refused = server.command("token", "add", "x", "--scope", "send", "--account", USER, text=True)
    assert refused.returncode == 1 and "no such account" in refused.stderr
    add_user(server)
    token = _token(server, "alice-app")
    listed = server.command("token", "list", text=True).stdout
    assert "alice-app\tsend\t" in listed and f"account={USER}" in listed
    assert server.command("user", "del", USER).returncode == 0
    doc = problem(_api(server, token, _message(USER, "orphan")), 403)
    assert USER in doc["detail"] and "smtp_code" not in doc


def test_the_accounts_rate_limit_counts_api_and_smtp_mail_together(pigeon_factory):
    server = pigeon_factory(
        DOMAIN + "[rate_limits]\nexceptions = []\ntime_unit = 3600\n"
        "client_connections = 0\nnetwork_connections = 0\nclient_messages = 0\n"
        "network_messages = 0\nsender_messages = 0\nuser_messages = 2\n"
    )
    add_user(server)
    token = _token(server, "alice-app")
    assert _smtp(server, USER, _message(USER, "first")) == (250, b"")
    status, _, body = _api(server, token, _message(USER, "second"))
    assert status == 202, body
    # The third, either way, is over the account's two an hour.
    response = _api(server, token, _message(USER, "third api"))
    doc = problem(response, 429)
    assert response[1]["retry-after"].isdigit()
    assert doc["stage"] == "MAIL" and doc["smtp_code"] == 450
    smtp = _smtp(server, USER, _message(USER, "third smtp"))
    assert smtp[0] == 450 and b"too much mail from user" in smtp[1], smtp
    _same_verdict(doc, smtp)
    assert len(_arrived(server, 2)) == 2


def test_a_plugin_sees_the_api_message(pigeon_factory, tmp_path):
    archive = tmp_path / "archive"
    server = pigeon_factory(
        DOMAIN + f'[[plugins]]\npath = "{PLUGINS / "archive.py"}"\n[plugins.config]\n'
        f'directory = "{archive}"\n'
    )
    add_user(server)
    status, _, body = _api(server, _token(server, "alice-app"), _message(USER, "archived"))
    assert status == 202, body
    copies = wait_for(timeout=WAIT, predicate=lambda: sorted(archive.glob("*.eml")))
    assert len(copies) == 1 and copies[0].stem == json.loads(body)["queue_id"]
    assert b"Subject: archived" in copies[0].read_bytes()


@pytest.fixture(scope="module")
def actions(tmp_path_factory):
    require_libmilter()
    with libmilter(tmp_path_factory.mktemp("actions"), MILTER) as daemon:
        yield daemon


def test_a_milter_sees_and_changes_the_api_message_and_refuses_as_for_smtp(actions, pigeon_factory):
    mailboxes = DOMAIN.replace('"carol"', '"carol", "refused"')  # the milter refuses it
    server = pigeon_factory(
        mailboxes + f'[[milters]]\nname = "actions"\nsocket = "{actions.socket}"\n'
    )
    add_user(server)
    token = _token(server, "alice-app")
    message = _message(USER, "miltered", "X-Test-Action: macros, add-header\r\n")
    status, _, body = _api(server, token, message)
    assert status == 202, body
    text = _arrived(server)[0].decode()
    assert "X-Added: " in text
    macros = next(line for line in text.split("\n") if line.startswith("X-Macros: "))
    seen = dict(item.split("=", 1) for item in macros[len("X-Macros: ") :].split("; "))
    assert seen["{daemon_name}"] == "submission" and seen["{auth_authen}"] == USER
    assert seen["{client_addr}"] == "127.0.0.1" and seen["helo"] == "alice-app"
    assert seen["{rcpt_addr}"] == "bob@example.test" and seen["i"] == json.loads(body)["queue_id"]
    # A recipient the milter refuses: the same reply both ways.
    refused = _message(USER, "to refused").replace(b"bob@", b"refused@")
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60) as client:
        client.starttls(context=insecure_context())
        client.login(USER, PASSWORD)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            client.sendmail(USER, ["refused@example.test"], refused)
    smtp = caught.value.recipients["refused@example.test"]
    doc = problem(send(server, {"raw": refused.decode()}, token), 403)
    assert doc["stage"] == "RCPT" and doc["address"] == "refused@example.test"
    assert "recipient refused by the test milter" in doc["detail"]
    _same_verdict(doc, smtp)


def test_the_api_message_is_dkim_signed_and_arrives(tmp_path):
    proc = PigeonProcess(tmp_path / "p", DOMAIN + f'[dkim]\nkey_dir = "{tmp_path / "dkim"}"\n')
    made = proc.command("dkim", "keygen", "example.test", "--selector", "202612", text=True)
    assert made.returncode == 0, made.stderr
    with proc.start():
        add_user(proc)
        status, _, body = _api(proc, _token(proc, "alice-app"), _message(USER, "signed"))
        assert status == 202, body
        delivered = _arrived(proc)[0]
    head = delivered.split(b"\n\n", 1)[0]
    assert head.count(b"DKIM-Signature: ") == 2, head
    names = ["202612-rsa._domainkey.example.test", "202612-ed25519._domainkey.example.test"]
    with DnsServer(zones={"example.test": zone_records(made.stdout)}) as dns_server:
        keys = published_txt(dns_server.port, names)
    verdict = opendkim_verify(tmp_path / "opendkim", delivered, keys)
    assert verdict.count("dkim=pass") == 2, verdict

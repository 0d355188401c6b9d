"""Every milter action and the macros, through a real libmilter (python3-milter).

The milter (tests/e2e/milters/actions.py) does what the message's
X-Test-Action field asks at end of message; the tests check what arrives
in the Maildir, what the queue holds and what the client was answered.
Failures: a milter that is not there and one that is too slow, with
default_action "tempfail" (451 4.7.1) and "accept" (delivered without it).
"""

from __future__ import annotations

import json
import smtplib
from pathlib import Path

import pytest
from secure_helpers import PASSWORD, USER, add_user, insecure_context

from pigeon.testing.live import maildir_messages, wait_for
from pigeon.testing.milters import libmilter, require_libmilter

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).parent / "milters" / "actions.py"
DOMAIN = '[domains."example.test"]\nmailboxes = ["alice", "bob", "carol", "bounces", "refused"]\n'


@pytest.fixture(scope="module")
def actions(tmp_path_factory):
    require_libmilter()
    with libmilter(tmp_path_factory.mktemp("actions"), SCRIPT) as daemon:
        yield daemon


def _milter(socket: str, **keys) -> str:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    return f'[[milters]]\nname = "actions"\nsocket = "{socket}"\n{extra}'


def _message(actions: str, extra: str = "", body: str = "The original body.\r\n") -> str:
    return (
        "From: alice@example.test\r\n"
        "To: bob@example.test\r\n"
        "Subject: original subject\r\n"
        "X-Remove-Me: one\r\n"
        "X-Remove-Me: two\r\n"
        f"X-Test-Action: {actions}\r\n{extra}"
        "\r\n" + body
    )


def _send(server, message, sender="alice@example.test", rcpts=("bob@example.test",)):
    with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
        return client.sendmail(sender, list(rcpts), message)


def _arrived(server, address="bob@example.test"):
    found = wait_for(lambda: maildir_messages(server.data_dir, address), 30)
    assert found, server.log()
    return found[0].read_bytes().decode()


def _fields(text):
    head = text.split("\n\n", 1)[0]
    return [line.split(":", 1)[0] for line in head.split("\n") if line and line[0] not in " \t"]


def test_macros_reach_the_milter(actions, pigeon_factory):
    server = pigeon_factory(DOMAIN + _milter(actions.socket))
    add_user(server)
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60) as client:
        client.starttls(context=insecure_context())
        client.login(USER, PASSWORD)
        client.sendmail(USER, ["bob@example.test"], _message("macros"))
    text = _arrived(server)
    macros = next(line for line in text.split("\n") if line.startswith("X-Macros: "))
    seen = dict(item.split("=", 1) for item in macros[len("X-Macros: ") :].split("; "))
    assert seen["j"] == "pigeon.test"
    assert seen["{daemon_name}"] == "submission"
    assert seen["{client_addr}"] == "127.0.0.1" and int(seen["{client_port}"]) > 0
    assert seen["{client_name}"] == "unknown" and seen["hostname"] == "unknown"
    assert seen["{tls_version}"].startswith("TLSv1") and seen["{cipher}"]
    assert seen["{auth_authen}"] == USER
    assert seen["{mail_addr}"] == USER and seen["{mail_host}"] == "example.test"
    assert seen["{rcpt_addr}"] == "bob@example.test"
    queue_id = text.split(" bits)) id ", 1)[1].split()[0]
    assert seen["i"] == queue_id
    assert seen["mail_args"].startswith(f"<{USER}> SIZE=")
    assert seen["v"].startswith("pigeon ")
    # Every header field went to the milter, our Received: first (7 fields).
    assert "X-Header-Count: 7" in text


@pytest.mark.parametrize("at_accept", [True, False], ids=["delivered-at-accept", "queued"])
def test_header_actions(actions, pigeon_factory, at_accept):
    # Both ways into a Maildir: written at the accept ([queue] local_at_accept)
    # and committed to the queue first.
    queue = f"[queue]\nlocal_at_accept = {str(at_accept).lower()}\n"
    server = pigeon_factory(DOMAIN + queue + _milter(actions.socket))
    _send(server, _message("insert-header, change-header, add-header"))
    text = _arrived(server)
    assert _fields(text) == [
        "Return-Path",
        "Delivered-To",
        "Authentication-Results",  # [mail_auth] (on by default): the built-in checks' first
        "X-Inserted-Top",  # index 0: above our Received:
        "Received",
        "X-Inserted-2",  # index 2: after Received: and From:
        "From",
        "To",
        "Subject",
        "X-Remove-Me",
        "X-Test-Action",
        "X-Added",
    ]
    assert "\nSubject: changed by the milter\n" in text
    assert "\nX-Remove-Me: one\n" in text and "X-Remove-Me: two" not in text
    assert "\nX-Added: folded\n\tover two lines\n" in text
    assert text.endswith("\n\nThe original body.\n")


def test_replace_body(actions, pigeon_factory):
    server = pigeon_factory(DOMAIN + _milter(actions.socket))
    _send(server, _message("replace-body", body="old line\r\n" * 20000))  # spilled to disk
    text = _arrived(server)
    assert text.endswith("\n\nThe milter wrote\nthis new body.\n")
    assert "old line" not in text


def test_recipients_and_sender_changed(actions, pigeon_factory):
    server = pigeon_factory(DOMAIN + _milter(actions.socket))
    _send(server, _message("add-rcpt, del-rcpt, change-from"))
    text = _arrived(server, "carol@example.test")
    assert text.startswith("Return-Path: <bounces@example.test>\n")
    assert "Delivered-To: carol@example.test\n" in text
    assert maildir_messages(server.data_dir, "bob@example.test") == []


def test_quarantine_holds_the_message(actions, pigeon_factory):
    server = pigeon_factory(DOMAIN + _milter(actions.socket))
    _send(server, _message("quarantine"))
    listed = server.command("queue", "list", "--state", "hold", "--json")
    held = json.loads(listed.stdout)
    assert len(held) == 1, listed
    assert wait_for(lambda: "held by the test milter" in server.log(), 10)
    assert maildir_messages(server.data_dir, "bob@example.test") == []


def test_discard_answers_250_and_drops(actions, pigeon_factory):
    server = pigeon_factory(DOMAIN + _milter(actions.socket))
    assert _send(server, _message("discard")) == {}  # 250 for every recipient
    assert wait_for(lambda: "reason=milter actions (discard)" in server.log(), 10), server.log()
    _send(server, _message("add-header"))  # the next one arrives: nothing was queued before it
    assert "X-Added" in _arrived(server)
    assert len(maildir_messages(server.data_dir, "bob@example.test")) == 1


def test_refusals_at_mail_and_rcpt(actions, pigeon_factory):
    server = pigeon_factory(DOMAIN + _milter(actions.socket))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
        client.ehlo()
        assert client.mail("tempfail@example.test")[0] == 451
        client.rset()
        assert client.mail("alice@example.test")[0] == 250
        code, text = client.rcpt("refused@example.test")
        assert (code, text) == (550, b"5.7.1 recipient refused by the test milter")
        assert client.rcpt("bob@example.test")[0] == 250
        client.data(_message("add-header").encode())
    assert "X-Added" in _arrived(server)


def test_a_connect_refusal_is_given_at_every_rcpt(actions, pigeon_factory):
    server = pigeon_factory(DOMAIN + _milter(actions.socket))
    add_user(server)
    port = server.submissions_port
    with smtplib.SMTP_SSL("127.0.0.1", port, timeout=60, context=insecure_context()) as client:
        client.login(USER, PASSWORD)
        assert client.mail(USER)[0] == 250
        refusal = (554, b"5.7.1 not on port 465, says the test milter")
        assert client.rcpt("bob@example.test") == refusal
        assert client.rcpt("alice@example.test") == refusal
    # The other roles are not refused.
    _send(server, _message("add-header"))
    assert "X-Added" in _arrived(server)


def test_a_helo_refusal_is_given_at_rcpt_until_the_next_helo(actions, pigeon_factory):
    server = pigeon_factory(DOMAIN + _milter(actions.socket))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
        assert client.ehlo("refused.test")[0] == 250
        assert client.mail("alice@example.test")[0] == 250
        assert client.rcpt("bob@example.test") == (550, b"5.7.1 Command rejected")
        client.rset()
        assert client.ehlo("client.test")[0] == 250  # a new HELO, a new answer
        assert client.mail("alice@example.test")[0] == 250
        assert client.rcpt("bob@example.test")[0] == 250


def test_unreachable_milter_tempfails(pigeon_factory, tmp_path):
    server = pigeon_factory(DOMAIN + _milter(f"unix:{tmp_path}/nobody.sock"))
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        _send(server, _message("add-header"))
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        451,
        b"4.7.1 Service unavailable - try again later",
    )
    assert wait_for(lambda: "milter actions failed at connect" in server.log(), 10)


def test_unreachable_milter_accept_goes_on(pigeon_factory, tmp_path):
    server = pigeon_factory(
        DOMAIN + _milter(f"unix:{tmp_path}/nobody.sock", default_action="accept")
    )
    _send(server, _message("add-header"))
    assert "X-Added" not in _arrived(server)


def test_slow_milter_times_out(actions, pigeon_factory):
    server = pigeon_factory(DOMAIN + _milter(actions.socket, content_timeout=1.0))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        _send(server, _message("sleep, add-header"))
    assert refused.value.smtp_code == 451
    assert wait_for(lambda: "no answer within 1s" in server.log(), 10), server.log()


def test_slow_milter_accept_delivers_unchanged(actions, pigeon_factory):
    server = pigeon_factory(
        DOMAIN + _milter(actions.socket, content_timeout=1.0, default_action="accept")
    )
    _send(server, _message("sleep, add-header"))
    assert "X-Added" not in _arrived(server)


def test_reload_adds_and_removes_a_milter(actions, pigeon_factory):
    server = pigeon_factory(DOMAIN)
    _send(server, _message("add-header"))
    assert "X-Added" not in _arrived(server)
    server.config_path.write_text(server.config_path.read_text() + _milter(actions.socket))
    done = server.command("reload", text=True)
    assert done.returncode == 0, done.stderr
    _send(server, _message("add-header"))
    assert wait_for(lambda: len(maildir_messages(server.data_dir, "bob@example.test")) == 2, 30)
    texts = [p.read_text() for p in maildir_messages(server.data_dir, "bob@example.test")]
    assert sum("X-Added" in t for t in texts) == 1


PLUGIN = """\
from pigeon.api import accept


class Plugin:
    def end_of_data(self, session, message):
        return accept(add_headers=[("X-Plugin", "on top")], remove_headers=["X-Test-Action"])
"""


def test_a_plugin_and_a_milter_on_one_message(actions, pigeon_factory, tmp_path):
    # The plugin removes a field (the spool is written again, net/respool.py)
    # and adds one on top; the milter, asked before it, inserts and changes.
    workdir = tmp_path / "p0"  # the first server's directory (tests/e2e/conftest.py)
    workdir.mkdir()
    (workdir / "edit.py").write_text(PLUGIN)  # next to its configuration
    server = pigeon_factory(DOMAIN + _milter(actions.socket) + '[[plugins]]\npath = "edit.py"\n')
    _send(server, _message("insert-header, change-header"))
    text = _arrived(server)
    fields = _fields(text)
    # Our Authentication-Results ([mail_auth], on by default) comes first: the
    # built-in checks are asked before plugins and milters.
    assert fields[2:6] == ["Authentication-Results", "X-Plugin", "X-Inserted-Top", "Received"], (
        fields
    )
    assert "X-Test-Action" not in fields
    assert "\nSubject: changed by the milter\n" in text

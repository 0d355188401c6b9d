"""Capture mode against running pigeons (docs/capture.md).

A pigeon with a capture domain (dev.test) and two capture accounts (two
tenants), and a second pigeon on loopback as the test peer that released
mail must reach (domain peer.test). Mail is sent with smtplib, the API is
used with curl (tests/e2e/test_http_api.py), tokens are made with `pigeon
token add`, as a user would.
"""

from __future__ import annotations

import json
import smtplib
import time

import pytest
from secure_helpers import PASSWORD, add_user, insecure_context
from test_http_api import curl, problem

from pigeon.testing.live import free_port, maildir_messages, wait_for

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
CAROL = "carol@example.test"


def config(peer_port: int, capture: str = "") -> str:
    return (
        'relay_networks = ["127.0.0.0/8"]\n'
        '[domains."localhost"]\n[domains."example.test"]\n'
        '[domains."dev.test"]\ncapture = true\n'
        f'[capture]\naccounts = ["{ALICE}", "{CAROL}"]\n{capture}'
        "[queue]\nrun_interval = 1.0\n"
        '[admin]\nmetrics_listen = ""\n'
        f'[transports]\n"peer.test" = "smtp:[127.0.0.1]:{peer_port}"\n'
    )


def token(server, name: str, scopes: str, tenant: str | None = None) -> str:
    extra = ["--tenant", tenant] if tenant else []
    done = server.command("token", "add", name, "--scope", scopes, *extra, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def message(sender: str, rcpt: str, subject: str, body: str = "Hello.") -> bytes:
    return (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\n{body}\r\n").encode()


def send(server, rcpt: str, subject: str, body: str = "Hello.") -> str:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.ehlo("client.example")
        s.mail("app@client.example")
        assert s.rcpt(rcpt)[0] == 250
        code, reply = s.data(message("app@client.example", rcpt, subject, body))
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[-1]  # "Ok: queued as ID"


def submit(server, user: str, rcpt: str, subject: str) -> str:
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as s:
        s.starttls(context=insecure_context())
        s.ehlo("client.example")
        assert s.login(user, PASSWORD)[0] == 235
        s.mail(user)
        assert s.rcpt(rcpt)[0] == 250
        code, reply = s.data(message(user, rcpt, subject))
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[-1]


def listed(server, tok: str, query: str = "") -> dict:
    status, _, body = curl(server.api_url("/api/capture" + query), token=tok)
    assert status == 200, body
    return json.loads(body)


@pytest.fixture
def peer(pigeon_factory):
    return pigeon_factory('[domains."peer.test"]\n[admin]\nmetrics_listen = ""\n')


@pytest.fixture
def server(pigeon_factory, peer):
    proc = pigeon_factory(config(peer.port))
    add_user(proc, ALICE)
    add_user(proc, CAROL)
    return proc


def test_captured_is_kept_searchable_and_released_on_demand(server):
    qid = send(server, "bob@dev.test", "Your password reset", "Click here.")
    other = send(server, "eve@dev.test", "Weekly digest")
    time.sleep(2.5)  # two runs of the manager (run_interval 1 s): nothing is delivered
    assert maildir_messages(server.data_dir, "bob@dev.test") == []
    reader = token(server, "ci", "read")
    everything = listed(server, reader)
    assert everything["total"] == 2
    assert [e["id"] for e in everything["entries"]] == [other, qid]  # newest first
    found = listed(server, reader, "?subject=password")
    assert [e["id"] for e in found["entries"]] == [qid]
    row = found["entries"][0]
    assert row["tenant"] == "dev.test" and row["recipients"] == ["bob@dev.test"]
    assert listed(server, reader, "?recipient=eve@")["entries"][0]["id"] == other
    status, _, body = curl(server.api_url(f"/api/capture/{qid}"), token=reader)
    view = json.loads(body)
    assert status == 200 and view["text"].strip() == "Click here." and view["html"] is None
    assert ["Subject", "Your password reset"] in view["headers"]
    status, headers, raw = curl(server.api_url(f"/api/capture/{qid}/raw"), token=reader)
    assert status == 200 and headers["content-type"].startswith("message/rfc822")
    assert raw.startswith(b"Received: ") and b"Subject: Your password reset\r\n" in raw
    # Releasing takes the admin scope; the message then goes the usual way.
    problem(curl(server.api_url(f"/api/capture/{qid}/release"), "-X", "POST", token=reader), 403)
    admin = token(server, "ops", "admin")
    status, _, body = curl(server.api_url(f"/api/capture/{qid}/release"), "-X", "POST", token=admin)
    assert status == 200 and json.loads(body)["done"] == [qid], body
    files = wait_for(lambda: maildir_messages(server.data_dir, "bob@dev.test"), timeout=15)
    assert len(files) == 1 and b"Your password reset" in files[0].read_bytes()
    problem(curl(server.api_url(f"/api/capture/{qid}"), token=reader), 404)
    status, _, body = curl(server.api_url(f"/api/capture/{other}"), "-X", "DELETE", token=admin)
    assert status == 200, body
    assert listed(server, reader)["total"] == 0
    assert maildir_messages(server.data_dir, "eve@dev.test") == []
    captured = [line for line in server.log().splitlines() if "captured" in line]
    assert any(qid in line and "tenant=dev.test" in line for line in captured), captured


def test_two_tenants_see_their_own_and_release_reaches_the_peer(server, peer):
    mine = submit(server, ALICE, "friend@peer.test", "from team a")
    theirs = submit(server, CAROL, "friend@peer.test", "from team c")
    team_a = token(server, "team-a", "admin", tenant=ALICE)
    team_c = token(server, "team-c", "read", tenant=CAROL)
    assert [e["id"] for e in listed(server, team_a)["entries"]] == [mine]
    assert [e["id"] for e in listed(server, team_c)["entries"]] == [theirs]
    assert listed(server, team_a, f"?tenant={CAROL}")["total"] == 0
    problem(curl(server.api_url(f"/api/capture/{theirs}"), token=team_a), 404)
    problem(curl(server.api_url(f"/api/capture/{theirs}/raw"), token=team_a), 404)
    problem(curl(server.api_url(f"/api/capture/{theirs}/release"), "-X", "POST", token=team_a), 404)
    # A tenant's token is for captured mail only: not the queue, not sending.
    assert "tenant" in problem(curl(server.api_url("/api/queue"), token=team_a), 403)["detail"]
    assert maildir_messages(peer.data_dir, "friend@peer.test") == []
    status, _, body = curl(
        server.api_url(f"/api/capture/{mine}/release"), "-X", "POST", token=team_a
    )
    assert status == 200, body
    files = wait_for(lambda: maildir_messages(peer.data_dir, "friend@peer.test"), timeout=20)
    assert len(files) == 1 and b"from team a" in files[0].read_bytes()
    time.sleep(1.5)
    assert len(maildir_messages(peer.data_dir, "friend@peer.test")) == 1  # not team c's
    assert [e["id"] for e in listed(server, team_c)["entries"]] == [theirs]
    # The CLI sees the same store.
    done = server.command("capture", "list", "--tenant", CAROL, text=True)
    assert done.returncode == 0 and theirs in done.stdout and mine not in done.stdout


def test_captured_mail_survives_sigkill_and_is_not_delivered_after(server):
    qid = send(server, "bob@dev.test", "kept across a crash")
    server.kill()
    server.start()
    time.sleep(2.5)  # recovery and two manager runs
    assert maildir_messages(server.data_dir, "bob@dev.test") == []
    reader = token(server, "ci", "read")
    assert [e["id"] for e in listed(server, reader)["entries"]] == [qid]
    done = server.command("queue", "list", "--state", "capture", "--json", text=True)
    assert [e["id"] for e in json.loads(done.stdout)["entries"]] == [qid]


def test_size_limit_removes_the_oldest(pigeon_factory, peer):
    limits = 'max_size = "3KB"\nsweep_interval = 0.3\n'
    server = pigeon_factory(config(peer.port, limits))
    reader = token(server, "ci", "read")
    ids = [send(server, f"user{i}@dev.test", f"number {i}", "x" * 900) for i in range(3)]

    def kept() -> list[str]:
        return [e["id"] for e in listed(server, reader)["entries"]]

    assert wait_for(lambda: kept() == [ids[2], ids[1]], timeout=10), kept()
    # The mail log line follows the store's removal (qmgr/capture.py): wait for it
    # rather than read the log in the same instant (CI saw that race once).
    assert wait_for(lambda: "capture limit" in server.log(), timeout=5), server.log()


def test_a_capture_listener_captures_everything_through_it(pigeon_factory, peer):
    port = free_port()
    server = pigeon_factory(
        config(peer.port, f'listeners = ["127.0.0.1:{port}"]\n').replace(
            f'accounts = ["{ALICE}", "{CAROL}"]\n', ""
        ),
        port=port,
    )
    qid = send(server, "friend@peer.test", "through the capture listener")
    reader = token(server, "ci", "read")
    row = listed(server, reader)["entries"][0]
    assert row["id"] == qid and row["tenant"] == f"127.0.0.1:{port}"
    time.sleep(2.0)
    assert maildir_messages(peer.data_dir, "friend@peer.test") == []

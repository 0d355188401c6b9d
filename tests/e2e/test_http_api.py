"""The HTTP API against a running pigeon, with curl (docs/api.md).

A real pigeon on its own ports and data directory; requests are made by
curl from Debian, as a user of the API would; tokens are made with
`pigeon token add` while pigeon runs. The queued message for the queue
routes is for "down.test", whose next hop is a closed loopback port, so
it stays deferred.
"""

from __future__ import annotations

import json
import smtplib
import subprocess

import pytest

from pigeon.testing.live import free_port, maildir_messages, require_tool, wait_for

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"
MAX_BODY = 4096


def curl(
    url: str, *args: str, token: str | None = None, stdin: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one request made by curl."""
    exe = require_tool("curl")
    auth = ["-H", f"Authorization: Bearer {token}"] if token else []
    done = subprocess.run(
        [exe, "-sS", "--max-time", "20", "-D", "-", *auth, *args, url],
        input=stdin,
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def problem(response, status: int) -> dict:
    got, headers, body = response
    assert got == status, body
    assert headers["content-type"].startswith(PROBLEM)
    doc = json.loads(body)
    assert doc["status"] == status and doc["type"] == "about:blank"
    assert doc["title"] and doc["detail"]
    return doc


def token(server, name: str, scopes: str) -> str:
    done = server.command("token", "add", name, "--scope", scopes, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def server(pigeon_factory):
    port = free_port()  # nothing listens here: mail for down.test stays deferred
    return pigeon_factory(
        'relay_networks = ["127.0.0.0/8"]\n[domains."localhost"]\n'
        "[queue]\nrun_interval = 1.0\nmin_backoff = 3600\nmax_backoff = 7200\n"
        '[delivery]\nconnect_timeout = 2.0\n[admin]\nmetrics_listen = ""\n'
        f'[transports]\n"down.test" = "smtp:[127.0.0.1]:{port}"\n'
        f"[console]\nmax_body = {MAX_BODY}\n"  # the harness adds its own listen here
    )


def test_health_ready_and_the_document_need_no_token(server):
    status, headers, body = curl(server.api_url("/api/health"))
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    status, _, body = curl(server.api_url("/api/ready"))
    assert status == 200, body
    assert json.loads(body) == {
        "ready": True,
        "checks": {"queue": True, "listeners": True, "running": True},
    }
    status, _, body = curl(server.api_url("/api/openapi.json"))
    assert status == 200
    document = json.loads(body)
    assert document["openapi"] == "3.1.0"
    assert "/api/queue/{id}/{action}" in document["paths"]


def test_bearer_tokens_and_scopes(server):
    url = server.api_url("/api/queue")
    doc = problem(curl(url), 401)
    assert "token" in doc["detail"]
    assert curl(url)[1]["www-authenticate"] == 'Bearer realm="pigeon"'
    bad = curl(url, token="pgn_not-a-token")
    problem(bad, 401)
    assert 'error="invalid_token"' in bad[1]["www-authenticate"]
    # Made while pigeon runs: good at the next request, no reload.
    sender = token(server, "app", "send")
    denied = curl(url, token=sender)
    assert "read" in problem(denied, 403)["detail"]
    assert 'error="insufficient_scope"' in denied[1]["www-authenticate"]
    reader = token(server, "ops", "read")
    status, _, body = curl(url, token=reader)
    assert status == 200 and json.loads(body)["entries"] == []
    listed = server.command("token", "list", text=True).stdout
    assert listed.startswith("app\tsend\t") and "ops\tread\t" in listed
    assert reader not in server.data_dir.joinpath("api-tokens.json").read_text()
    assert server.command("token", "remove", "ops").returncode == 0
    problem(curl(url, token=reader), 401)


def test_every_error_is_a_problem(server):
    problem(curl(server.api_url("/api/nowhere")), 404)
    wrong = curl(server.api_url("/api/health"), "-X", "DELETE")
    problem(wrong, 405)
    assert "GET" in wrong[1]["allow"]
    admin = token(server, "root", "admin")
    too_big = curl(
        server.api_url("/api/queue/ABCD1234/hold"),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        "@-",
        token=admin,
        stdin=b"x" * (MAX_BODY + 1),
    )
    problem(too_big, 413)
    doc = problem(curl(server.api_url("/api/queue?limit=0"), token=admin), 400)
    assert doc["errors"][0]["field"] == "limit"
    problem(curl(server.api_url("/api/queue/lower-case"), token=admin), 400)
    problem(curl(server.api_url("/api/queue/ABCD1234"), token=admin), 404)
    problem(curl(server.api_url("/api/queue/ABCD1234/explode"), "-X", "POST", token=admin), 404)


def test_list_show_and_act_on_the_queue(server):
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.sendmail("sender@localhost", ["user@down.test"], b"Subject: later\r\n\r\nhi\r\n")
    assert wait_for(lambda: "status=deferred" in server.log(), timeout=20), server.log()
    reader, admin = token(server, "r", "read"), token(server, "a", "admin")

    status, _, body = curl(server.api_url("/api/queue?recipient=down.test"), token=reader)
    assert status == 200, body
    page = json.loads(body)
    assert page["total"] == 1 and page["limit"] == 100
    (entry,) = page["entries"]
    qid = entry["id"]
    assert entry["state"] == "deferred" and entry["sender"] == "sender@localhost"
    for query in ("recipient=nobody", "state=hold", "sender=other", f"id={qid}X"):
        status, _, body = curl(server.api_url(f"/api/queue?{query}"), token=reader)
        assert json.loads(body)["total"] == 0, query
    status, _, body = curl(server.api_url(f"/api/queue?id={qid[:3]}"), token=reader)
    assert json.loads(body)["total"] == 1

    status, _, body = curl(server.api_url(f"/api/queue/{qid}"), token=reader)
    shown = json.loads(body)
    assert status == 200 and shown["id"] == qid and "Subject: later" in shown["headers"]

    act = server.api_url(f"/api/queue/{qid}/hold")
    problem(curl(act, "-X", "POST", token=reader), 403)  # read is not admin
    status, _, body = curl(act, "-X", "POST", token=admin)
    assert status == 200 and json.loads(body)["done"] == [qid], body
    held = curl(server.api_url("/api/queue?state=hold"), token=admin)
    assert [e["id"] for e in json.loads(held[2])["entries"]] == [qid]
    problem(curl(act, "-X", "POST", token=admin), 409)  # held already
    status, _, body = curl(server.api_url(f"/api/queue/{qid}/release"), "-X", "POST", token=admin)
    assert status == 200 and json.loads(body)["done"] == [qid]
    status, _, body = curl(server.api_url(f"/api/queue/{qid}/delete"), "-X", "POST", token=admin)
    assert status == 200 and json.loads(body)["done"] == [qid]
    problem(curl(server.api_url(f"/api/queue/{qid}"), token=reader), 404)


def send(server, body, token: str, content_type: str = "application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return curl(
        server.api_url("/api/send"),
        "-H",
        f"Content-Type: {content_type}",
        "--data-binary",
        "@-",
        token=token,
        stdin=data,
    )


def test_send_structured_is_queued_and_delivered(server):
    sender = token(server, "app", "send")
    status, _, body = send(
        server,
        {
            "from": {"name": "App", "address": "app@localhost"},
            "to": ["alice@localhost"],
            "bcc": "bob@localhost",
            "subject": "Hello from the API",
            "text": "plain body\n",
            "html": "<p>html body</p>",
            "attachments": [
                {"filename": "a.txt", "content_type": "text/plain", "content": "aGVsbG8="}
            ],
            "headers": {"X-Ticket": "42"},
        },
        sender,
    )
    assert status == 202, body
    queued = json.loads(body)
    assert queued["sender"] == "app@localhost"
    assert queued["recipients"] == ["alice@localhost", "bob@localhost"]
    alice = wait_for(lambda: maildir_messages(server.data_dir, "alice@localhost"), timeout=20)
    bob = wait_for(lambda: maildir_messages(server.data_dir, "bob@localhost"), timeout=20)
    assert alice and bob, server.log()
    data = alice[0].read_bytes()
    assert b"Subject: Hello from the API" in data and b"X-Ticket: 42" in data
    assert b"Received: from HTTP API (token app)" in data
    assert b"multipart/alternative" in data and b'filename="a.txt"' in data
    assert b"Bcc" not in data and b"bob@localhost" not in data
    assert b"Message-ID: <" in data and b"Date: " in data
    # the log's own thread writes the line, a moment after the delivery
    assert wait_for(lambda: "token=app" in server.log(), 10), server.log()


def test_send_raw_takes_recipients_from_the_message(server):
    sender = token(server, "raw", "send")
    raw = "From: app@localhost\nTo: alice@localhost\nBcc: bob@localhost\nSubject: raw\n\nbody\n"
    status, _, body = send(server, {"raw": raw}, sender)
    assert status == 202, body
    assert json.loads(body)["recipients"] == ["alice@localhost", "bob@localhost"]
    bob = wait_for(lambda: maildir_messages(server.data_dir, "bob@localhost"), timeout=20)
    assert bob and b"Bcc" not in bob[0].read_bytes()


def test_send_refusals_are_problems(server):
    sender = token(server, "app", "send")
    reader = token(server, "reader", "read")
    ok = {"from": "app@localhost", "to": ["alice@localhost"], "text": "x"}
    problem(send(server, ok, reader), 403)  # read is not send
    doc = problem(send(server, b"{not json", sender), 400)
    assert "JSON" in doc["detail"]
    problem(send(server, b"[1, 2]", sender), 400)
    problem(send(server, json.dumps(ok).encode(), sender, "text/plain"), 415)
    doc = problem(send(server, {"to": "alice@localhost", "color": "red"}, sender), 400)
    fields = {e["field"] for e in doc["errors"]}
    assert {"from", "text", "color"} <= fields
    doc = problem(send(server, {**ok, "to": ["not an address"]}, sender), 400)
    assert doc["errors"][0]["field"] == "to[0]"
    doc = problem(send(server, {**ok, "headers": {"X-A": "1\r\nBcc: evil@x"}}, sender), 400)
    assert doc["errors"][0]["field"] == "headers.X-A"
    problem(send(server, {**ok, "headers": {"From": "x@y"}}, sender), 400)
    doc = problem(send(server, {**ok, "from": "someone@elsewhere.example"}, sender), 403)
    assert "domains" in doc["detail"]
    problem(send(server, {**ok, "text": "x" * MAX_BODY}, sender), 413)
    assert not maildir_messages(server.data_dir, "alice@localhost")


def test_with_workers_only_the_main_process_serves_it(pigeon_factory):
    server = pigeon_factory('workers = 2\n[domains."localhost"]\n[admin]\nmetrics_listen = ""\n')
    # workers = 2: the main process and one worker process accept mail; a
    # worker may answer SMTP before the main process is ready.
    ready = ("pigeon worker ready", "pigeon ready: ")
    assert wait_for(lambda: all(r in server.log() for r in ready), timeout=20), server.log()
    assert server.log().count("HTTP API listening") == 1, server.log()
    assert "HTTP API 127.0.0.1" not in server.log()  # no process failed to bind it
    sender = token(server, "app", "send")
    for _ in range(3):
        assert curl(server.api_url("/api/ready"))[0] == 200
    status, _, body = send(
        server, {"from": "app@localhost", "to": "alice@localhost", "text": "hi"}, sender
    )
    assert status == 202, body
    assert wait_for(lambda: maildir_messages(server.data_dir, "alice@localhost"), timeout=20)


def test_an_address_taken_leaves_mail_running_without_the_api(pigeon_factory):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = pigeon_factory(f'[domains."localhost"]\n[console]\nlisten = "127.0.0.1:{port}"\n')
        assert wait_for(lambda: "pigeon ready: " in server.log(), timeout=20), server.log()
        assert f"HTTP API 127.0.0.1:{port} not started" in server.log()
        assert "--console-listen" in server.log()
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
            s.sendmail("a@localhost", ["alice@localhost"], b"Subject: x\r\n\r\nstill here\r\n")
        assert wait_for(lambda: maildir_messages(server.data_dir, "alice@localhost"), timeout=20)


def test_after_pigeon_restart_the_new_process_serves_it(server):
    reader = token(server, "r", "read")
    old = server.pid
    done = server.restart()
    assert done.returncode == 0, done.stdout + done.stderr
    assert server.pid != old
    # The successor binds the API once it owns the queue (after the old process ended).
    assert wait_for(lambda: server.log().count("HTTP API listening") == 2, timeout=60), server.log()
    status, _, body = curl(server.api_url("/api/queue"), token=reader)
    assert status == 200, body
    assert curl(server.api_url("/api/ready"))[0] == 200

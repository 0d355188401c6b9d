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

from pigeon.testing.live import free_port, require_tool, wait_for

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

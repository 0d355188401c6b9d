"""Issue 15's walk for the API: `curl` with a token made by `pigeon token add`
sends a message through `POST /api/send` that leaves pigeon over SMTP and
arrives at a test peer (a second pigeon on loopback, domain peer.test)."""

from __future__ import annotations

import json

import pytest
from test_http_api import curl

from pigeon.testing.live import maildir_messages, wait_for

pytestmark = pytest.mark.e2e


def test_curl_with_a_token_sends_mail_that_arrives_at_a_peer(pigeon_factory):
    peer = pigeon_factory('[domains."peer.test"]\n[admin]\nmetrics_listen = ""\n')
    server = pigeon_factory(
        '[domains."localhost"]\n'
        "[queue]\nrun_interval = 1.0\n"
        '[admin]\nmetrics_listen = ""\n'
        f'[transports]\n"peer.test" = "smtp:[127.0.0.1]:{peer.port}"\n'
    )
    made = server.command("token", "add", "app", "--scope", "send", text=True)
    assert made.returncode == 0, made.stderr
    body = json.dumps(
        {
            "from": "app@localhost",
            "to": ["bob@peer.test"],
            "subject": "Sent with curl",
            "text": "through the HTTP API to a peer\n",
        }
    ).encode()
    status, _, answer = curl(
        server.api_url("/api/send"),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        "@-",
        token=made.stdout.strip(),
        stdin=body,
    )
    assert status == 202, answer
    queue_id = json.loads(answer)["queue_id"]
    files = wait_for(lambda: maildir_messages(peer.data_dir, "bob@peer.test"), timeout=30)
    assert files, server.log()
    data = files[0].read_bytes()
    assert b"Subject: Sent with curl" in data
    assert b"through the HTTP API to a peer" in data
    assert queue_id in server.log()  # the sender's mail log says where it went

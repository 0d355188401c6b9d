"""The webhook POST client (webhooks/http.py) against real servers on loopback:
plain HTTP statuses, and HTTPS whose certificate is always verified."""

from __future__ import annotations

import asyncio

import pytest

from pigeon.testing.httpsserver import Answer, HttpsServer
from pigeon.testing.testca import TestCa, self_signed
from pigeon.testing.webhookpeer import WebhookReceiver
from pigeon.webhooks.http import PostFailed, post


def _post(url, **kwargs):
    return asyncio.run(post(url, b'{"a":1}', {"Pigeon-Event": "received"}, timeout=5, **kwargs))


def test_plain_http_2xx_and_the_request():
    with WebhookReceiver() as peer:
        peer.status = 204
        assert _post(peer.url + "?x=1") == 204
        [got] = peer.received
    assert got.path == "/hook?x=1" and got.body == b'{"a":1}'
    assert got.headers["Pigeon-Event"] == "received"
    assert got.headers["Content-Length"] == "7"
    assert got.headers["Host"] == f"127.0.0.1:{peer.port}"


@pytest.mark.parametrize("status", [301, 404, 500, 503])
def test_other_statuses_fail(status):
    with WebhookReceiver() as peer:
        peer.status = status
        with pytest.raises(PostFailed, match=f"HTTP status {status}"):
            _post(peer.url)


def test_nobody_listening_fails():
    with WebhookReceiver() as gone:
        url = gone.url
    with pytest.raises(PostFailed):
        _post(url)


def test_https_verified(tmp_path):
    ca = TestCa(tmp_path / "ca")
    cert, key = ca.issue("localhost")
    bad_cert, bad_key = self_signed(tmp_path / "bad", "localhost")
    answers = {"localhost": Answer(path="/hook")}
    with HttpsServer("127.0.0.1", 0, cert, key, answers) as good:
        url = f"https://localhost:{good.port}/hook"
        assert _post(url, ca_file=str(ca.ca_file)) == 200
        assert good.posts[0].body == b'{"a":1}'
        with pytest.raises(PostFailed, match="CERTIFICATE_VERIFY_FAILED"):
            _post(url)  # the system's CAs do not know the test CA
        with pytest.raises(PostFailed, match="CERTIFICATE_VERIFY_FAILED|match"):
            _post(f"https://127.0.0.1:{good.port}/hook", ca_file=str(ca.ca_file))  # not its name
    with HttpsServer("127.0.0.1", 0, bad_cert, bad_key, answers) as bad:
        with pytest.raises(PostFailed, match="CERTIFICATE_VERIFY_FAILED"):
            _post(f"https://localhost:{bad.port}/hook", ca_file=str(ca.ca_file))

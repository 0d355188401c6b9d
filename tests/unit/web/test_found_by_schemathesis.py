"""Regressions found while running schemathesis against the API (tests/e2e/test_http_schemathesis.py).

* A parameter of Unicode digits ("²" is `str.isdigit()`, but int()
  refuses it) was a 500: now a 400 naming the parameter.
* A request aiohttp cannot parse (a NUL in a header field, schemathesis's
  probe) logged aiohttp's "Error handling request" with a traceback:
  now one INFO line, escaped, no traceback (web/server.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pigeon.config.schema import ListenAddress
from pigeon.web.app import WebDeps, build_app
from pigeon.web.server import WebServer
from pigeon.web.tokens import TokenStore


async def _ready() -> dict[str, bool]:
    return {"queue": True}


def deps(tmp_path) -> tuple[WebDeps, dict[str, str]]:
    tokens = TokenStore.in_data_dir(tmp_path)
    token = tokens.add("all", ("send", "read", "admin"), 0.0)
    root = tmp_path / "mailboxes"
    (root / "localhost" / "bob" / "cur").mkdir(parents=True)
    d = WebDeps(
        tokens=tokens, ops={}, ready=_ready, max_body=1000, submit=_ready, mailbox_root=root
    )
    return d, {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "path",
    [
        "/api/queue?limit=%C2%B2",
        "/api/queue?offset=%D9%A3",
        "/api/mailboxes?limit=%C2%B2",
        "/api/mailboxes/bob@localhost/messages?offset=%C2%B2",
        "/api/mailboxes/bob@localhost/messages/1-1/attachments/%C2%B2",
    ],
)
def test_unicode_digits_are_a_400_not_a_500(tmp_path, path):
    d, auth = deps(tmp_path)

    async def main():
        async with TestClient(TestServer(build_app(d))) as client:
            r = await client.get(path, headers=auth)
            return r.status, await r.json()

    status, body = asyncio.run(main())
    assert status == 400, body
    assert body["errors"][0]["field"] in ("limit", "offset", "n")


def test_a_malformed_request_is_one_line_in_the_log(tmp_path, caplog):
    d, _ = deps(tmp_path)

    async def main():
        server = WebServer(build_app(d), ListenAddress("127.0.0.1", 0))
        await server.start()
        try:

            def ask() -> bytes:
                with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                    s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Probe: \x00\r\n\r\n")
                    return s.recv(4096)

            return await asyncio.to_thread(ask)
        finally:
            await server.close()

    with caplog.at_level(logging.DEBUG):
        answer = asyncio.run(main())
    assert answer.split(b" ", 2)[1] == b"400"
    records = [r for r in caplog.records if "malformed request" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert records[0].exc_info is None and "\x00" not in records[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)

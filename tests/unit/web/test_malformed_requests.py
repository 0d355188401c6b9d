"""A request aiohttp cannot parse is answered with an RFC 9457 problem (web/server.py).

Raw bytes over a real socket to the API's own listener (`WebServer`), so
the request goes through aiohttp's protocol handler exactly as a client's
would; the answer is read until the server closes the connection.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from pigeon.config.schema import ListenAddress
from pigeon.web.app import WebDeps, build_app
from pigeon.web.server import WebServer
from pigeon.web.tokens import TokenStore


async def _ready() -> dict[str, bool]:
    return {"queue": True}


def _answer(tmp_path, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    deps = WebDeps(
        tokens=TokenStore.in_data_dir(tmp_path),
        ops={},
        ready=_ready,
        max_body=1000,
        submit=_ready,
        mailbox_root=tmp_path,
    )

    async def main() -> bytes:
        server = WebServer(build_app(deps), ListenAddress("127.0.0.1", 0))
        await server.start()
        try:

            def ask() -> bytes:
                with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                    s.sendall(raw)
                    got = b""
                    for _ in range(100):  # until the server closes (bounded)
                        piece = s.recv(65536)
                        if not piece:
                            break
                        got += piece
                    return got

            return await asyncio.to_thread(ask)
        finally:
            await server.close()

    answer = asyncio.run(main())
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        (b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Probe: \x00\r\n\r\n", "header"),
        (b"GET /api/health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", "header"),
        (b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n", ""),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not HTTP at all\r\n\r\n", ""),
        (b"GET /api/health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", ""),
    ],
    ids=["nul-in-header", "no-colon", "header-too-long", "tls-hello", "bad-length"],
)
def test_a_request_that_does_not_parse_is_a_problem(tmp_path, raw, complaint):
    status, headers, body = _answer(tmp_path, raw)
    assert status == 400
    assert headers["content-type"].startswith("application/problem+json")
    assert headers["connection"] == "close"
    doc = json.loads(body)
    assert doc["type"] == "about:blank" and doc["status"] == 400
    assert doc["title"] == "Bad Request"
    assert doc["detail"].startswith("the request is not HTTP that can be read")
    assert complaint.lower() in doc["detail"].lower()
    assert "\x00" not in doc["detail"] and len(doc["detail"]) < 300


def test_a_good_request_is_still_answered_by_the_application(tmp_path):
    status, headers, body = _answer(
        tmp_path, b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 200 and json.loads(body)["status"] == "ok"

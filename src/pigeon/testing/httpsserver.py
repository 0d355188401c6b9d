"""A small HTTPS server on loopback for tests (MTA-STS policy files), in a thread.

    with HttpsServer("127.0.0.1", 0, cert, key, {"mta-sts.example.test": Answer(body=...)}) as web:
        ... GET https://mta-sts.example.test:{web.port}/.well-known/mta-sts.txt ...
        web.requests     # [(Host, path), ...]
        web.posts        # [Posted(host, path, headers, body), ...]

Contract:
  * Python's `http.server` wrapped in TLS (`ssl`, the certificate and key
    given), one thread per request, on `host:port` (port 0: a free one, read
    back from `.port`).
  * Answers by the request's Host header (port removed): the `Answer` of
    that host (status, content type, body, extra headers) for its path,
    else 404. `answers` may be changed while it runs (tests change a policy).
  * A POST (TLS-RPT reports, RFC 8460 §3) is answered the same way, its
    body read (Content-Length, at most MAX_POST octets) and kept in `.posts`
    with its host, path and headers (names lowercased).
  * Every request is recorded in `.requests`. `close()` (or leaving the
    `with` block) stops and joins the thread. Never used by production code.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["Answer", "HttpsServer", "Posted"]

MAX_POST = 1 << 20


@dataclass(frozen=True)
class Posted:
    """One POST the server received."""

    host: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/plain"
    headers: dict[str, str] = field(default_factory=dict)
    path: str = "/.well-known/mta-sts.txt"


class HttpsServer:
    """See the module contract."""

    def __init__(
        self, host: str, port: int, cert: Path, key: Path, answers: dict[str, Answer]
    ) -> None:
        self.answers = answers
        self.requests: list[tuple[str, str]] = []
        self.posts: list[Posted] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = min(int(self.headers.get("Content-Length") or 0), MAX_POST)
                body = self.rfile.read(length)
                name = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
                headers = {k.lower(): v for k, v in self.headers.items()}
                owner.posts.append(Posted(name, self.path, headers, body))
                self.do_GET()

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                name = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
                owner.requests.append((name, self.path))
                answer = owner.answers.get(name)
                if answer is None or answer.path != self.path:
                    answer = Answer(b"not found\n", 404)
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                for k, v in answer.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> HttpsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(10)

    def __enter__(self) -> HttpsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

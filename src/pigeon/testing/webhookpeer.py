"""A real HTTP receiver for webhook tests, on loopback, in a thread.

    with WebhookReceiver() as peer:            # 127.0.0.1, an ephemeral port
        url = peer.url                          # "http://127.0.0.1:PORT/hook"
        peer.status = 503                       # answer every POST so (default 200)
        got = peer.wait_for(lambda rs: len(rs) >= 2, timeout=10)

Contract:
  * `http.server.ThreadingHTTPServer` on 127.0.0.1 port 0 (or `port`, to
    come back on the same address after `close()`); every POST is recorded
    as a `Received` (path, headers, raw body) and answered `status` with an
    empty body; other methods get 405.
  * `wait_for(predicate, timeout)` polls the list under a lock until the
    predicate holds, returning the list, or raises TimeoutError: every
    wait is bounded (CONTRIBUTING.md rule 18).
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Received", "WebhookReceiver"]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self.status = 200
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with owner._lock:
                    owner.received.append(Received(self.path, dict(self.headers.items()), body))
                    status = owner.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                got = list(self.received)
            if predicate(got):
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"webhook receiver: condition not met in {timeout} s: {got}")
            time.sleep(0.05)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

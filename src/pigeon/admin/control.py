"""The control socket: a Unix-socket JSON-lines server inside the pigeon process.

Contract:
  * Wire format: each request is one JSON object on one line,
    ``{"op": "hold", "ids": ["5F3A..."]}``; each answer is one line,
    ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
    A connection may send many requests; answers come in order. A line
    longer than MAX_REQUEST (1 MiB) or that is not a JSON object is answered
    with an error and the connection is closed.
  * Operations are the injected `handlers` mapping (op name -> async
    function taking the request's other keys as keyword arguments); this
    module knows nothing about queues. `pigeon.admin.ops` builds the
    standard mapping over the queue manager.
  * Access control is the file system: the socket is created mode 0600 (a
    temporary name is bound, chmod'ed, then renamed into place, so the
    final path is never reachable with looser permissions), in a directory
    the pigeon user owns. Whoever can open it is the administrator.
  * A stale socket left by a crash is replaced; a socket another live
    process answers on is not (`ControlError`: pigeon is already running).
  * Rule: handler errors are two-faced (CONTRIBUTING.md, rule 6): `OpError` texts go to
    the client as written (they are meant for the operator); a storage
    fault (disk full, I/O error: `pigeon.queue.health.is_storage_fault`) is
    an expected condition: one warning line and the client is told the
    queue storage is failing; any other exception is logged with its
    traceback and the client gets "internal error".
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from pigeon.admin._sockpath import IO_TIMEOUT, UnixServer, short_path
from pigeon.queue.health import is_storage_fault

__all__ = ["ControlError", "ControlServer", "OpError", "MAX_REQUEST"]

log = logging.getLogger("pigeon.admin")

MAX_REQUEST = 1 << 20

Handler = Callable[..., Awaitable[Any]]


class ControlError(Exception):
    """The control socket cannot be set up (path in use, directory missing...)."""


class OpError(Exception):
    """A request the operator got wrong (unknown id, bad argument): shown as is."""


def _socket_alive(path: Path) -> bool:
    with short_path(path) as name, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(name)
        except OSError:
            return False
        return True


class ControlServer(UnixServer):
    """Serves `handlers` on the Unix socket `path` (see the module contract)."""

    def __init__(
        self, path: Path, handlers: Mapping[str, Handler], *, io_timeout: float = IO_TIMEOUT
    ) -> None:
        super().__init__(path, io_timeout=io_timeout)
        self.handlers = dict(handlers)

    async def start(self) -> None:
        path = self.path
        if path.exists() or path.is_symlink():
            if _socket_alive(path):
                raise ControlError(
                    f"{path}: another pigeon is answering on this control socket "
                    "(a second instance needs its own data_dir, --data-dir, or "
                    "[admin] control_socket)"
                )
            path.unlink()  # stale: the last owner died
        try:
            await self.listen(0o600, limit=MAX_REQUEST + 1)
        except OSError as exc:
            raise ControlError(
                f"{path}: cannot create the control socket: {exc.strerror or exc}"
            ) from None
        log.info("control socket at %s", path)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                line = await self.bounded(reader.readuntil(b"\n"))
            except asyncio.IncompleteReadError:
                break  # client closed
            except asyncio.LimitOverrunError:
                await self._send(writer, {"ok": False, "error": "request too long"})
                break
            if not line.strip():
                continue
            answer, fatal = await self._answer(line)
            await self._send(writer, answer)
            if fatal:
                break

    async def _answer(self, line: bytes) -> tuple[dict[str, Any], bool]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "not JSON"}, True
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return {"ok": False, "error": 'a request is an object with an "op"'}, True
        op = request.pop("op")
        handler = self.handlers.get(op)
        if handler is None:
            return {"ok": False, "error": f"unknown operation {op!r}"}, False
        try:
            inspect.signature(handler).bind(**request)
        except TypeError as exc:
            # Wrong or missing arguments: the caller's mistake, said plainly.
            return {"ok": False, "error": f"{op}: bad arguments ({exc})"}, False
        try:
            return {"ok": True, "result": await handler(**request)}, False
        except OpError as exc:
            return {"ok": False, "error": str(exc)}, False
        except Exception as exc:
            if is_storage_fault(exc):
                # A full or failing disk is an expected condition, not a bug:
                # no traceback (queue/health.py), and the operator is told why.
                log.warning("control operation %s failed: %s", op, exc)
                return {
                    "ok": False,
                    "error": f"{op}: the queue storage is failing ({exc}); "
                    f"try again when it has recovered",
                }, False
            log.exception("control operation %s failed", op)
            return {"ok": False, "error": "internal error (see the pigeon log)"}, False

    async def _send(self, writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
        writer.write(json.dumps(answer, separators=(",", ":"), default=str).encode() + b"\n")
        await self.bounded(writer.drain())

"""The command-line side of the control socket, and the offline fallback.

Contract:
  * `ControlClient(path).call(op, **args)` sends one request (JSON line)
    and returns the "result" of the answer. Errors:
      - `ControlUnavailable`: nothing answers at `path` (pigeon is not
        running, or runs with another data_dir/control_socket); the message
        says so and names the path; its subclass `ControlForbidden`: the
        socket is there but this user may not open it (mode 0600);
      - `RemoteError`: pigeon answered {"ok": false}; its text is for the
        operator.
    Use it as a context manager to send many requests over one connection
    (the CLI's batched actions do).
  * `OfflineQueue(config)` answers the read-only requests (`list`, `show`,
    `status`) from the queue store directly, for when pigeon is not
    running; the results have the same shape as the server's (both are
    built by `pigeon.admin.query` / `pigeon.admin.ops`). It never changes
    the queue: with no manager running, nobody may.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from pigeon.admin._sockpath import short_path
from pigeon.admin.query import Filters, cluster_view, summary

__all__ = ["ControlClient", "ControlForbidden", "ControlUnavailable", "OfflineQueue", "RemoteError"]


class ControlUnavailable(Exception):
    """pigeon is not answering on the control socket."""


class ControlForbidden(ControlUnavailable):
    """The control socket exists but this user may not open it (mode 0600)."""


class RemoteError(Exception):
    """pigeon refused the request; the text explains why."""


class ControlClient:
    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def __enter__(self) -> ControlClient:
        self._connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self) -> None:
        if self._sock is not None:
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            with short_path(self.path) as name:
                s.connect(name)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            s.close()
            raise ControlUnavailable(
                f"pigeon is not running (no answer on {self.path}: {exc.strerror})"
            ) from None
        except PermissionError:
            s.close()
            raise ControlForbidden(
                f"permission denied on the control socket {self.path}: "
                "only root and the user pigeon runs as may use it "
                "(e.g. sudo pigeon ...)"
            ) from None
        except OSError as exc:
            s.close()
            raise ControlUnavailable(
                f"cannot reach pigeon on {self.path}: {exc.strerror or exc}"
            ) from None
        self._sock = s

    def call(self, op: str, **args: Any) -> Any:
        """One request; see the module contract for the errors."""
        one_shot = self._sock is None
        self._connect()
        assert self._sock is not None
        try:
            self._sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
            while b"\n" not in self._buf:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise ControlUnavailable("pigeon closed the control connection")
                self._buf += chunk
        except TimeoutError:
            self.close()
            raise ControlUnavailable(f"pigeon did not answer within {self.timeout:.0f}s") from None
        except OSError as exc:
            self.close()
            raise ControlUnavailable(f"control connection failed: {exc.strerror or exc}") from None
        line, _, self._buf = self._buf.partition(b"\n")
        if one_shot:
            self.close()
        answer = json.loads(line)
        if not answer.get("ok"):
            raise RemoteError(answer.get("error") or "request refused")
        return answer.get("result")


class OfflineQueue:
    """Read-only queue requests answered from the store (pigeon not running)."""

    def __init__(self, config) -> None:
        self.config = config

    def _store(self):
        from pigeon.store.factory import queue_store, shared

        if not shared(self.config) and not (self.config.queue_dir / "queue.db").exists():
            return None
        store = queue_store(self.config, fsync=False)
        store.open()
        return store

    def call(self, op: str, **args: Any) -> Any:
        if op not in ("list", "show", "status"):
            raise ControlUnavailable(
                f"pigeon is not running: '{op}' needs the running server "
                f"(control socket {self.config.control_socket})"
            )
        store = self._store()
        now = time.time()
        try:
            if op == "list":
                if store is None:
                    return {"entries": []}
                flt = Filters.from_dict(args.get("filters"))
                return {
                    "entries": [summary(e, now) for e in store.list(flt.state) if flt.match(e, now)]
                }
            if op == "show":
                from pigeon.admin.control import OpError
                from pigeon.admin.ops import show_entry

                if store is None:
                    raise RemoteError(f"no such message in the queue: {args.get('id')}")
                try:
                    return show_entry(store, args["id"], self.config.log.file, now)
                except OpError as exc:
                    raise RemoteError(str(exc)) from None
            counts = store.counts() if store is not None else {}
            cluster = cluster_view(store) if store is not None else None
            return {"running": False, "queue": counts, **({"cluster": cluster} if cluster else {})}
        finally:
            if store is not None:
                store.close()

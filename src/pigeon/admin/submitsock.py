"""The submit socket: how local users who cannot write the queue send mail.

Postfix gives `sendmail` the setgid `postdrop` for this; pigeon listens on
a Unix socket any local user may connect to, and learns who is there from
the kernel (SO_PEERCRED), never from the client.

Contract:
  * Wire format, one message per connection. The client sends one JSON
    line (at most MAX_HEADER octets):
      {"recipients": [...], "extract": bool, "sender": str|null,
       "fullname": str, "raw": bool, "size": N}
    then exactly N octets: the message as read by `sendmail` (any line
    endings). The server answers one line, {"ok": true, "queue_id": ID,
    "sender": S} once the message is durable (the same group commit and
    fsync as SMTP mail), or {"ok": false, "error": TEXT, "code": N} with a
    sysexits.h code (64 usage, 65 too big, 67 bad address, 75 try again).
  * Who sends: the peer's uid from SO_PEERCRED. The envelope sender is
    that user's login @ the primary local domain (like Postfix's
    myorigin); "sender" (sendmail -f) is honoured only for TRUSTED users:
    root and the uid pigeon runs as (Sendmail's and Postfix's "trusted
    users"). Our Received: field records the uid.
  * The message is fixed up like every local submission
    (pigeon.admin.localsubmit.prepare: From/Date/Message-ID, -t, Bcc
    removal) with that sender; with "raw" (sendmail -bs) it is queued as
    given. The committed envelope goes to the queue manager (`on_queued`)
    and the mail log gets its "(queued)" line with the uid.
  * Bounds: a size over limits.message_size is refused before the content
    is read; at most MAX_CLIENTS messages are read at once (the others
    wait); each connection has timeouts.data_total to send everything
    (a message read in full is then queued whatever the client does).
  * Access: the socket is bound under a temporary name, made mode 0666 and
    renamed into place; `publish()` (called after pigeon dropped root,
    whose hand-over makes every file private) sets 0666 again and makes its
    directory searchable (o+x, not readable), so local users reach the
    socket and nothing else. A stale socket is replaced.
  * Client side: `submit(path, request, content)` returns the answer or
    raises `SubmitUnavailable` (nothing answers) / `SubmitError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pigeon.admin import localsubmit as L
from pigeon.admin._sockpath import UnixServer, short_path
from pigeon.policy.capture import CaptureRules

__all__ = [
    "MAX_CLIENTS",
    "MAX_HEADER",
    "SubmitServer",
    "SubmitUnavailable",
    "commit_submitted",
    "peer_uid",
    "reachable",
    "submit",
]

log = logging.getLogger("pigeon.admin")

MAX_HEADER = 1 << 20
MAX_CLIENTS = 8


class SubmitUnavailable(Exception):
    """Nothing answers on the submit socket (pigeon is not running)."""


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (Linux SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def login_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


class SubmitServer(UnixServer):
    """Serves the submit socket for one running pigeon (see the module contract)."""

    def __init__(
        self,
        path: Path,
        *,
        config,
        store,
        on_queued: Callable[[Any], None],
        maillog: Any = None,
        clock: Callable[[], float] = time.time,
        trusted_uids: set[int] | None = None,
        signer: Callable[[], Any] = lambda: None,
        metrics: Any = None,
    ) -> None:
        from pigeon.routing.resolve import Router

        super().__init__(path)
        self.metrics = metrics
        self.config = config
        self.store = store
        self.on_queued = on_queued
        self.maillog = maillog
        self.clock = clock
        self.signer = signer  # the DKIM signer in force (it follows reloads), or None
        self.domain = Router(config).primary_domain
        self.trusted = {0, os.geteuid()} if trusted_uids is None else set(trusted_uids)
        self._slots = asyncio.Semaphore(MAX_CLIENTS)

    async def start(self) -> None:
        path = self.path
        if path.exists() or path.is_symlink():
            path.unlink()  # the control socket already proved we are alone
        try:
            await self.listen(0o666, limit=MAX_HEADER + 1, backlog=64)
        except OSError as exc:
            from pigeon.admin.control import ControlError

            raise ControlError(
                f"{path}: cannot create the submit socket: {exc.strerror or exc}"
            ) from None
        self.publish()
        log.info("submit socket for local users at %s", path)

    def publish(self) -> None:
        """Socket 0666, its directory searchable by all (see the contract)."""
        os.chmod(self.path, 0o666)
        parent = self.path.parent
        st = parent.stat()
        if st.st_uid == os.geteuid() and (st.st_mode & 0o011) != 0o011:
            os.chmod(parent, (st.st_mode & 0o7777) | 0o011)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        uid = peer_uid(writer.get_extra_info("socket"))
        try:
            async with self._slots:
                # Only the reading is bounded in time: once the message is
                # in, it is queued (or refused) whatever the client does.
                request, raw = await asyncio.wait_for(
                    self._read(reader), self.config.timeouts.data_total
                )
                answer = await self._queue(request, raw, uid)
        except L.SubmitError as exc:
            answer = {"ok": False, "error": str(exc), "code": exc.code}
        except (TimeoutError, asyncio.IncompleteReadError):
            return  # the client stalled or went away
        except Exception:
            log.exception("local submission failed")
            answer = {
                "ok": False,
                "error": "internal error (see the pigeon log)",
                "code": L.EX_SOFTWARE,
            }
        writer.write(json.dumps(answer).encode() + b"\n")
        await self.bounded(writer.drain())

    async def _read(self, reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise L.SubmitError("request header too long", L.EX_USAGE) from None
        request = _check_request(line)
        limit = self.config.limits.message_size
        if limit and request["size"] > limit:
            raise L.SubmitError(
                f"message too big: {request['size']} octets, the limit is {limit}", L.EX_DATAERR
            )
        return request, await reader.readexactly(request["size"])

    async def _queue(self, request: dict[str, Any], raw: bytes, uid: int) -> dict[str, Any]:
        sender = f"{login_name(uid)}@{self.domain}"
        if uid in self.trusted and request["sender"] is not None:
            given = request["sender"].strip()
            sender = "" if given in ("", "<>") else L.normalize_address(given, self.domain)
        spool, env = await asyncio.to_thread(self._spool, raw, request, sender, uid)
        await commit_submitted(
            self.store,
            spool,
            env,
            maillog=self.maillog,
            on_queued=self.on_queued,
            who={"uid": uid},
            capture=CaptureRules.of(self.config),
            metrics=self.metrics,
        )
        return {"ok": True, "queue_id": env.queue_id, "sender": env.sender}

    def _spool(self, raw: bytes, request: dict, sender: str, uid: int):
        """Fix-ups and spool write, in a worker thread (a big message is CPU and disk work)."""
        cfg = self.config
        if request["raw"]:
            prepared = L.prepare_raw(raw, recipients=request["recipients"], domain=self.domain)
        else:
            prepared = L.prepare(
                raw,
                recipients=request["recipients"],
                extract=request["extract"],
                sender=sender,
                fullname=request["fullname"],
                hostname=cfg.hostname,
                domain=self.domain,
            )
        return L.spool_message(
            self.store,
            prepared,
            sender=sender,
            hostname=cfg.hostname,
            uid=uid,
            now=self.clock(),
            max_size=cfg.limits.message_size,
            signer=self.signer(),
        )


async def commit_submitted(
    store,
    spool,
    env,
    *,
    maillog: Any,
    on_queued: Callable[[Any], None],
    who: dict[str, Any],
    capture: CaptureRules = CaptureRules.NONE,
    metrics: Any = None,
) -> None:
    """Commit a spooled local submission (the same group commit and fsync as
    SMTP mail), log its "(queued)" line with `who` sent it, and hand it to
    the queue manager, unless `capture` (a capture domain) captures it: it
    is then logged "captured" and kept (docs/capture.md). SubmitError
    EX_TEMPFAIL when the store fails: nothing was acknowledged. Shared by
    the submit socket and the HTTP API. Counted in `metrics` (obs/metrics.py
    `message_accepted`) as SMTP mail is, so the console's "in" has it too."""
    from pigeon.vocab.errors import StoreError

    capture.mark(env)
    try:
        await asyncio.wrap_future(store.commit_async(spool, env))
    except StoreError as exc:
        raise L.SubmitError(f"cannot queue the message: {exc}", L.EX_TEMPFAIL) from None
    if metrics is not None:
        metrics.message_accepted(env.size)
    if maillog is not None:
        maillog.log(
            env.queue_id,
            {
                **who,
                "from": env.sender,
                "size": env.size,
                "nrcpt": len(env.recipients),
                "proto": env.protocol,
            },
            "queued",
        )
    if env.capture:
        if maillog is not None:
            maillog.log(env.queue_id, {"tenant": env.capture}, "captured")
        return
    on_queued(env)


def _check_request(line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except ValueError:
        raise L.SubmitError("bad request: not JSON", L.EX_USAGE) from None
    if not isinstance(request, dict):
        raise L.SubmitError("bad request: not an object", L.EX_USAGE)
    rcpts = request.get("recipients", [])
    size = request.get("size")
    sender = request.get("sender")
    ok = (
        isinstance(rcpts, list)
        and all(isinstance(r, str) for r in rcpts)
        and isinstance(size, int)
        and not isinstance(size, bool)
        and size >= 0
        and (sender is None or isinstance(sender, str))
        and isinstance(request.get("fullname", ""), str)
    )
    if not ok:
        raise L.SubmitError("bad request: wrong field types", L.EX_USAGE)
    return {
        "recipients": rcpts,
        "size": size,
        "sender": sender,
        "extract": bool(request.get("extract")),
        "raw": bool(request.get("raw")),
        "fullname": request.get("fullname", ""),
    }


# --- the client side (sendmail) ------------------------------------------------------


def reachable(path: Path) -> None:
    """Raise SubmitUnavailable unless pigeon answers on `path` (the server sees an empty
    connection and drops it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10.0)
        try:
            with short_path(Path(path)) as name:
                s.connect(name)
        except OSError as exc:
            raise SubmitUnavailable(f"no answer on {path}: {exc.strerror or exc}") from None


def submit(
    path: Path, request: dict[str, Any], content: bytes, timeout: float = 120.0
) -> dict[str, Any]:
    """Send one message (see the contract); the server's answer when it is "ok".

    Raises SubmitUnavailable when nothing answers at `path`, SubmitError
    (with the server's code) when the server refused the message."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            with short_path(Path(path)) as name:
                s.connect(name)
        except OSError as exc:
            raise SubmitUnavailable(f"no answer on {path}: {exc.strerror or exc}") from None
        answer = b""
        try:
            try:
                s.sendall(json.dumps({**request, "size": len(content)}).encode() + b"\n")
                s.sendall(content)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused early (too big...): its answer says why
            while not answer.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except OSError as exc:
            raise L.SubmitError(
                f"the submission to {path} failed: {exc.strerror or exc}; "
                "the message was not queued",
                L.EX_TEMPFAIL,
            ) from None
    finally:
        s.close()
    try:
        reply = json.loads(answer)
    except ValueError:
        raise L.SubmitError(
            f"pigeon closed {path} without an answer; the message was not queued", L.EX_TEMPFAIL
        ) from None
    if not reply.get("ok"):
        raise L.SubmitError(
            str(reply.get("error") or "refused"), int(reply.get("code") or L.EX_TEMPFAIL)
        )
    return reply

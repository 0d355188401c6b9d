"""The control socket's operations: requests in, queue manager (pigeon.qmgr) calls out.

Contract:
  * `build_handlers(...)` returns the op-name -> async handler mapping that
    `ControlServer` serves. Read-only ops: `ping`, `status`, `list`, `show`.
    Queue actions (all delegated to the queue manager, the only owner of
    queue state): `hold`, `release`, `delete`, `requeue` (each with
    `ids=[...]` or `all=true`), `bounce` (`ids` only: returning all mail
    to its senders in one command is too easy to do by mistake), `flush`
    (`domain` optional; with a shared queue every node is told to flush
    too, and `release`/`requeue` wake every node: app/clusterwake.py), and `nudge` (sendmail's "new mail, look now";
    with `ids` it also writes their "(queued)" mail-log line, since the
    sendmail process has no access to the server's log). `reload` runs the
    injected `reload` coroutine (pigeon.app.lifecycle: the same as SIGHUP) and
    answers its outcome, {"status": "applied"|"unchanged"|"refused",
    "applied", "restart", "errors", "warnings"}: a refused reload is a
    result, not an error, so the operator sees why. `restart` runs the
    injected `restart` coroutine (pigeon.app.restart: a new process takes
    over the listening sockets) and answers {"status": "started", "old_pid",
    "new_pid", "grace"}, {"status": "refused", "errors"} (the configuration
    does not load) or {"status": "failed", "error"} (the new process did not
    start; this one goes on).
    `stop` runs the injected `stop` coroutine (the stop SIGTERM makes,
    app/lifecycle.py) and answers {"pid", "within"}: the process to watch,
    and the seconds within which it will be gone (`pigeon stop` waits).
    `reports` (`now` true or false) runs the injected `reports` coroutine
    (app/reportjob.py: the aggregate reports made and queued now) and
    answers its summary; refused when reports are off.
  * The capture operations (`capture_list`, `capture_show`, `capture_raw`,
    `capture_release`, `capture_delete`) are admin/capture.py's.
  * Arguments are checked here and refused with `OpError` (shown to the
    operator): ids must be a list of queue-id strings, at most
    MAX_IDS per request (the CLI sends big selections in batches, which is
    also what drives its progress bar).
  * Results are JSON-ready dicts; the field names are part of the
    `--json` output of the CLI and are kept stable.
  * Reads of the store run in worker threads (they wait on SQLite's lock
    while the manager writes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pigeon.admin.capture import capture_handlers
from pigeon.admin.control import OpError
from pigeon.admin.query import Filters, cluster_view, read_headers, summary
from pigeon.obs.history import message_history
from pigeon.vocab.errors import StoreError

__all__ = ["build_handlers", "MAX_IDS", "show_entry"]

log = logging.getLogger("pigeon.admin")

MAX_IDS = 10_000
_QID = re.compile(r"^[0-9A-Z]{4,64}$")


def _check_ids(ids: Any, all_: bool, *, allow_all: bool = True) -> list[str] | None:
    if all_:
        if not allow_all:
            raise OpError("this action needs explicit queue ids")
        if ids:
            raise OpError("give queue ids or all, not both")
        return None
    if not isinstance(ids, list) or not ids:
        raise OpError("give one or more queue ids" + (" (or all)" if allow_all else ""))
    if len(ids) > MAX_IDS:
        raise OpError(f"at most {MAX_IDS} ids per request")
    bad = [i for i in ids if not isinstance(i, str) or not _QID.match(i)]
    if bad:
        raise OpError(f"not a queue id: {bad[0]!r}")
    return ids


def _reason(exc: StoreError) -> str:
    """The reason a store gave, as strerror was shown before: the text
    after the OSError's "[Errno N] " when there was one."""
    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(exc)


def show_entry(store, queue_id: str, log_file: Path | None, now: float) -> dict[str, Any]:
    """Everything `pigeon queue show` prints; blocking (store + files). OpError if unknown."""
    entry = store.entry(queue_id)
    if entry is None:
        raise OpError(f"no such message in the queue: {queue_id}")
    out = summary(entry, now)
    if entry.envelope is not None:
        out["envelope"] = entry.envelope.to_dict()
    try:
        out["headers"] = read_headers(store.content(queue_id))
    except StoreError as exc:
        out["headers"] = None
        out["headers_error"] = _reason(exc)
    out["history"] = []
    if log_file is not None:
        try:
            out["history"] = message_history(log_file, queue_id)
        except (OSError, ValueError):
            pass
    return out


def build_handlers(
    *,
    store,
    manager,
    maillog=None,
    log_file: Path | None = None,
    server_stats: Callable[[], dict] | None = None,
    clock: Callable[[], float] = time.time,
    started_at: float | None = None,
    reload: Callable[[], Awaitable[dict]] | None = None,
    restart: Callable[[], Awaitable[dict]] | None = None,
    stop: Callable[[], Awaitable[dict]] | None = None,
    reports: Callable[..., Awaitable[dict]] | None = None,
) -> dict[str, Callable]:
    """The handlers for `ControlServer` (see the module contract)."""
    started = started_at if started_at is not None else clock()

    async def ping() -> dict:
        return {"pid": os.getpid()}

    async def nudge(ids: list[str] | None = None, uid: int | None = None) -> dict:
        # Local submission (sendmail) committed `ids` from another process:
        # log their reception here, where the mail log lives, so `pigeon log`
        # and the log file tell the whole story (Postfix's "pickup" line).
        if ids:
            chosen = _check_ids(ids, False)
            for qid in chosen or []:
                entry = await asyncio.to_thread(store.entry, qid)
                if entry is None or entry.envelope is None or maillog is None:
                    continue
                env = entry.envelope
                maillog.log(
                    qid,
                    {
                        "uid": uid if isinstance(uid, int) else None,
                        "from": env.sender,
                        "size": env.size,
                        "nrcpt": len(env.recipients),
                        "proto": env.protocol,
                    },
                    "queued",
                )
        manager.nudge()
        return {}

    async def status() -> dict:
        stats = await asyncio.to_thread(manager.statistics)
        out = {
            "pid": os.getpid(),
            "uptime": max(0.0, clock() - started),
            "server": server_stats() if server_stats is not None else {},
            **stats,
        }
        cluster = await asyncio.to_thread(cluster_view, store)  # a shared queue's nodes
        if cluster is not None:
            out["cluster"] = cluster
        return out

    async def list_(filters: dict | None = None) -> dict:
        try:
            flt = Filters.from_dict(filters)
        except (TypeError, ValueError) as exc:
            raise OpError(f"bad filters: {exc}") from None
        now = clock()

        def read() -> list[dict]:
            return [summary(e, now) for e in store.list(flt.state) if flt.match(e, now)]

        entries = await asyncio.to_thread(read)
        return {"entries": entries}

    async def show(id: str) -> dict:  # noqa: A002 - the wire name
        if not isinstance(id, str) or not _QID.match(id):
            raise OpError(f"not a queue id: {id!r}")
        return await asyncio.to_thread(show_entry, store, id, log_file, clock())

    async def tell_nodes(message: dict) -> None:
        # A shared queue: every node hears it (app/clusterwake.py); best effort,
        # the action itself is done and each node scans on its own anyway.
        tell = getattr(store, "tell_nodes", None)
        if tell is None:
            return
        try:
            await asyncio.to_thread(tell, message)
        except StoreError as exc:
            log.warning("could not tell the other nodes (%s): %s", message.get("op"), exc)

    def action(name: str, *, allow_all: bool = True) -> Callable:
        async def run(ids: list[str] | None = None, all: bool = False) -> dict:  # noqa: A002
            chosen = _check_ids(ids, bool(all), allow_all=allow_all)
            result = await getattr(manager, name)(chosen)
            if name in ("release", "requeue") and result.done:
                await tell_nodes({"op": "wake"})  # due now: idle nodes take their share
            return result.to_dict()

        run.__name__ = name
        return run

    async def flush(domain: str | None = None) -> dict:
        if domain is not None and (not isinstance(domain, str) or not domain.strip()):
            raise OpError("domain must be a non-empty string")
        result = await manager.flush(domain)
        await tell_nodes({"op": "flush", "domain": domain})  # every node flushes too
        return result

    async def reload_() -> dict:
        if reload is None:
            raise OpError("this pigeon cannot reload its configuration")
        return await reload()

    async def restart_() -> dict:
        if restart is None:
            raise OpError("this pigeon cannot restart itself")
        return await restart()

    async def stop_() -> dict:
        if stop is None:
            raise OpError("this pigeon cannot be stopped through its control socket")
        return await stop()

    async def reports_(now: bool = False) -> dict:
        if not isinstance(now, bool):
            raise OpError("now must be true or false")
        if reports is None:
            raise OpError("reports are off: set [reports] dmarc or tls to true")
        return await reports(now=now)

    return {
        "ping": ping,
        "nudge": nudge,
        "status": status,
        "list": list_,
        "show": show,
        "hold": action("hold"),
        "release": action("release"),
        "delete": action("delete"),
        "requeue": action("requeue"),
        "bounce": action("bounce", allow_all=False),
        "flush": flush,
        "reload": reload_,
        "restart": restart_,
        "stop": stop_,
        "reports": reports_,
        **capture_handlers(store=store, manager=manager),  # admin/capture.py
    }

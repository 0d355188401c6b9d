"""Captured mail for operators and the API: list, search, read, release, delete.

Contract:
  * `capture_handlers(store=, manager=)` returns the control socket's
    capture operations (merged into admin/ops.py's table, so `pigeon
    capture`, the HTTP API and any other caller see the same thing):
      capture_list     {tenant, sender, recipient, subject, q, limit, offset}
                       -> {total, offset, limit, entries}: newest first
      capture_show     {id, tenant} -> one message's view (`message_view`)
      capture_raw      {id, tenant} -> {id, raw}: the message, base64
      capture_release  {ids, tenant} -> the manager's result
      capture_delete   {ids, tenant} -> the manager's result
    Every operation takes an optional `tenant`: with it, a message of
    another tenant is "no such captured message", as one that does not
    exist (tenancy, docs/capture.md). Release and delete are the queue
    manager's (qmgr/capture.py); reads run in worker threads.
  * Searching is substring, case-insensitive: `sender` in the envelope
    sender, `recipient` in any envelope recipient, `subject` in the
    Subject field, `q` in any of them or the From:/To: fields. Filters
    combine with AND.
  * `message_view(entry, raw)` and `summary(entry, head)` are pure: they
    parse with the standard library's email package (RFC 5322, MIME) and
    never raise on a malformed message (a part that does not decode is
    shown as undecodable, never dropped silently).
  * Bad arguments are `OpError` (shown to the caller as 400/usage).
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import re
from collections.abc import Callable
from typing import Any

from pigeon.admin.control import OpError
from pigeon.admin.query import read_headers
from pigeon.queue.api import QueueEntry
from pigeon.vocab import QueueState, StoreError

__all__ = ["capture_handlers", "message_view", "summary"]

_QID = re.compile(r"^[0-9A-Z]{4,64}$")
MAX_LIMIT = 1000
MAX_IDS = 1000


def _field(msg: Any, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # a field the header parser cannot make sense of
        return ""
    return str(value) if value is not None else ""


def summary(entry: QueueEntry, head: str) -> dict[str, Any]:
    """The list row of a captured entry whose header section is `head`."""
    env = entry.envelope
    assert env is not None
    msg = email.message_from_string(head + "\n\n", policy=email.policy.default)
    return {
        "id": entry.queue_id,
        "tenant": env.capture,
        "received_at": env.received_at,
        "size": env.size,
        "sender": env.sender,
        "recipients": [r.address for r in env.recipients],
        "from": _field(msg, "From"),
        "to": _field(msg, "To"),
        "subject": _field(msg, "Subject"),
    }


def _text(part: Any) -> str | None:
    try:
        content = part.get_content()
    except Exception:  # an unknown charset, a broken transfer encoding
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")
    return content if isinstance(content, str) else None


def message_view(entry: QueueEntry, raw: bytes) -> dict[str, Any]:
    """Envelope, header fields, text and HTML bodies, attachments (pure)."""
    end = raw.find(b"\r\n\r\n")
    head = raw[: end if end >= 0 else len(raw)].decode("utf-8", "replace").replace("\r\n", "\n")
    out = summary(entry, head)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    out["headers"] = [[name, _field(msg, name)] for name in dict.fromkeys(msg.keys())]
    out["date"] = _field(msg, "Date")
    out["message_id"] = _field(msg, "Message-ID")
    text = html = None
    try:
        plain = msg.get_body(preferencelist=("plain",))
        rich = msg.get_body(preferencelist=("html",))
        text = _text(plain) if plain is not None else None
        html = _text(rich) if rich is not None else None
        parts = list(msg.iter_attachments()) if msg.is_multipart() else []
    except Exception:  # a MIME structure the parser gives up on
        parts = []
    out["text"], out["html"] = text, html
    attachments = []
    for part in parts:
        payload = part.get_payload(decode=True) or b""
        attachments.append(
            {
                "filename": part.get_filename() or "",
                "content_type": part.get_content_type(),
                "size": len(payload),
            }
        )
    out["attachments"] = attachments
    return out


def _matches(row: dict[str, Any], filters: dict[str, str]) -> bool:
    def has(value: str, wanted: str) -> bool:
        return wanted.lower() in value.lower()

    for name, wanted in filters.items():
        if name == "sender" and not has(row["sender"], wanted):
            return False
        if name == "recipient" and not any(has(r, wanted) for r in row["recipients"]):
            return False
        if name == "subject" and not has(row["subject"], wanted):
            return False
        if name == "q":
            fields = [row["sender"], row["subject"], row["from"], row["to"], *row["recipients"]]
            if not any(has(f, wanted) for f in fields):
                return False
    return True


def _check_id(qid: Any) -> str:
    if not isinstance(qid, str) or not _QID.match(qid):
        raise OpError(f"not a queue id: {qid!r}")
    return qid


def _check_tenant(tenant: Any) -> str | None:
    if tenant is not None and not isinstance(tenant, str):
        raise OpError("tenant must be a string")
    return tenant.lower() if tenant else None  # tenants are stored lowercased


def _check_ids(ids: Any) -> list[str]:
    if not isinstance(ids, list) or not ids:
        raise OpError("give one or more queue ids")
    if len(ids) > MAX_IDS:
        raise OpError(f"at most {MAX_IDS} ids per request")
    return [_check_id(i) for i in ids]


def _page(value: Any, name: str, default: int, high: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise OpError(f"{name} must be an integer from 0 to {high}")
    return value


def capture_handlers(*, store: Any, manager: Any) -> dict[str, Callable[..., Any]]:
    """The capture operations (module contract)."""

    def captured(qid: str, tenant: str | None) -> QueueEntry:
        entry = store.entry(qid)
        if (
            entry is None
            or entry.state != QueueState.CAPTURE
            or entry.envelope is None
            or (tenant is not None and entry.envelope.capture != tenant)
        ):
            raise OpError(f"no such captured message: {qid}")
        return entry

    def raw_of(qid: str) -> bytes:
        try:
            with store.content(qid).open() as fh:
                return bytes(fh.read())
        except StoreError as exc:
            raise OpError(f"{qid}: content unreadable: {exc}") from None

    async def list_(
        tenant: str | None = None,
        sender: str | None = None,
        recipient: str | None = None,
        subject: str | None = None,
        q: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        tenant = _check_tenant(tenant)
        wanted = {"sender": sender, "recipient": recipient, "subject": subject, "q": q}
        for name, value in wanted.items():
            if value is not None and not isinstance(value, str):
                raise OpError(f"{name} must be a string")
        filters = {k: v for k, v in wanted.items() if v}
        size = _page(limit, "limit", 100, MAX_LIMIT) or 1
        skip = _page(offset, "offset", 0, 10**9)

        def read() -> list[dict[str, Any]]:
            rows = []
            for entry in store.list(QueueState.CAPTURE):
                env = entry.envelope
                if env is None or (tenant is not None and env.capture != tenant):
                    continue
                try:
                    head = read_headers(store.content(entry.queue_id))
                except StoreError:
                    head = ""
                row = summary(entry, head)
                if _matches(row, filters):
                    rows.append(row)
            rows.sort(key=lambda r: (r["received_at"], r["id"]), reverse=True)
            return rows

        rows = await asyncio.to_thread(read)
        page = rows[skip : skip + size]
        return {"total": len(rows), "offset": skip, "limit": size, "entries": page}

    async def show(id: str, tenant: str | None = None) -> dict[str, Any]:  # noqa: A002
        qid, tenant = _check_id(id), _check_tenant(tenant)

        def read() -> dict[str, Any]:
            entry = captured(qid, tenant)
            return message_view(entry, raw_of(qid))

        return await asyncio.to_thread(read)

    async def raw(id: str, tenant: str | None = None) -> dict[str, Any]:  # noqa: A002
        qid, tenant = _check_id(id), _check_tenant(tenant)

        def read() -> bytes:
            captured(qid, tenant)
            return raw_of(qid)

        data = await asyncio.to_thread(read)
        return {"id": qid, "raw": base64.b64encode(data).decode("ascii")}

    async def release(ids: Any = None, tenant: str | None = None) -> dict[str, Any]:
        result = await manager.capture.release(_check_ids(ids), _check_tenant(tenant))
        return dict(result.to_dict())

    async def delete(ids: Any = None, tenant: str | None = None) -> dict[str, Any]:
        result = await manager.capture.delete(_check_ids(ids), _check_tenant(tenant))
        return dict(result.to_dict())

    return {
        "capture_list": list_,
        "capture_show": show,
        "capture_raw": raw,
        "capture_release": release,
        "capture_delete": delete,
    }

"""Captured mail over HTTP (docs/capture.md, docs/api.md "Captured mail").

Contract:
  * Every route calls the control socket's capture operations
    (admin/capture.py), so the API sees and does what `pigeon capture`
    does; release and delete are the queue manager's (qmgr/capture.py).
  * GET /api/capture (scope read): the captured messages, newest first,
    filtered by `tenant`, `sender`, `recipient`, `subject` and `q` (any
    of them; each a case-insensitive substring), paged with `limit`
    (1-1000, default 100) and `offset`: {total, offset, limit, entries}.
  * GET /api/capture/{id} (read): envelope, header fields, text and HTML
    bodies, attachments (name, type, size). GET /api/capture/{id}/raw
    (read): the message as received, `message/rfc822`.
  * DELETE /api/capture/{id} and POST /api/capture/{id}/release (scope
    admin): 200 with the manager's result {done, pending, skipped,
    unknown}. Release hands the message to the real queue with its
    original envelope (it then gets routing, retries and bounces).
  * Tenancy: a token limited to a tenant (`pigeon token add --tenant`,
    web/tokens.py) sees and acts on that tenant's messages only; another
    tenant's message is 404, exactly as one that does not exist, and a
    `tenant` filter naming another tenant matches nothing.
  * A message that is not captured (or not any more) is 404; a bad
    parameter is a 400 problem naming it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from pigeon.admin.control import OpError
from pigeon.web.auth import TOKEN_KEY
from pigeon.web.problem import Problem
from pigeon.web.queue_routes import (
    ACTION_RESULT,
    MAX_LIMIT,
    PAGE_PARAMS,
    QUEUE_ID,
    page_schema,
)
from pigeon.web.routes import Param, Route, bad_param
from pigeon.web.routes import query_int as int_param

__all__ = ["PREFIX", "QUEUE_ID_RE", "routes"]

PREFIX = "/api/capture"
Ops = Mapping[str, Callable[..., Awaitable[dict[str, Any]]]]
#: A queue ID as the capture routes (and the console) accept it.
QUEUE_ID_RE = re.compile(r"^[0-9A-Z]{4,64}$")

_text = {"type": "string"}
_ROW: dict[str, Any] = {
    "type": "object",
    "required": ["id", "tenant", "received_at", "size", "sender", "recipients", "subject"],
    "properties": {
        "id": _text,
        "tenant": _text,
        "received_at": {"type": "number"},
        "size": {"type": "integer"},
        "sender": _text,
        "recipients": {"type": "array", "items": _text},
        "from": _text,
        "to": _text,
        "subject": _text,
    },
}
_LIST = page_schema(_ROW)
_MESSAGE = {
    "allOf": [_ROW],
    "required": ["headers", "text", "html", "attachments"],
    "properties": {
        "headers": {
            "type": "array",
            "items": {"type": "array", "items": _text, "minItems": 2, "maxItems": 2},
        },
        "date": _text,
        "message_id": _text,
        "text": {"type": ["string", "null"]},
        "html": {"type": ["string", "null"]},
        "attachments": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["filename", "content_type", "size"],
                "properties": {
                    "filename": _text,
                    "content_type": _text,
                    "size": {"type": "integer"},
                },
            },
        },
    },
}


def _tenant(request: web.Request) -> str | None:
    token = request.get(TOKEN_KEY)
    return getattr(token, "tenant", None)


def _queue_id(request: web.Request) -> str:
    qid = request.match_info["id"]
    if not QUEUE_ID_RE.match(qid):
        raise bad_param("id", "not a queue ID (4-64 of 0-9 A-Z)")
    return qid


async def _one(ops: Ops, name: str, request: web.Request) -> dict[str, Any]:
    """Operation `name` on the message of the URL, for the token's tenant; 404 if not captured."""
    try:
        return await ops[name](id=_queue_id(request), tenant=_tenant(request))
    except OpError as exc:
        raise Problem(404, str(exc)) from None


def routes(ops: Ops) -> list[Route]:
    async def list_capture(request: web.Request) -> web.Response:
        q = request.query
        limit = int_param(q, "limit", 100, 1, MAX_LIMIT)
        offset = int_param(q, "offset", 0, 0, 10**9)
        own = _tenant(request)
        tenant = (q.get("tenant") or "").lower() or None
        if own is not None and tenant is not None and tenant != own:
            return web.json_response({"total": 0, "offset": offset, "limit": limit, "entries": []})
        filters = {k: q.get(k) or None for k in ("sender", "recipient", "subject", "q")}
        listed = await ops["capture_list"](
            tenant=own or tenant, limit=limit, offset=offset, **filters
        )
        return web.json_response(listed)

    async def show(request: web.Request) -> web.Response:
        return web.json_response(await _one(ops, "capture_show", request))

    async def raw(request: web.Request) -> web.Response:
        got = await _one(ops, "capture_raw", request)
        return web.Response(body=base64.b64decode(got["raw"]), content_type="message/rfc822")

    def action(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def act(request: web.Request) -> web.Response:
            qid = _queue_id(request)
            result = await ops[name](ids=[qid], tenant=_tenant(request))
            if qid not in result["done"]:
                raise Problem(404, f"no such captured message: {qid}", result=result)
            return web.json_response(result)

        return act

    q = "query"
    return [
        Route(
            "GET",
            PREFIX,
            list_capture,
            "read",
            "List and search captured messages, newest first, paged",
            _LIST,
            params=(
                Param("tenant", q, _text, "only this tenant's messages"),
                Param("sender", q, _text, "a part of the envelope sender"),
                Param("recipient", q, _text, "a part of an envelope recipient"),
                Param("subject", q, _text, "a part of the Subject"),
                Param("q", q, _text, "a part of the sender, a recipient, From, To or Subject"),
                *PAGE_PARAMS,
            ),
        ),
        Route(
            "GET",
            PREFIX + "/{id}",
            show,
            "read",
            "One captured message: envelope, header fields, text, HTML, attachments",
            _MESSAGE,
            params=(QUEUE_ID,),
            problems=(404,),
        ),
        Route(
            "GET",
            PREFIX + "/{id}/raw",
            raw,
            "read",
            "One captured message as received (message/rfc822)",
            {"type": "string"},
            params=(QUEUE_ID,),
            problems=(404,),
            media="message/rfc822",
        ),
        Route(
            "DELETE",
            PREFIX + "/{id}",
            action("capture_delete"),
            "admin",
            "Delete a captured message (no report to anyone)",
            ACTION_RESULT,
            params=(QUEUE_ID,),
            problems=(404,),
        ),
        Route(
            "POST",
            PREFIX + "/{id}/release",
            action("capture_release"),
            "admin",
            "Release a captured message into the real queue (original envelope)",
            ACTION_RESULT,
            params=(QUEUE_ID,),
            problems=(404,),
        ),
    ]

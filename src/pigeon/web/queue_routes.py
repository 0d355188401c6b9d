"""The queue over HTTP: list, inspect and act, as `pigeon queue` does.

Contract:
  * Every route calls the control socket's operations (pigeon.admin.ops:
    "list", "show", "hold", "release", "delete", "requeue", "bounce"),
    so the API sees and does exactly what `pigeon queue` sees and does;
    the queue manager alone changes queue state (CONTRIBUTING.md, rule 8).
  * GET /api/queue (scope read): filters `state`, `sender` (a part of the
    address; "<>" the null sender), `recipient` (a part of an address),
    `domain` (a recipient domain not yet done; ".example.org" its
    subdomains), `id` (a queue-ID prefix); pages with `limit` (1-1000,
    default 100) and `offset`; the answer has `total` (matching entries),
    `offset`, `limit` and `entries` (the `pigeon queue list` rows).
  * GET /api/queue/{id} (scope read): the `pigeon queue show` view; 404
    when the message is not in the queue.
  * POST /api/queue/{id}/{action} (scope admin), action one of flush (try
    now: the operator's "requeue"), hold, release, delete, bounce: 200
    with the manager's result ({done, pending, skipped, unknown}); 404
    when the message is not in the queue; 409 when its state does not
    allow the action (releasing a message that is not held...).
  * A bad parameter is a 400 problem naming it (`errors`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from pigeon.admin.control import OpError
from pigeon.web.problem import Problem
from pigeon.web.routes import Param, Route
from pigeon.web.routes import bad_param as _bad
from pigeon.web.routes import query_int as _integer

__all__ = [
    "ACTIONS",
    "ACTION_RESULT",
    "MAX_LIMIT",
    "PAGE_PARAMS",
    "QUEUE_ID",
    "STATES",
    "entry_matches",
    "page_schema",
    "routes",
]

Ops = Mapping[str, Callable[..., Awaitable[dict[str, Any]]]]

#: The URL's action -> the control socket's operation.
ACTIONS = {
    "flush": "requeue",
    "hold": "hold",
    "release": "release",
    "delete": "delete",
    "bounce": "bounce",
}
STATES = ("incoming", "active", "deferred", "hold", "corrupt", "capture")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
_QID = re.compile(r"^[0-9A-Z]{4,64}$")

_ENTRY: dict[str, Any] = {
    "type": "object",
    "required": ["id", "state"],
    "properties": {
        "id": {"type": "string"},
        "state": {"type": "string"},
        "readable": {"type": "boolean"},
        "size": {"type": "integer"},
        "arrival": {"type": "number"},
        "age": {"type": "number"},
        "sender": {"type": "string"},
        "attempts": {"type": "integer"},
        "next_attempt": {"type": ["number", "null"]},
        "recipients": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["address", "status"],
                "properties": {
                    "address": {"type": "string"},
                    "status": {"type": "string"},
                    "dsn": {"type": "string"},
                    "diagnostic": {"type": "string"},
                },
            },
        },
        "reason": {"type": "string"},
        "dsn_kind": {"type": ["string", "null"]},
    },
}


def page_schema(item: dict[str, Any]) -> dict[str, Any]:
    """The schema of a paged list of `item`s: {total, offset, limit, entries}."""
    return {
        "type": "object",
        "required": ["total", "offset", "limit", "entries"],
        "properties": {
            "total": {"type": "integer"},
            "offset": {"type": "integer"},
            "limit": {"type": "integer"},
            "entries": {"type": "array", "items": item},
        },
    }


_LIST = page_schema(_ENTRY)
_SHOW = {
    "allOf": [_ENTRY],
    "properties": {
        "envelope": {"type": "object"},
        "headers": {"type": ["string", "null"]},
        "headers_error": {"type": "string"},
        "history": {"type": "array"},
    },
}
_ids = {"type": "array", "items": {"type": "string"}}
_RESULT = {
    "type": "object",
    "required": ["done", "pending", "skipped", "unknown"],
    "properties": {"done": _ids, "pending": _ids, "skipped": _ids, "unknown": _ids},
}
_ID = Param("id", "path", {"type": "string", "pattern": _QID.pattern}, "queue ID", required=True)
#: `limit` and `offset`, as every paged list of the API takes them.
PAGE_PARAMS = (
    Param(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        f"page size (default {DEFAULT_LIMIT})",
    ),
    Param("offset", "query", {"type": "integer", "minimum": 0}, "entries to skip"),
)


def _queue_id(request: web.Request) -> str:
    qid = request.match_info["id"]
    if not _QID.match(qid):
        raise _bad("id", "not a queue ID (4-64 of 0-9 A-Z)")
    return qid


def entry_matches(entry: dict[str, Any], recipient: str | None, prefix: str | None) -> bool:
    """The API's narrowing of `list` rows (also the console's, console/queue.py):
    a part of a recipient address, a queue-ID prefix."""
    if prefix is not None and not entry["id"].startswith(prefix):
        return False
    if recipient is not None:
        wanted = recipient.lower()
        return any(wanted in r["address"].lower() for r in entry.get("recipients", ()))
    return True


#: Shared with the other routes of the API (web/capture_routes.py).
ACTION_RESULT, QUEUE_ID = _RESULT, _ID


def routes(ops: Ops) -> list[Route]:
    async def list_queue(request: web.Request) -> web.Response:
        q = request.query
        state = q.get("state") or None
        if state is not None and state not in STATES:
            raise _bad("state", f"must be one of {', '.join(STATES)}")
        prefix = q.get("id") or None
        if prefix is not None and not re.fullmatch(r"[0-9A-Z]{1,64}", prefix):
            raise _bad("id", "a queue-ID prefix is 1-64 of 0-9 A-Z")
        limit = _integer(q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _integer(q, "offset", 0, 0, 10**9)
        filters = {"state": state, "sender": q.get("sender"), "domain": q.get("domain")}
        listed = await ops["list"](filters={k: v for k, v in filters.items() if v})
        chosen = [
            e for e in listed["entries"] if entry_matches(e, q.get("recipient") or None, prefix)
        ]
        page = chosen[offset : offset + limit]
        return web.json_response(
            {"total": len(chosen), "offset": offset, "limit": limit, "entries": page}
        )

    async def show(request: web.Request) -> web.Response:
        qid = _queue_id(request)
        try:
            entry = await ops["show"](id=qid)
        except OpError as exc:
            raise Problem(404, str(exc)) from None
        return web.json_response(entry)

    async def act(request: web.Request) -> web.Response:
        qid = _queue_id(request)
        action = request.match_info["action"]
        if action not in ACTIONS:
            raise Problem(404, f"no such queue action: use one of {', '.join(ACTIONS)}")
        result = await ops[ACTIONS[action]](ids=[qid])
        if qid in result["unknown"]:
            raise Problem(404, f"no such message in the queue: {qid}")
        if qid in result["skipped"]:
            raise Problem(409, f"{action}: {qid} is not in a state that allows it", result=result)
        return web.json_response(result)

    q = "query"
    text = {"type": "string"}
    return [
        Route(
            "GET",
            "/api/queue",
            list_queue,
            "read",
            "List the queue (the rows of `pigeon queue list`), filtered and paged",
            _LIST,
            params=(
                Param("state", q, {"enum": list(STATES)}, "only entries in this state"),
                Param("sender", q, text, 'a part of the sender address; "<>" the null sender'),
                Param("recipient", q, text, "a part of a recipient address"),
                Param("domain", q, text, "a recipient domain not yet done (.x.org: subdomains)"),
                Param("id", q, text, "a queue-ID prefix"),
                *PAGE_PARAMS,
            ),
        ),
        Route(
            "GET",
            "/api/queue/{id}",
            show,
            "read",
            "One queued message: envelope, header section, delivery history",
            _SHOW,
            params=(_ID,),
            problems=(404,),
        ),
        Route(
            "POST",
            "/api/queue/{id}/{action}",
            act,
            "admin",
            "Act on a queued message: flush (try now), hold, release, delete, bounce",
            _RESULT,
            params=(
                _ID,
                Param("action", "path", {"enum": list(ACTIONS)}, "what to do", required=True),
            ),
            problems=(404, 409),
        ),
    ]

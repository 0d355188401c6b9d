"""Local mailboxes over HTTP: list, read, search and delete their messages (docs/api.md).

Contract:
  * The routes and their schemas (the OpenAPI document is built from
    them); the mailbox work is web/mailboxes.py's (`Mailboxes`), run in a
    worker thread. Scope "read" for every GET, "admin" for DELETE.
  * GET /api/mailboxes: the mailboxes, paged (limit 1-MAX_LIMIT, offset).
  * GET .../messages: newest first, paged; `folder` (INBOX by default),
    searches `from`, `to`, `subject`, `text` (case-insensitive parts).
  * GET .../messages/{id}: mailview.detail; .../raw: the message as
    message/rfc822 with CRLF line ends; .../attachments/{n}: the decoded
    octets under their declared type, always as a download
    (Content-Disposition: attachment, the filename reduced to
    A-Z a-z 0-9 . _ -) with `Content-Security-Policy: sandbox`, so a
    browser never runs what a message carried.
  * DELETE .../messages/{id}: `Mailboxes.delete` (as POP3 DELE).
  * Every bad parameter is a 400 problem naming it; a mailbox, folder,
    message or attachment that does not exist is a 404 problem.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from pigeon.mailstore.errors import FolderError
from pigeon.web import mailview
from pigeon.web.mailboxes import ID_PATTERN, SEARCH_MAX, Mailboxes, folder_name
from pigeon.web.mailview import Query
from pigeon.web.problem import Problem
from pigeon.web.routes import Param, Route
from pigeon.web.routes import bad_param as _bad
from pigeon.web.routes import query_int as _integer

__all__ = ["MAX_LIMIT", "routes", "safe_filename"]

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
#: The highest attachment index a request may name.
MAX_ATTACHMENT = 9999

_ADDR = {"type": "string", "description": "a local address: user@example.org"}
_FOLDER_STATS = {
    "type": "object",
    "required": ["name", "messages", "size"],
    "properties": {
        "name": {"type": "string"},
        "messages": {"type": "integer"},
        "size": {"type": "integer"},
    },
}


def _page(key: str, item: dict[str, Any], **more: Any) -> dict[str, Any]:
    """The schema of a page of `key` items with its total, offset and limit."""
    return {
        "type": "object",
        "required": ["total", "offset", "limit", *more, key],
        "properties": {
            "total": {"type": "integer"},
            "offset": {"type": "integer"},
            "limit": {"type": "integer"},
            **more,
            key: {"type": "array", "items": item},
        },
    }


_MAILBOXES = _page(
    "mailboxes",
    {
        "type": "object",
        "required": ["address", "messages", "size", "folders"],
        "properties": {
            "address": {"type": "string"},
            "messages": {"type": "integer"},
            "size": {"type": "integer"},
            "folders": {"type": "array", "items": _FOLDER_STATS},
        },
    },
)
_NSTR = {"type": ["string", "null"]}
_FIELDS = {
    "from": _NSTR,
    "to": _NSTR,
    "cc": _NSTR,
    "subject": _NSTR,
    "date": _NSTR,
    "message_id": _NSTR,
}
_ENTRY_REQUIRED = ["id", "folder", "size", "received", "flags", *_FIELDS]
_ENTRY_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string"},
    "folder": {"type": "string"},
    "size": {"type": "integer", "description": "octets with CRLF line ends"},
    "received": {"type": "string", "description": "delivery time, RFC 3339"},
    "flags": {"type": "array", "items": {"type": "string"}},
    **_FIELDS,
}
_ENTRY = {"type": "object", "required": _ENTRY_REQUIRED, "properties": _ENTRY_PROPERTIES}
_LIST = _page("messages", _ENTRY, complete={"type": "boolean"})
_DETAIL = {
    "type": "object",
    "required": [*_ENTRY_REQUIRED, "headers", "text", "html", "attachments"],
    "properties": {
        **_ENTRY_PROPERTIES,
        "headers": {
            "type": "array",
            "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
        },
        "text": _NSTR,
        "html": _NSTR,
        "attachments": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "filename", "content_type", "size"],
                "properties": {
                    "index": {"type": "integer"},
                    "filename": _NSTR,
                    "content_type": {"type": "string"},
                    "size": {"type": "integer"},
                },
            },
        },
    },
}
_DELETED = {
    "type": "object",
    "required": ["deleted", "folder"],
    "properties": {"deleted": {"type": "string"}, "folder": {"type": "string"}},
}


def _query(q: Mapping[str, str]) -> Query:
    return Query(
        sender=q.get("from") or None,
        recipient=q.get("to") or None,
        subject=q.get("subject") or None,
        text=q.get("text") or None,
    )


def safe_filename(name: str | None, n: int) -> str:
    """A download's filename: A-Z a-z 0-9 . _ - only (the console's viewer uses it too)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name or "").strip("._")
    return cleaned[:100] or f"attachment-{n}"


def routes(root: Path | None) -> list[Route]:
    boxes = Mailboxes(root)

    def folder_of(request: web.Request) -> str:
        try:
            return folder_name(request.query.get("folder"))
        except FolderError as exc:
            raise _bad("folder", str(exc)) from None

    async def list_mailboxes(request: web.Request) -> web.Response:
        limit = _integer(request.query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _integer(request.query, "offset", 0, 0, 10**9)
        return web.json_response(await asyncio.to_thread(boxes.list, limit, offset))

    async def list_messages(request: web.Request) -> web.Response:
        limit = _integer(request.query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _integer(request.query, "offset", 0, 0, 10**9)
        address, folder = request.match_info["address"], folder_of(request)
        found = await asyncio.to_thread(
            boxes.messages, address, folder, _query(request.query), limit, offset
        )
        return web.json_response(found)

    async def show(request: web.Request) -> web.Response:
        m = request.match_info
        entry, data = await asyncio.to_thread(boxes.read, m["address"], folder_of(request), m["id"])
        body = entry | mailview.detail(data)
        return web.json_response(body)

    async def raw(request: web.Request) -> web.Response:
        m = request.match_info
        _, data = await asyncio.to_thread(boxes.read, m["address"], folder_of(request), m["id"])
        return web.Response(body=data, content_type="message/rfc822")

    async def attachment(request: web.Request) -> web.Response:
        m = request.match_info
        text = m["n"]
        if not (text.isascii() and text.isdigit()) or int(text) > MAX_ATTACHMENT:
            raise _bad("n", f"an attachment index: 0 to {MAX_ATTACHMENT}")
        _, data = await asyncio.to_thread(boxes.read, m["address"], folder_of(request), m["id"])
        try:
            ctype, filename, octets = mailview.attachment(data, int(text))
        except IndexError:
            raise Problem(404, f"the message has no attachment {text}") from None
        return web.Response(
            body=octets,
            headers={
                "Content-Type": ctype,
                "Content-Disposition": f'attachment; filename="{safe_filename(filename, int(text))}"',
                "Content-Security-Policy": "sandbox; default-src 'none'",
            },
        )

    async def delete(request: web.Request) -> web.Response:
        m = request.match_info
        done = await asyncio.to_thread(boxes.delete, m["address"], folder_of(request), m["id"])
        return web.json_response(done)

    q = "query"
    text = {"type": "string"}
    paging = (
        Param(
            "limit",
            q,
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            f"page size (default {DEFAULT_LIMIT})",
        ),
        Param("offset", q, {"type": "integer", "minimum": 0}, "entries to skip"),
    )
    address = Param("address", "path", _ADDR, "the mailbox's address", required=True)
    folder = Param("folder", q, text, 'the folder: INBOX (default), "Junk" or ".Junk"...')
    mid = Param(
        "id",
        "path",
        {"type": "string", "pattern": ID_PATTERN},
        "message id (UIDVALIDITY-UID)",
        required=True,
    )
    base = "/api/mailboxes/{address}/messages"
    return [
        Route(
            "GET",
            "/api/mailboxes",
            list_mailboxes,
            "read",
            "The local mailboxes: address, folders, message counts and sizes",
            _MAILBOXES,
            params=paging,
        ),
        Route(
            "GET",
            base,
            list_messages,
            "read",
            "A mailbox's messages, newest first, paged; searched by from, to, subject, "
            f"text (at most {SEARCH_MAX} messages examined)",
            _LIST,
            params=(
                address,
                folder,
                Param("from", q, text, "a part of From:"),
                Param("to", q, text, "a part of To: or Cc:"),
                Param("subject", q, text, "a part of Subject:"),
                Param("text", q, text, "a part of the text or HTML body"),
                *paging,
            ),
            problems=(404,),
        ),
        Route(
            "GET",
            base + "/{id}",
            show,
            "read",
            "One message: header fields, text and HTML decoded, attachments listed",
            _DETAIL,
            params=(address, mid, folder),
            problems=(404,),
        ),
        Route(
            "GET",
            base + "/{id}/raw",
            raw,
            "read",
            "One message as stored (message/rfc822, CRLF line ends)",
            {"type": "string"},
            params=(address, mid, folder),
            problems=(404,),
            media="message/rfc822",
        ),
        Route(
            "GET",
            base + "/{id}/attachments/{n}",
            attachment,
            "read",
            "Attachment n of a message (its decoded octets, as a download)",
            {"type": "string"},
            params=(
                address,
                mid,
                Param(
                    "n",
                    "path",
                    {"type": "integer", "minimum": 0, "maximum": MAX_ATTACHMENT},
                    "the index",
                    True,
                ),
                folder,
            ),
            problems=(404,),
            media="*/*",
        ),
        Route(
            "DELETE",
            base + "/{id}",
            delete,
            "admin",
            "Delete a message (as POP3 DELE removes it)",
            _DELETED,
            params=(address, mid, folder),
            problems=(404,),
        ),
    ]

"""The console's local mailboxes (/mailboxes): list, messages, the message viewer, delete.

Contract:
  * The Maildirs are read through web/mailboxes.py's `Mailboxes` (the
    HTTP API's reader over pigeon.mailstore, run in a worker thread), so
    the console, the API, IMAP and POP3 see the same messages and UIDs;
    the rules about names (no request text becomes a path but through
    mailstore.paths), ids ("UIDVALIDITY-UID") and folders are its.
  * GET /mailboxes: every mailbox with its folders, counts and sizes,
    paged (`offset`). GET /mailboxes/{address}: a folder's messages
    (`folder`, INBOX by default), newest first, PAGE_SIZE a page, searched
    by `from`, `to`, `subject`, `text` as the API searches.
  * GET /mailboxes/{address}/messages/{id}: the viewer (header fields,
    the text part, the HTML part in a sandboxed frame, attachments, a
    link to the raw source); .../html the frame's document, .../raw the
    source as text/plain, .../attachments/{n} a download (all three:
    console/viewer.py, whose contract is the security model).
  * POST .../delete (CSRF-checked form, field `folder`): deletes as the
    API's DELETE does (`Mailboxes.delete`, as POP3 DELE), then back to
    the folder with a flash.
  * A mailbox, folder, message or attachment that does not exist is an
    HTML 404 page; a malformed id or folder a 400 page (never a path).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from aiohttp import web

from pigeon.console.deps import ConsoleDeps
from pigeon.console.pages import Page, flash, form, redirect, render
from pigeon.console.viewer import attachment_download, clean_html, html_frame, raw_response
from pigeon.mailstore.errors import FolderError
from pigeon.web import mailview
from pigeon.web.mailboxes import Mailboxes, folder_name
from pigeon.web.mailview import Query
from pigeon.web.problem import Problem

__all__ = ["PAGE_SIZE", "mailbox_pages", "message_view", "page_of", "pager"]

PAGE_SIZE = 50
#: The search fields of a folder's page: (query parameter, label).
SEARCH = (("from", "From"), ("to", "To"), ("subject", "Subject"), ("text", "Text"))
T = TypeVar("T")


def _problem_as_http(exc: Problem) -> web.HTTPException:
    """The API's Problem as the HTTP error the console shows as an HTML page."""
    kind = {400: web.HTTPBadRequest, 404: web.HTTPNotFound}.get(exc.status, web.HTTPBadRequest)
    return kind(reason=exc.detail)


async def _run(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a worker thread (the Maildirs are blocking file I/O)."""
    try:
        return await asyncio.to_thread(fn, *args)
    except Problem as exc:
        raise _problem_as_http(exc) from None


def page_of(request: web.Request) -> int:
    """The `offset` of a paged list (a bad one is the first page)."""
    text = request.query.get("offset", "0")
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else 0


def _folder(request: web.Request, data: dict[str, str] | None = None) -> str:
    text = (data or request.query).get("folder")
    try:
        return folder_name(text)
    except FolderError as exc:
        raise web.HTTPBadRequest(reason=f"folder: {exc}") from None


def box_url(address: str) -> str:
    return "/mailboxes/" + quote(address, safe="@")


def pager(request: web.Request, offset: int, total: int, size: int) -> dict[str, str | None]:
    """Links to the previous and next pages, keeping the query's other parameters."""

    def at(n: int) -> str:
        query = {k: v for k, v in request.query.items() if k != "offset" and v}
        if n:
            query["offset"] = str(n)
        return request.path + ("?" + urlencode(query) if query else "")

    return {
        "prev": at(max(0, offset - size)) if offset > 0 else None,
        "next": at(offset + size) if offset + size < total else None,
    }


def message_view(data: bytes) -> dict[str, Any]:
    """mailview.detail, and the count of remote references the frame leaves out."""
    view = mailview.detail(data)
    view["blocked"] = clean_html(view["html"])[1] if view["html"] else 0
    return view


def mailbox_pages(deps: ConsoleDeps) -> list[Page]:
    boxes = Mailboxes(deps.mailbox_root)

    async def mailboxes(request: web.Request) -> web.StreamResponse:
        offset = page_of(request)
        listed = await _run(boxes.list, PAGE_SIZE, offset)
        return render(
            request,
            "mailboxes.html",
            listed=listed,
            configured=deps.mailbox_root is not None,
            url=box_url,
            pager=pager(request, offset, listed["total"], PAGE_SIZE),
        )

    async def mailbox(request: web.Request) -> web.StreamResponse:
        address, folder, offset = request.match_info["address"], _folder(request), page_of(request)
        search = {k: request.query.get(k, "") for k, _ in SEARCH}
        query = Query(
            sender=search["from"] or None,
            recipient=search["to"] or None,
            subject=search["subject"] or None,
            text=search["text"] or None,
        )
        listed = await _run(boxes.messages, address, folder, query, PAGE_SIZE, offset)
        box = await _run(boxes.mailbox, address)
        return render(
            request,
            "mailbox.html",
            address=address,
            base=box_url(address),
            folder=folder,
            folder_q=urlencode({"folder": folder}),
            folders=box["folders"],
            search=search,
            fields=SEARCH,
            listed=listed,
            pager=pager(request, offset, listed["total"], PAGE_SIZE),
        )

    async def read(request: web.Request) -> tuple[str, str, str, dict[str, Any], bytes]:
        m = request.match_info
        folder = _folder(request)
        entry, data = await _run(boxes.read, m["address"], folder, m["id"])
        return m["address"], folder, m["id"], entry, data

    async def message(request: web.Request) -> web.StreamResponse:
        address, folder, mid, entry, data = await read(request)
        view = await asyncio.to_thread(message_view, data)
        back = box_url(address) + "?" + urlencode({"folder": folder})
        return render(
            request,
            "mailbox_message.html",
            address=address,
            folder=folder,
            entry=entry,
            view=view,
            back=back,
            base=f"{box_url(address)}/messages/{mid}",
            suffix="?" + urlencode({"folder": folder}),
        )

    async def html(request: web.Request) -> web.StreamResponse:
        *_, data = await read(request)
        return await asyncio.to_thread(html_frame, data)

    async def raw(request: web.Request) -> web.StreamResponse:
        *_, data = await read(request)
        return raw_response(data)

    async def attachment(request: web.Request) -> web.StreamResponse:
        *_, data = await read(request)
        return await asyncio.to_thread(attachment_download, data, request.match_info["n"])

    async def delete(request: web.Request) -> web.StreamResponse:
        data = await form(request)
        m = request.match_info
        folder = _folder(request, data)
        await _run(boxes.delete, m["address"], folder, m["id"])
        flash(request, f"Message {m['id']} deleted from {m['address']} ({folder}).", "ok")
        raise redirect(box_url(m["address"]) + "?" + urlencode({"folder": folder}))

    one = "/mailboxes/{address}/messages/{id}"
    return [
        Page("GET", "/mailboxes", mailboxes, nav="Mailboxes"),
        Page("GET", "/mailboxes/{address}", mailbox),
        Page("GET", one, message),
        Page("GET", one + "/html", html),
        Page("GET", one + "/raw", raw),
        Page("GET", one + "/attachments/{n}", attachment),
        Page("POST", one + "/delete", delete),
    ]

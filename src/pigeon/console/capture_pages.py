"""The console's captured mail (/capture): list, search, view, release, delete.

Contract (capture mode: docs/capture.md):
  * Everything goes through the control socket's capture operations
    (admin/capture.py: capture_list, capture_show, capture_raw,
    capture_release, capture_delete), as `pigeon capture` and the HTTP API
    (web/capture_routes.py) do; release and delete are the queue
    manager's (qmgr/capture.py). A console admin sees every tenant.
  * GET /capture: newest first, PAGE_SIZE a page (`offset`), filtered by
    `tenant` (exact), `sender`, `recipient`, `subject` and `q` (any of
    them), as the API filters.
  * GET /capture/{id}: the envelope (tenant, sender, recipients) and the
    message viewer shared with the mailboxes (console/viewer.py: header
    fields, text, the HTML part in a sandboxed frame, attachments, raw
    source); .../html, .../raw, .../attachments/{n} as there.
  * POST /capture/{id}/release and /capture/{id}/delete (CSRF-checked
    forms): the operation's result as a flash, then back to the list.
    Release keeps the original envelope (the operation takes no other
    recipients).
  * An id that is not a queue ID is a 400 page; a message that is not
    captured (or not any more) a 404 page.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from aiohttp import web

from pigeon.admin.control import OpError
from pigeon.console.deps import ConsoleDeps
from pigeon.console.mailbox_pages import PAGE_SIZE, message_view, page_of, pager
from pigeon.console.pages import Page, flash, form, redirect, render
from pigeon.console.viewer import attachment_download, html_frame, raw_response
from pigeon.web.capture_routes import QUEUE_ID_RE

__all__ = ["capture_pages"]

#: The list's filters: (query parameter, label); the operation's names.
FILTERS = (
    ("tenant", "Tenant"),
    ("sender", "Sender"),
    ("recipient", "Recipient"),
    ("subject", "Subject"),
    ("q", "Any"),
)


def _id(request: web.Request) -> str:
    qid = request.match_info["id"]
    if not QUEUE_ID_RE.match(qid):
        raise web.HTTPBadRequest(reason="not a queue ID (4-64 of 0-9 A-Z)")
    return qid


def capture_pages(deps: ConsoleDeps) -> list[Page]:
    ops = deps.ops

    async def call(name: str, **args: Any) -> dict[str, Any]:
        try:
            return await ops[name](**args)
        except OpError as exc:
            raise web.HTTPNotFound(reason=str(exc)) from None

    async def raw_of(request: web.Request) -> tuple[str, bytes]:
        qid = _id(request)
        got = await call("capture_raw", id=qid)
        return qid, base64.b64decode(got["raw"])

    async def listing(request: web.Request) -> web.StreamResponse:
        offset = page_of(request)
        filters = {k: request.query.get(k, "").strip() for k, _ in FILTERS}
        listed = await call(
            "capture_list",
            limit=PAGE_SIZE,
            offset=offset,
            **{k: v or None for k, v in filters.items()},
        )
        return render(
            request,
            "capture.html",
            listed=listed,
            filters=filters,
            fields=FILTERS,
            pager=pager(request, offset, listed["total"], PAGE_SIZE),
        )

    async def message(request: web.Request) -> web.StreamResponse:
        qid = _id(request)
        envelope = await call("capture_show", id=qid)
        _, data = await raw_of(request)
        view = await asyncio.to_thread(message_view, data)
        return render(
            request,
            "capture_message.html",
            qid=qid,
            envelope=envelope,
            view=view,
            base=f"/capture/{qid}",
            suffix="",
        )

    async def html(request: web.Request) -> web.StreamResponse:
        _, data = await raw_of(request)
        return await asyncio.to_thread(html_frame, data)

    async def raw(request: web.Request) -> web.StreamResponse:
        _, data = await raw_of(request)
        return raw_response(data)

    async def attachment(request: web.Request) -> web.StreamResponse:
        _, data = await raw_of(request)
        return await asyncio.to_thread(attachment_download, data, request.match_info["n"])

    def action(name: str, done_text: str) -> Any:
        async def act(request: web.Request) -> web.StreamResponse:
            await form(request)
            qid = _id(request)
            try:
                result = await ops[name](ids=[qid])
            except OpError as exc:
                flash(request, f"{qid}: {exc}", "error")
                raise redirect("/capture") from None
            if qid in result.get("done", []):
                flash(request, f"{qid} {done_text}.", "ok")
            else:
                flash(request, f"{qid}: not captured (any more); nothing done.", "error")
            raise redirect("/capture")

        return act

    return [
        Page("GET", "/capture", listing, nav="Capture"),
        Page("GET", "/capture/{id}", message),
        Page("GET", "/capture/{id}/html", html),
        Page("GET", "/capture/{id}/raw", raw),
        Page("GET", "/capture/{id}/attachments/{n}", attachment),
        Page("POST", "/capture/{id}/release", action("capture_release", "released into the queue")),
        Page("POST", "/capture/{id}/delete", action("capture_delete", "deleted")),
    ]

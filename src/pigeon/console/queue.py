"""The console's queue pages: list, search, inspect and act (/queue).

Contract:
  * GET /queue lists the queue as `pigeon queue list` does (the control
    socket's `list`, with its `Filters`: state, sender, recipient domain),
    narrowed as the API narrows it (web/queue_routes.py `entry_matches`:
    a part of a recipient address, a queue-ID prefix), `PAGE_SIZE` rows a
    page (`page` from 1). A bad filter is a flash and the unfiltered form,
    never a traceback.
  * GET /queue/{id} shows `pigeon queue show`'s view (`show`): summary,
    envelope, recipients with their status and last diagnostic, the mail-log
    history, the header section. An unknown or malformed ID is a 404 page.
  * Every change is a POST form read through `form()` (CSRF check) and
    answered by a redirect with the outcome as a flash (POST/redirect/GET):
      POST /queue/{id}/act   action=flush|hold|release|delete|bounce
      POST /queue/bulk       the same, ids=... (the ticked rows)
      POST /queue/flush      domain optional: try the whole queue (or the
                             mail to one domain) now, `pigeon queue flush`
    "flush" on messages is the operator's `requeue` (try now). delete and
    bounce need the `confirm` box ticked, else nothing happens and the
    flash says so. The queue manager does the work (CONTRIBUTING.md,
    rule 8); the flash reports its {done, pending, skipped, unknown}.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from pigeon.admin.control import OpError
from pigeon.console.deps import ConsoleDeps
from pigeon.console.pages import Page, flash, form, redirect, render
from pigeon.web.queue_routes import ACTIONS, STATES, entry_matches

__all__ = ["PAGE_SIZE", "queue_pages"]

PAGE_SIZE = 50
_QID = re.compile(r"^[0-9A-Z]{4,64}$")
_PREFIX = re.compile(r"^[0-9A-Z]{1,64}$")
#: Actions that lose or return mail: they need the confirmation box.
_CONFIRM = frozenset({"delete", "bounce"})
_FILTERS = ("state", "sender", "recipient", "domain", "id")


def _filters(query: Any) -> tuple[dict[str, str], list[str]]:
    """The filters asked for, and what was wrong with them."""
    asked = {k: (query.get(k) or "").strip() for k in _FILTERS}
    errors = []
    if asked["state"] and asked["state"] not in STATES:
        errors.append(f"state must be one of {', '.join(STATES)}")
        asked["state"] = ""
    if asked["id"]:
        asked["id"] = asked["id"].upper()
        if not _PREFIX.match(asked["id"]):
            errors.append("a queue-ID prefix is 1-64 of 0-9 A-Z")
            asked["id"] = ""
    return asked, errors


def _page_number(query: Any) -> int:
    try:
        return max(1, min(10**6, int(query.get("page", "1"))))
    except ValueError:
        return 1


def _outcome(action: str, result: dict[str, Any]) -> tuple[str, str]:
    """A flash's text and kind for the manager's answer to `action`."""
    parts = [f"{len(result.get(k) or [])} {k}" for k in ("done", "pending", "skipped", "unknown")]
    kind = "ok" if result.get("done") or result.get("pending") else "error"
    return f"{action}: {', '.join(p for p in parts if not p.startswith('0 '))}", kind


def queue_pages(deps: ConsoleDeps) -> list[Page]:
    ops = deps.ops

    async def act(action: str, ids: list[str], fields: dict[str, str]) -> tuple[str, str]:
        if action not in ACTIONS:
            return f"no such action: {action!r}", "error"
        if not ids:
            return f"{action}: no message chosen", "error"
        if action in _CONFIRM and fields.get("confirm") != "yes":
            return f"{action}: tick the box to confirm; nothing was done", "error"
        try:
            result = await ops[ACTIONS[action]](ids=ids)
        except OpError as exc:
            return f"{action}: {exc}", "error"
        return _outcome(action, result)

    async def list_page(request: web.Request) -> web.StreamResponse:
        asked, errors = _filters(request.query)
        for error in errors:
            flash(request, error, "error")
        flt = {"state": asked["state"], "sender": asked["sender"], "domain": asked["domain"]}
        try:
            listed = await ops["list"](filters={k: v for k, v in flt.items() if v})
            entries = listed["entries"]
        except OpError as exc:
            flash(request, f"cannot list the queue: {exc}", "error")
            entries = []
        chosen = [
            e for e in entries if entry_matches(e, asked["recipient"] or None, asked["id"] or None)
        ]
        pages = max(1, -(-len(chosen) // PAGE_SIZE))
        page = min(_page_number(request.query), pages)
        keep = {k: v for k, v in asked.items() if v}

        def link(n: int) -> str:
            return "/queue?" + urlencode({**keep, "page": n})

        return render(
            request,
            "queue.html",
            asked=asked,
            states=STATES,
            entries=chosen[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
            total=len(chosen),
            page=page,
            pages=pages,
            prev_link=link(page - 1) if page > 1 else None,
            next_link=link(page + 1) if page < pages else None,
            back=request.path_qs,
            actions=list(ACTIONS),
        )

    async def detail(request: web.Request) -> web.StreamResponse:
        qid = request.match_info["id"]
        if not _QID.match(qid):
            raise web.HTTPNotFound(reason=f"not a queue ID: {qid}")
        try:
            entry = await ops["show"](id=qid)
        except OpError as exc:
            raise web.HTTPNotFound(reason=str(exc)) from None
        return render(request, "queue_entry.html", entry=entry, actions=list(ACTIONS))

    async def act_one(request: web.Request) -> web.StreamResponse:
        fields = await form(request)
        qid = request.match_info["id"]
        if not _QID.match(qid):
            raise web.HTTPNotFound(reason=f"not a queue ID: {qid}")
        action = fields.get("action", "")
        text, kind = await act(action, [qid], fields)
        flash(request, text, kind)
        gone = kind == "ok" and action in _CONFIRM
        raise redirect("/queue" if gone else f"/queue/{qid}")

    async def act_bulk(request: web.Request) -> web.StreamResponse:
        fields = await form(request)
        posted = await request.post()
        ids = [i for i in posted.getall("ids", []) if isinstance(i, str)]
        bad = [i for i in ids if not _QID.match(i)]
        if bad:
            flash(request, f"not a queue ID: {bad[0]!r}", "error")
        else:
            flash(request, *await act(fields.get("action", ""), ids, fields))
        raise redirect(_back(fields.get("back")))

    async def flush_all(request: web.Request) -> web.StreamResponse:
        fields = await form(request)
        domain = fields.get("domain", "").strip() or None
        try:
            result = await ops["flush"](domain=domain)
        except OpError as exc:
            flash(request, f"flush: {exc}", "error")
        else:
            where = f"mail to {domain}" if domain else "the whole queue"
            done = result.get("done", 0)
            n = len(done) if isinstance(done, list) else done
            flash(request, f"flush of {where}: {n} deferred message(s) to try now", "ok")
        raise redirect(_back(fields.get("back")))

    return [
        Page("GET", "/queue", list_page, nav="Queue"),
        Page("POST", "/queue/bulk", act_bulk),
        Page("POST", "/queue/flush", flush_all),
        Page("GET", "/queue/{id}", detail),
        Page("POST", "/queue/{id}/act", act_one),
    ]


def _back(path: str | None) -> str:
    """Where a form sends the browser back to: a /queue page of this console only."""
    if path and (path == "/queue" or path.startswith("/queue?")) and "\n" not in path:
        return path
    return "/queue"

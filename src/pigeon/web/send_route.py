"""POST /api/send: a message from JSON, queued as local submission is (docs/api.md).

Contract:
  * Scope "send". The body is checked and the message built by
    web/message.py (400 with every field that is wrong); then
    `submit(message, sender=, recipients=, extract=, via=)` (app/console.py:
    admin/apisubmit.py `ApiSubmitter.send`) queues it, and only once the
    message is durable does the client get 202 with {"queue_id",
    "sender", "recipients"} (CONTRIBUTING.md, rule 9).
  * Who the token sends as (docs/api.md, "Who a token sends as"): a token
    bound to an account (`TokenInfo.account`) is a submission session of
    that account from the HTTP client's address (`request.remote`),
    through the receive pipeline; one without is local submission.
  * The queue's refusals become problems: a bad address or too many
    recipients 400, a sender not at one of our domains 403, a message over
    `limits.message_size` 413, a store that fails 503 with Retry-After
    (nothing was queued: the client may send again).
  * A receive stage's refusal (`net.apisession.Refused`) is a problem
    carrying the SMTP reply: `smtp_code`, `enhanced_code`, `stage`,
    `address` (of a refused MAIL or RCPT) and the reply's text in
    `detail`. Its status (`refusal_status`): a temporary refusal of policy
    (4.7.x: a rate limit) or a 421 is 429, any other 4xx 503, both with
    Retry-After (RFC 9110 §10.2.3); a permanent one is 403 for policy
    (5.7.x: a sender not owned, relaying denied), 413 for size (552,
    5.3.4), else 422 (an unknown recipient, refused content).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from pigeon.admin import localsubmit as L
from pigeon.net.apisession import Refused
from pigeon.proto.reply import Reply
from pigeon.web.auth import TOKEN_KEY
from pigeon.web.message import Invalid, parse_send
from pigeon.web.problem import Problem
from pigeon.web.routes import Route, json_body

__all__ = ["Submit", "refusal_status", "route"]

Submit = Callable[..., Awaitable[Any]]

_ADDRESS = {
    "oneOf": [
        {"type": "string", "description": "an address: user@example.org"},
        {
            "type": "object",
            "required": ["address"],
            "properties": {"name": {"type": "string"}, "address": {"type": "string"}},
            "additionalProperties": False,
        },
    ]
}
_ADDRESSES = {"oneOf": [_ADDRESS, {"type": "array", "items": _ADDRESS}]}
_STRUCTURED = {
    "type": "object",
    "title": "structured",
    "required": ["from"],
    "additionalProperties": False,
    "properties": {
        "from": _ADDRESS,
        "to": _ADDRESSES,
        "cc": _ADDRESSES,
        "bcc": _ADDRESSES,
        "subject": {"type": "string"},
        "text": {"type": "string"},
        "html": {"type": "string"},
        "attachments": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["filename", "content"],
                "properties": {
                    "filename": {"type": "string"},
                    "content_type": {"type": "string", "default": "application/octet-stream"},
                    "content": {"type": "string", "contentEncoding": "base64"},
                },
            },
        },
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_RAW = {
    "type": "object",
    "title": "raw",
    "required": ["raw"],
    "additionalProperties": False,
    "properties": {
        "raw": {"type": "string", "description": "the RFC 5322 message"},
        "from": _ADDRESS,
        "to": _ADDRESSES,
    },
}
_QUEUED = {
    "type": "object",
    "required": ["queue_id", "sender", "recipients"],
    "properties": {
        "queue_id": {"type": "string"},
        "sender": {"type": "string"},
        "recipients": {"type": "array", "items": {"type": "string"}},
    },
}

#: sysexits code of a refusal (admin/localsubmit.py) -> HTTP status.
_STATUS = {
    L.EX_USAGE: 400,
    L.EX_NOUSER: 400,
    L.EX_NOPERM: 403,
    L.EX_DATAERR: 413,
    L.EX_TEMPFAIL: 503,
}


#: Seconds a client is told to wait after a temporary refusal.
RETRY_AFTER = "60"


def refusal_status(reply: Reply) -> int:
    """The HTTP status of a receive stage's refusal (module contract)."""
    enhanced = reply.enhanced or ""
    if reply.transient:
        return 429 if reply.code == 421 or enhanced.startswith("4.7.") else 503
    if enhanced.startswith("5.7."):
        return 403
    if reply.code == 552 or enhanced == "5.3.4":
        return 413
    return 422


def _refused(exc: Refused) -> Problem:
    reply = exc.reply
    status = refusal_status(reply)
    extra: dict[str, Any] = {
        "smtp_code": reply.code,
        "enhanced_code": reply.enhanced,
        "stage": exc.stage,
    }
    if exc.address is not None:
        extra["address"] = exc.address
    text = " ".join(reply.lines)
    return Problem(
        status,
        f"the message was not queued: {exc.stage} refused: {reply.code} "
        f"{reply.enhanced + ' ' if reply.enhanced else ''}{text}",
        headers={"Retry-After": RETRY_AFTER} if reply.transient else None,
        **extra,
    )


def _client(request: web.Request) -> tuple[str, int]:
    """The HTTP client's address and port, as an SMTP client's would be."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return request.remote or "", 0


def route(submit: Submit) -> Route:
    async def send(request: web.Request) -> web.Response:
        data = await json_body(request)
        try:
            req = parse_send(data)
        except Invalid as exc:
            raise Problem(400, f"the message was not queued: {exc}", errors=exc.errors) from None
        token = request[TOKEN_KEY]
        try:
            env = await submit(
                req.message,
                sender=req.sender,
                recipients=req.recipients,
                extract=req.extract,
                via=token.name,
                account=token.account,
                client=_client(request),
            )
        except Refused as exc:
            raise _refused(exc) from None
        except L.SubmitError as exc:
            status = _STATUS.get(exc.code, 500)
            headers = {"Retry-After": "60"} if status == 503 else None
            raise Problem(status, f"the message was not queued: {exc}", headers=headers) from None
        body = {
            "queue_id": env.queue_id,
            "sender": env.sender,
            "recipients": [r.address for r in env.recipients],
        }
        return web.json_response(body, status=202)

    return Route(
        "POST",
        "/api/send",
        send,
        "send",
        "Send a message: structured (from, to, cc, bcc, subject, text, html, attachments, "
        "headers) or raw RFC 5322; 202 with the queue ID once it is durable",
        _QUEUED,
        status=202,
        request={"oneOf": [_STRUCTURED, _RAW]},
        problems=(403, 413, 422, 429, 503),
    )

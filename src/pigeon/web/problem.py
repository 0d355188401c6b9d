"""Errors as RFC 9457 problem details ("application/problem+json").

Contract:
  * `Problem(status, detail, **extra)` is the one exception a handler
    raises for a client's mistake; `problem_response` turns it (or any
    status) into a JSON body with `type`, `title`, `status`, `detail`
    (RFC 9457 §3.1) and extension members (`errors`: a list of
    {"field", "message"} for a request that does not validate, §3.2).
  * `type` is "about:blank" and `title` the status's reason phrase
    (RFC 9457 §4.2.1): the status says what kind of problem it is, the
    detail says what was wrong with this request.
  * `error_middleware` makes every response of the application that is
    not a success a problem: aiohttp's own 404, 405 and 413 included, and
    an unexpected exception, which is logged with its traceback and
    answered 500 with a generic detail (CONTRIBUTING.md, rule 6: the
    client sees a correct generic reply, the log gets the cause). Nothing
    the client sent is echoed into a header.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

__all__ = ["PROBLEM_TYPE", "Problem", "error_middleware", "problem_response"]

log = logging.getLogger("pigeon.web")

#: The media type of every error body (RFC 9457 §3).
PROBLEM_TYPE = "application/problem+json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Problem(Exception):
    """A client's mistake, answered as a problem (see the module contract)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra


def title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(
    status: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    body = {"type": "about:blank", "title": title(status), "status": status, "detail": detail}
    body.update(extra)
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


#: What aiohttp's own errors mean to a client, said plainly.
_DETAILS = {
    404: "no such resource",
    405: "this resource does not take that method",
    413: "the request body is too large",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as exc:
        return problem_response(exc.status, exc.detail, headers=exc.headers, **exc.extra)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like stay what they are
        headers = {}
        if exc.status == 405 and "Allow" in exc.headers:
            headers["Allow"] = exc.headers["Allow"]
        detail = _DETAILS.get(exc.status) or exc.reason or title(exc.status)
        return problem_response(exc.status, detail, headers=headers)
    except Exception:
        log.exception("HTTP API: %s %s failed", request.method, request.rel_url.path)
        return problem_response(500, "internal error (see the pigeon log)")

"""The route table of the HTTP API: one `Route` per method and path, with what
the OpenAPI document says about it.

Contract:
  * `Route` is data: method, path (aiohttp's "{name}" syntax, which is
    also OpenAPI's), handler, the scope a token needs (None: served
    without a token), a summary, the JSON Schemas of the request body and
    of the success response, the query and path parameters, and the
    success status and media type. The application (web/app.py)
    registers exactly these routes and the document (web/openapi.py) describes exactly these, so
    the two cannot drift (tests/unit/web/test_openapi.py holds them to it).
  * `bad_param(name, message)` is the 400 problem naming a parameter;
    `query_int` reads an integer query parameter within bounds.
  * `json_body(request)` reads a JSON object body: 415 when it is not
    declared JSON, 400 when it does not parse or is not an object (RFC
    9457 problems); the size limit is the application's (413).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from pigeon.web.problem import Problem

__all__ = ["Handler", "Param", "Route", "bad_param", "json_body", "query_int"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Param:
    """A query or path parameter, as OpenAPI 3.1 describes one."""

    name: str
    where: str  # "query" | "path"
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    scope: str | None
    summary: str
    response: dict[str, Any]
    status: int = 200
    request: dict[str, Any] | None = None
    params: tuple[Param, ...] = ()
    #: other statuses this route answers with a problem, beyond the common ones
    problems: tuple[int, ...] = field(default=())
    #: the media type of the success response (`response` is its schema)
    media: str = "application/json"


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (see the module contract)."""
    if request.content_type != "application/json":
        raise Problem(415, "the request body must be JSON (Content-Type: application/json)")
    raw = await request.read()  # bounded by the application's client_max_size (413)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Problem(400, "the request body must be a JSON object")
    return data


def bad_param(name: str, message: str) -> Problem:
    """The 400 problem for one parameter that does not validate (it names it)."""
    return Problem(400, f"{name}: {message}", errors=[{"field": name, "message": message}])


def query_int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """Query parameter `name` as an integer from `low` to `high` (`default`
    when absent); a 400 problem naming it otherwise."""
    text = query.get(name)
    if text is None:
        return default
    # ASCII digits only: str.isdigit() is true of "²", which int() refuses (a 500)
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise bad_param(name, f"must be an integer from {low} to {high}")
    return int(text)

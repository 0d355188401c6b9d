"""Bearer tokens on the HTTP API (RFC 6750).

Contract:
  * `guarded(handler, scope, tokens)` wraps a route's handler: the request
    must carry "Authorization: Bearer TOKEN" (RFC 6750 §2.1; tokens in a
    query string or a form are not accepted, §2.2-2.3 being optional and
    leakier). Without one: 401 with `WWW-Authenticate: Bearer
    realm="pigeon"` (§3); with one that is unknown: 401 and
    error="invalid_token" (§3.1); with one that lacks the route's scope:
    403 and error="insufficient_scope" with the scope needed (§3.1). Every
    answer is a problem (web/problem.py).
  * A token limited to a capture tenant (web/tokens.py) is refused 403 on
    every route but those built with `tenants=True` (/api/capture...,
    web/capture_routes.py), which narrow what they show to its tenant.
  * The token's entry is put in `request[TOKEN_KEY]` for the handler (the
    name shows in the log of what it did).
  * A route whose scope is None is not wrapped: health, readiness and the
    OpenAPI document.
"""

from __future__ import annotations

from aiohttp import web

from pigeon.web.problem import Problem
from pigeon.web.routes import Handler
from pigeon.web.tokens import TokenInfo, TokenStore, has_scope

__all__ = ["REALM", "TOKEN_KEY", "guarded"]

REALM = 'Bearer realm="pigeon"'

#: Where the checked token's entry is put for the handler.
TOKEN_KEY = web.RequestKey("pigeon_api_token", TokenInfo)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def guarded(handler: Handler, scope: str, tokens: TokenStore, *, tenants: bool = False) -> Handler:
    async def check(request: web.Request) -> web.StreamResponse:
        token = _bearer(request)
        if token is None:
            raise Problem(
                401,
                "this resource needs a bearer token (Authorization: Bearer TOKEN; "
                "pigeon token add makes one)",
                headers={"WWW-Authenticate": REALM},
            )
        info = tokens.authenticate(token)
        if info is None:
            raise Problem(
                401,
                "the bearer token is not valid",
                headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
            )
        if not has_scope(info, scope):
            raise Problem(
                403,
                f"the token {info.name!r} does not have the {scope!r} scope",
                headers={
                    "WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'
                },
            )
        if info.tenant is not None and not tenants:
            raise Problem(
                403,
                f"the token {info.name!r} is limited to the capture tenant {info.tenant!r}: "
                "it serves the /api/capture routes only",
            )
        request[TOKEN_KEY] = info
        return await handler(request)

    return check

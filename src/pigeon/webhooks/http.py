"""One webhook POST over HTTP/1.1 (RFC 9112), plain or over TLS, with aiohttp's client.

    status = await post(url, body, headers, timeout=10.0)   # 2xx: taken
    # PostFailed(reason) for anything else

Contract:
  * `url` is http: or https: (checked by the configuration). https: uses
    the standard library's TLS with `ssl.create_default_context()`: the
    system's CAs (or those of `ca_file`), the certificate checked for the
    URL's host; never without verification. The host name is resolved by the system
    (getaddrinfo), as any HTTP client would.
  * One request: POST with Content-Type `application/json`, User-Agent
    `pigeon/VERSION`, the caller's `headers` and the body; one connection
    per request (no pool kept between events). The answer's body is not
    read. A 2xx status returns it; any other status (a redirect too: it is
    not followed, RFC 9110 §15.4 lets a client decline) is PostFailed
    naming it.
  * The whole exchange ends within `timeout` seconds. Never raises anything
    but PostFailed (network, TLS, HTTP trouble, time-out).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping

import aiohttp

from pigeon import __version__

__all__ = ["PostFailed", "post"]


class PostFailed(Exception):
    """The receiver did not take the event; str() says why."""


async def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    ca_file: str | None = None,
) -> int:
    """POST `body` to `url` (module contract); the 2xx status, or PostFailed.
    `ca_file`: trust these CAs instead of the system's ([[webhooks]] ca_file)."""
    https = url.lower().startswith("https:")
    ctx: ssl.SSLContext | bool = False  # plain http: no TLS
    try:
        if https:
            ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise PostFailed(f"cannot use the CA file {ca_file}: {exc}") from None
    sent = {
        "Content-Type": "application/json",
        "User-Agent": f"pigeon/{__version__}",
        **headers,
    }
    try:
        async with (
            asyncio.timeout(timeout),
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ctx, force_close=True),
                skip_auto_headers=("User-Agent",),
            ) as session,
            session.post(url, data=body, headers=sent, allow_redirects=False) as answer,
        ):
            status = answer.status
    except TimeoutError:
        raise PostFailed(f"no answer within {timeout:g} s") from None
    except (aiohttp.ClientError, OSError, ssl.SSLError, ValueError) as exc:
        raise PostFailed(str(exc) or type(exc).__name__) from None
    if not 200 <= status < 300:
        raise PostFailed(f"HTTP status {status}")
    return status

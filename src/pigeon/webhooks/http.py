"""One webhook POST over HTTP/1.1 (RFC 9112), plain or over TLS.

    status = await post(url, body, headers, timeout=10.0)   # 2xx: taken
    # PostFailed(reason) for anything else

Contract:
  * `url` is http: or https: (checked by the configuration). https: uses
    the standard library's TLS with `ssl.create_default_context()`: the
    system's CAs (or those of `ca_file`), the certificate checked for the
    URL's host; never without verification. The host name is resolved by the system
    (getaddrinfo), as any HTTP client would.
  * One request: `POST <path?query> HTTP/1.1`, Host, Content-Type
    `application/json`, Content-Length, `Connection: close`, User-Agent,
    the caller's `headers`, then the body in one write. The answer is read
    up to the end of its header section (at most MAX_HEAD octets); its body
    is not read. A 2xx status returns it; any other status (a redirect too:
    it is not followed, RFC 9110 §15.4 lets a client decline) is
    PostFailed naming it.
  * The whole exchange ends within `timeout` seconds. Never raises anything
    but PostFailed (network, TLS, HTTP trouble, time-out).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from collections.abc import Mapping

from pigeon import __version__

__all__ = ["MAX_HEAD", "PostFailed", "post"]

MAX_HEAD = 16384


class PostFailed(Exception):
    """The receiver did not take the event; str() says why."""


def _request(parts: urllib.parse.SplitResult, body: bytes, headers: Mapping[str, str]) -> bytes:
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        f"User-Agent: pigeon/{__version__}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _status(head: bytes) -> int:
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, rest = line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit() or len(code) != 3:
        raise PostFailed(f"not an HTTP answer: {line[:80]!r}")
    return int(code)


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
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    try:
        ctx = ssl.create_default_context(cafile=ca_file) if https else None
    except (OSError, ssl.SSLError) as exc:
        raise PostFailed(f"cannot use the CA file {ca_file}: {exc}") from None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host,
                parts.port or (443 if https else 80),
                ssl=ctx,
                server_hostname=host if https else None,
                limit=MAX_HEAD,
            )
            try:
                writer.write(_request(parts, body, headers))
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
            finally:
                writer.close()
    except TimeoutError:
        raise PostFailed(f"no answer within {timeout:g} s") from None
    except asyncio.LimitOverrunError:
        raise PostFailed(f"answer header over {MAX_HEAD} octets") from None
    except asyncio.IncompleteReadError:
        raise PostFailed("the connection closed before an answer") from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise PostFailed(str(exc) or type(exc).__name__) from None
    status = _status(head)
    if not 200 <= status < 300:
        raise PostFailed(f"HTTP status {status}")
    return status

"""POST one document to an https: URL, with our own resolver: TLS-RPT reports (RFC 8460 §3).

    await post("https://reports.example.org/tlsrpt", body, "application/tlsrpt+gzip",
               resolver, ca_file=None, timeout=10.0)
    # PostError(reason) when no server took it

Contract:
  * Only https: URLs with a host; anything else is PostError at once (the
    caller checked the scheme; this is the last guard).
  * The host's addresses come from the injected `pigeon.dns.Resolver` (A,
    then AAAA: delivery/tlspolicy/fetch.py `host_addresses`), each tried in
    turn until one answers; the certificate must chain to the CAs of
    `ca_file` (None: the system's store) and be valid for the host.
  * One HTTP/1.1 request: `POST <path?query>`, Host, Content-Type,
    Content-Length, `Connection: close`, User-Agent pigeon; the whole body
    in one write. Any 2xx answer is success (the server has the report);
    every other status, a redirect included (not followed: the report goes
    where the domain's record says, nowhere else), is PostError with the
    status. The answer's body is not read beyond its status line and
    header (at most MAX_HEAD octets).
  * The whole post (every address tried) ends within `timeout` seconds.
    Never raises anything but PostError for network, TLS, HTTP or DNS
    trouble. `port` replaces the URL's port (tests only).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from pathlib import Path

from pigeon.delivery.tlspolicy.fetch import FetchError, host_addresses, open_tls
from pigeon.dns.api import Resolver

__all__ = ["MAX_HEAD", "PostError", "post"]

MAX_HEAD = 8192


class PostError(Exception):
    """No server took the document; str() says why."""


async def post(
    url: str,
    body: bytes,
    content_type: str,
    resolver: Resolver,
    *,
    ca_file: Path | str | None,
    timeout: float,
    port: int | None = None,
) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise PostError(f"{url}: not an https: URL with a host")
    host = parts.hostname
    try:
        port = port or parts.port or 443
    except ValueError:  # a port that is not a number
        raise PostError(f"{url}: bad port") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {parts.netloc.rpartition('@')[2]}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\nUser-Agent: pigeon\r\n\r\n"
    ).encode("ascii", "replace")
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise PostError(f"cannot use the CA file {ca_file}: {exc}") from None
    try:
        async with asyncio.timeout(timeout):
            try:
                addresses = await host_addresses(resolver, host)
            except FetchError as exc:
                raise PostError(f"{url}: {exc}") from None
            last = PostError(f"{url}: no address")
            for address in addresses:
                try:
                    return await _post_to(url, host, address, port, ctx, head + body)
                except PostError as exc:
                    last = exc
            raise last
    except TimeoutError:
        raise PostError(f"{url}: timed out after {timeout:g} s") from None


async def _post_to(
    url: str, host: str, address: str, port: int, ctx: ssl.SSLContext, request: bytes
) -> None:
    where = f"{url} ({address})"
    try:
        reader, writer = await open_tls(host, address, port, ctx, where)
    except FetchError as exc:
        raise PostError(str(exc)) from None
    try:
        writer.write(request)
        await writer.drain()
        answer = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise PostError(f"{where}: answer header over the stream limit") from None
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        raise PostError(f"{where}: {exc}") from None
    finally:
        writer.close()
    if len(answer) > MAX_HEAD:
        raise PostError(f"{where}: answer header over {MAX_HEAD} octets")
    status = answer.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or not status[1].isdigit():
        raise PostError(f"{where}: not an HTTP answer: {status!r:.80}")
    if not status[1].startswith("2") or len(status[1]) != 3:
        raise PostError(f"{where}: HTTP status {' '.join(status[1:])}")

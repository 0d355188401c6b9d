"""Fetch an MTA-STS policy file over HTTPS (RFC 8461 §3.3), with our own resolver.

    text = await fetch_policy("example.org", resolver, ca_file=None, timeout=10.0)
    # FetchError(reason) when there is no valid answer

Contract:
  * GET https://mta-sts.<domain>/.well-known/mta-sts.txt, HTTP/1.1,
    `Connection: close`. The host's addresses come from the injected
    `pigeon.dns.Resolver` (A, then AAAA), each tried in turn, so the fetch
    uses the same DNS (and the same tests' DNS server) as delivery.
  * The server's certificate must chain to the CAs of `ca_file` (None: the
    system's store) and be valid for mta-sts.<domain> (§3.3: "the policy
    host ... MUST present a valid certificate").
  * Only a 200 answer counts; redirects are not followed (§3.3: "HTTP 3xx
    redirects MUST NOT be followed"); the media type must be text/plain
    (§3.2); the body may be at most MAX_BODY octets (64 KiB, the limit
    §3.3 suggests), sent with Content-Length, chunked, or until the close.
  * The whole fetch (every address tried) ends within `timeout` seconds.
  * Never raises anything but `FetchError` for network, TLS, HTTP or DNS
    trouble; `port` is for tests only (production: 443).
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from pigeon.dns.api import DnsError, Resolver

__all__ = ["FetchError", "MAX_BODY", "fetch_policy", "host_addresses", "open_tls", "policy_url"]

MAX_BODY = 65536
MAX_HEAD = 8192
WELL_KNOWN = "/.well-known/mta-sts.txt"


class FetchError(Exception):
    """No policy could be fetched; str() says why."""


def policy_url(domain: str) -> str:
    return f"https://mta-sts.{domain}{WELL_KNOWN}"


async def fetch_policy(
    domain: str,
    resolver: Resolver,
    *,
    ca_file: Path | str | None,
    timeout: float,
    port: int = 443,
) -> str:
    host = f"mta-sts.{domain}"
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:  # a CA file that went away or is not PEM
        raise FetchError(f"cannot use the CA file {ca_file}: {exc}") from None
    try:
        async with asyncio.timeout(timeout):
            addresses = await host_addresses(resolver, host)
            last = FetchError(f"{host}: no address")
            for address in addresses:
                try:
                    return await _get(host, address, port, ctx)
                except FetchError as exc:
                    last = exc
            raise last
    except TimeoutError:
        raise FetchError(f"{policy_url(domain)}: timed out after {timeout:g} s") from None


async def host_addresses(resolver: Resolver, host: str) -> list[str]:
    """The IPv4, then IPv6 addresses of `host`; FetchError saying why when it has none
    (delivery/httpspost.py uses it too)."""
    found: list[str] = []
    problems: list[str] = []
    for lookup in (resolver.a, resolver.aaaa):
        try:
            found.extend(await lookup(host))
        except DnsError as exc:
            problems.append(str(exc))
    if not found:
        raise FetchError("; ".join(problems) or f"{host}: no address")
    return found


async def open_tls(
    host: str, address: str, port: int, ctx: ssl.SSLContext, where: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TLS connection to `address`:`port` whose certificate `ctx` checks for
    `host`; FetchError saying why not, prefixed by `where` (delivery/httpspost.py too)."""
    try:
        return await asyncio.open_connection(address, port, ssl=ctx, server_hostname=host)
    except ssl.SSLError as exc:
        raise FetchError(f"{where}: TLS: {exc}") from None
    except OSError as exc:
        raise FetchError(f"{where}: {exc.strerror or exc}") from None


async def _get(host: str, address: str, port: int, ctx: ssl.SSLContext) -> str:
    where = f"https://{host}{WELL_KNOWN} ({address})"
    reader, writer = await open_tls(host, address, port, ctx, where)
    try:
        request = (
            f"GET {WELL_KNOWN} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
            "Accept: text/plain\r\nUser-Agent: pigeon\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()
        return await _response(reader, where)
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise FetchError(f"{where}: {exc}") from None
    finally:
        writer.close()


async def _response(reader: asyncio.StreamReader, where: str) -> str:
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEAD:
        raise FetchError(f"{where}: response header over {MAX_HEAD} octets")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise FetchError(f"{where}: not an HTTP response: {lines[0][:80]!r}")
    status = int(parts[1])
    if 300 <= status < 400:
        # RFC 8461 §3.3: "HTTP 3xx redirects MUST NOT be followed".
        raise FetchError(f"{where}: redirect ({status}) not followed")
    if status != 200:
        raise FetchError(f"{where}: HTTP status {status}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "text/plain":  # RFC 8461 §3.2
        raise FetchError(f"{where}: media type is {media or 'missing'}, not text/plain")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _chunked(reader, where)
    elif "content-length" in headers:
        length = headers["content-length"]
        if not length.isdigit() or int(length) > MAX_BODY:
            raise FetchError(f"{where}: policy over {MAX_BODY} octets")
        body = await reader.readexactly(int(length))
    else:
        body = await reader.read(MAX_BODY + 1)
        while len(body) <= MAX_BODY and (more := await reader.read(MAX_BODY + 1 - len(body))):
            body += more
    if len(body) > MAX_BODY:
        raise FetchError(f"{where}: policy over {MAX_BODY} octets")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError(f"{where}: policy is not UTF-8") from None


async def _chunked(reader: asyncio.StreamReader, where: str) -> bytes:
    body = b""
    while True:
        size_line = (await reader.readuntil(b"\r\n")).split(b";")[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise FetchError(f"{where}: bad chunk size") from None
        if size == 0:
            return body
        if len(body) + size > MAX_BODY:
            raise FetchError(f"{where}: policy over {MAX_BODY} octets")
        body += await reader.readexactly(size)
        await reader.readexactly(2)

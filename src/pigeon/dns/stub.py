"""`StubResolver`: the `pigeon.dns.Resolver` that asks real name servers (dnspython).

    resolver = StubResolver.from_config(config.delivery)   # dns_servers, dns_timeout
    hosts = await resolver.mx("example.org")

Contract (the interface's rules are in pigeon/dns/api.py):
  * A stub resolver (RFC 1123 §6.1.3.1): recursive queries to the
    `delivery.dns_servers`, or to the servers of /etc/resolv.conf when that
    list is empty. The search list is never applied: names are absolute.
  * Rule 1 (bounded): one look-up takes at most `timeout` seconds in all,
    retries and server changes included (dnspython's `lifetime`, and an
    asyncio deadline around it in case the library waits longer), then
    raises `TemporaryFailure("DNS timeout after <timeout>s")`.
  * Rule 2 (failures): NXDOMAIN -> `NoSuchDomain`; NOERROR without records of
    the type -> `NoData`; a timeout, SERVFAIL or REFUSED from every server
    ("no name server answered (...)"), a network error, or no usable
    resolver configuration (no /etc/resolv.conf: "no DNS resolver
    configuration: ...") -> `TemporaryFailure`, whose `reason` is one line.
  * `answer(kind, name)` is the same look-up with the answer's TTL
    (`pigeon.dns.api.TtlSource`), for the cache (`pigeon.dns.cache`).
  * Construction never fails: a resolver that cannot be configured answers
    every look-up with `TemporaryFailure`, so mail is deferred, not lost,
    until the machine's DNS is fixed.
  * Rule 3 (DNSSEC): a `DnssecResolver`. Every query carries the AD bit, so a
    validating resolver says in its response's AD bit whether the answer
    was validated (RFC 6840 §5.7); `Answer.secure` is that bit, nothing
    more: point `delivery.dns_servers` (or /etc/resolv.conf) at a local
    validating resolver (unbound, BIND) for DANE (RFC 7672 §2.1).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from typing import Any

import dns._asyncio_backend  # noqa: F401 (loaded now: see _preload below)
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename

from pigeon.config.schema import DeliveryConfig
from pigeon.dns.api import Answer, MxRecord, NoData, NoSuchDomain, TemporaryFailure, TlsaRecord


# dnspython imports its asyncio backend at the first look-up and the class of
# each record type the first time an answer holds one. By then pigeon may have
# dropped root (pigeon.privileges) and be unable to read its own install
# directory (a venv under /root, say): the look-up would fail with an import
# error. So everything a look-up can need is imported with this module.
def _preload() -> None:
    types = ("A", "AAAA", "MX", "TXT", "PTR", "TLSA", "CNAME", "DNAME", "SOA", "NS", "OPT")
    for rdtype in (*types, "RRSIG", "NSEC", "NSEC3", "DS", "DNSKEY"):
        get_class: Any = dns.rdata.get_rdata_class  # untyped in dnspython
        get_class(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype))


_preload()

__all__ = ["StubResolver"]

_RDTYPES = {
    "mx": dns.rdatatype.MX,
    "a": dns.rdatatype.A,
    "aaaa": dns.rdatatype.AAAA,
    "txt": dns.rdatatype.TXT,
    "tlsa": dns.rdatatype.TLSA,
}


class StubResolver:
    """See the module contract. `servers`: (address, port) pairs; empty = the servers
    named in `resolv_conf`."""

    def __init__(
        self,
        servers: Sequence[tuple[str, int]] = (),
        *,
        timeout: float = 10.0,
        resolv_conf: str = "/etc/resolv.conf",
    ) -> None:
        self.timeout = timeout
        self._setup_error: str | None = None
        self._resolver: dns.asyncresolver.Resolver | None = None
        try:
            resolver = dns.asyncresolver.Resolver(filename=resolv_conf, configure=not servers)
        except (dns.exception.DNSException, OSError) as exc:
            self._setup_error = f"no DNS resolver configuration: {exc}"
            return
        if servers:
            resolver.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in servers]
        # Rule 3: the AD bit in the query asks for it in the answer (RFC 6840 §5.7).
        resolver.flags = dns.flags.RD | dns.flags.AD
        resolver.lifetime = timeout
        resolver.timeout = min(resolver.timeout, timeout)
        self._resolver = resolver

    @classmethod
    def from_config(cls, config: DeliveryConfig) -> StubResolver:
        """The resolver `[delivery] dns_servers` and `dns_timeout` describe."""
        servers = [(ns.address, ns.port) for ns in config.dns_servers]
        return cls(servers, timeout=config.dns_timeout)

    # --- the interface -------------------------------------------------------------------

    async def mx(self, name: str) -> list[MxRecord]:
        return (await self.answer("mx", name))[0]

    async def a(self, name: str) -> list[str]:
        return (await self.answer("a", name))[0]

    async def aaaa(self, name: str) -> list[str]:
        return (await self.answer("aaaa", name))[0]

    async def txt(self, name: str) -> list[str]:
        return (await self.answer("txt", name))[0]

    async def ptr(self, address: str) -> list[str]:
        return (await self.answer("ptr", address))[0]

    async def answer(self, kind: str, name: str) -> tuple[list[Any], int]:
        """The values of look-up `kind` ("mx", "a", "aaaa", "txt", "ptr", "tlsa") of
        `name` and the TTL of the answer in seconds (`dns.api.TtlSource`, for
        `dns.cache.CachingResolver`); failures as the interface says."""
        found, ttl = await self._typed(kind, name)
        return found.records, ttl

    # --- with the validation status (Rule 3) ---------------------------------------------

    async def mx_answer(self, name: str) -> Answer[MxRecord]:
        return (await self._typed("mx", name))[0]

    async def a_answer(self, name: str) -> Answer[str]:
        return (await self._typed("a", name))[0]

    async def aaaa_answer(self, name: str) -> Answer[str]:
        return (await self._typed("aaaa", name))[0]

    async def tlsa(self, name: str) -> Answer[TlsaRecord]:
        return (await self._typed("tlsa", name))[0]

    async def _typed(self, kind: str, name: str) -> tuple[Answer[Any], int]:
        """One look-up of `kind`, its records as the interface's values, and the TTL."""
        if kind == "ptr":
            reverse = dns.reversename.from_address(str(ipaddress.ip_address(name)))
            found, ttl = await self._lookup(reverse, dns.rdatatype.PTR)
        else:
            found, ttl = await self._lookup(name, _RDTYPES[kind])
        values = [_value(kind, r) for r in found.records]
        return Answer(values, found.secure, found.name), ttl

    # --- one query -----------------------------------------------------------------------

    async def _resolve(
        self,
        resolver: dns.asyncresolver.Resolver,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
    ) -> Any:
        async with asyncio.timeout(self.timeout):  # Rule 1: the deadline is ours too
            return await resolver.resolve(qname, rdtype, search=False, raise_on_no_answer=False)

    async def _lookup(
        self, name: str | dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> tuple[Answer[Any], int]:  # dnspython's rdata classes are not typed per type
        shown = name if isinstance(name, str) else _text(name)
        what = dns.rdatatype.to_text(rdtype)
        if self._resolver is None:
            raise TemporaryFailure(shown, what, self._setup_error or "no resolver")
        try:
            qname = name if isinstance(name, dns.name.Name) else dns.name.from_text(name)
        except (dns.exception.DNSException, UnicodeError):
            raise NoSuchDomain(shown, what, "not a valid DNS name") from None
        try:
            # In a task of its own: the deadline belongs to this look-up, whoever
            # started it (policy/mailauth/eager.py starts look-ups in the caller's task).
            answer = await asyncio.ensure_future(self._resolve(self._resolver, qname, rdtype))
        except dns.resolver.NXDOMAIN:
            raise NoSuchDomain(shown, what, "no such domain (NXDOMAIN)") from None
        except (TimeoutError, dns.exception.Timeout):
            raise TemporaryFailure(shown, what, f"DNS timeout after {self.timeout:g}s") from None
        except dns.resolver.NoNameservers as exc:
            reason = f"no name server answered ({_first_line(exc)})"
            raise TemporaryFailure(shown, what, reason) from None
        except dns.exception.DNSException as exc:
            raise TemporaryFailure(shown, what, _first_line(exc)) from None
        except OSError as exc:
            raise TemporaryFailure(shown, what, str(exc.strerror or exc)) from None
        if answer.rrset is None or len(answer.rrset) == 0:
            raise NoData(shown, what, f"no {what} records")
        secure = bool(answer.response.flags & dns.flags.AD)  # Rule 3
        found = Answer(list(answer.rrset), secure, _text(answer.canonical_name))
        return found, answer.rrset.ttl


def _value(kind: str, rdata: Any) -> Any:
    """One record as the interface gives it (the module contract of pigeon/dns/api.py)."""
    if kind == "mx":
        return MxRecord(rdata.preference, _exchange(rdata.exchange))
    if kind == "txt":
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if kind == "ptr":
        return _text(rdata.target)
    if kind == "tlsa":
        return TlsaRecord(rdata.usage, rdata.selector, rdata.mtype, bytes(rdata.cert))
    return str(ipaddress.ip_address(rdata.address))


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _exchange(name: dns.name.Name) -> str:
    return "." if name == dns.name.root else _text(name)


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]

"""`FakeResolver`: a `pigeon.dns.Resolver` that answers from zones held in memory.

    resolver = FakeResolver({"example.test": '''
        @     MX 10 mx1
        mx1   A 192.0.2.1
    '''}, servfail={"broken.test"}, timeout={"slow.test"})
    await resolver.mx("example.test")     # [MxRecord(10, "mx1.example.test")]

Contract:
  * Zones are zone-file text exactly as `pigeon.testing.dnsserver.DnsServer`
    takes them (RFC 1035 §5, names relative to the origin, no SOA needed),
    and the answers follow the same rules, so a test can move between the
    fake (unit tests: no socket, no thread, no wait) and the real server on
    loopback (the dnspython `StubResolver` end to end) without rewriting
    its zones. tests/unit/dns/test_resolvers.py runs one set of cases
    against both.
  * Answers, for a look-up (name, type):
      - name in `timeout` (or below one): `TemporaryFailure` "DNS timeout
        after <lookup_timeout>s", at once (no real time passes);
      - name in `servfail` (or below): `TemporaryFailure`;
      - name in no zone, or absent from its zone without names below it:
        `NoSuchDomain`; an empty non-terminal: `NoData`;
      - the name has the type: its records; a CNAME: followed while the
        target is in our zones (at most 8 links); one leading out of them:
        `NoData`.
  * A `DnssecResolver` too: an answer is `secure` (as if the AD bit were
    set) when every zone it came from, CNAMEs followed, is in `signed`
    (a bogus zone is a `servfail` one: what a validating resolver answers).
  * Every look-up is recorded in `.queries` as (name, type text), in order,
    so tests can assert what was (not) asked. Never used by production code.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.zone

from pigeon.dns.api import Answer, MxRecord, NoData, NoSuchDomain, TemporaryFailure, TlsaRecord
from pigeon.testing.dnsserver import load_zone

__all__ = ["FakeResolver"]

MAX_CNAME_CHAIN = 8


class FakeResolver:
    """See the module contract."""

    def __init__(
        self,
        zones: Mapping[str, str] | None = None,
        *,
        servfail: Iterable[str] = (),
        timeout: Iterable[str] = (),
        signed: Iterable[str] = (),
        lookup_timeout: float = 10.0,
    ) -> None:
        self.zones: dict[dns.name.Name, dns.zone.Zone] = {}
        for origin, text in (zones or {}).items():
            self.add_zone(origin, text)
        self.servfail = {dns.name.from_text(n) for n in servfail}
        self.timeout = {dns.name.from_text(n) for n in timeout}
        self.signed = {dns.name.from_text(n) for n in signed}
        self.lookup_timeout = lookup_timeout
        self.queries: list[tuple[str, str]] = []

    def add_zone(self, origin: str, text: str) -> None:
        self.zones[dns.name.from_text(origin)] = load_zone(origin, text)

    # --- the interface -------------------------------------------------------------------

    async def mx(self, name: str) -> list[MxRecord]:
        return (await self.mx_answer(name)).records

    async def a(self, name: str) -> list[str]:
        return (await self.a_answer(name)).records

    async def aaaa(self, name: str) -> list[str]:
        return (await self.aaaa_answer(name)).records

    async def txt(self, name: str) -> list[str]:
        rdata = self._lookup(name, dns.rdatatype.TXT).records
        return [b"".join(r.strings).decode("utf-8", "replace") for r in rdata]

    async def ptr(self, address: str) -> list[str]:
        reverse = dns.reversename.from_address(str(ipaddress.ip_address(address)))
        return [_text(r.target) for r in self._lookup(_text(reverse), dns.rdatatype.PTR).records]

    async def mx_answer(self, name: str) -> Answer[MxRecord]:
        found = self._lookup(name, dns.rdatatype.MX)
        records = [
            MxRecord(r.preference, "." if r.exchange == dns.name.root else _text(r.exchange))
            for r in found.records
        ]
        return Answer(records, found.secure, found.name)

    async def a_answer(self, name: str) -> Answer[str]:
        return _addresses(self._lookup(name, dns.rdatatype.A))

    async def aaaa_answer(self, name: str) -> Answer[str]:
        return _addresses(self._lookup(name, dns.rdatatype.AAAA))

    async def tlsa(self, name: str) -> Answer[TlsaRecord]:
        found = self._lookup(name, dns.rdatatype.TLSA)
        records = [TlsaRecord(r.usage, r.selector, r.mtype, bytes(r.cert)) for r in found.records]
        return Answer(records, found.secure, found.name)

    # --- answering -----------------------------------------------------------------------

    def _lookup(self, name: str, rdtype: dns.rdatatype.RdataType) -> Answer[Any]:
        what = dns.rdatatype.to_text(rdtype)
        self.queries.append((name.lower().rstrip("."), what))
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, UnicodeError):
            raise NoSuchDomain(name, what, "not a valid DNS name") from None
        if any(qname.is_subdomain(n) for n in self.timeout):
            raise TemporaryFailure(name, what, f"DNS timeout after {self.lookup_timeout:g}s")
        if any(qname.is_subdomain(n) for n in self.servfail):
            raise TemporaryFailure(name, what, "no name server answered (SERVFAIL)")
        secure = True
        for link in range(MAX_CNAME_CHAIN + 1):
            zone = self._zone_for(qname)
            if zone is None and link:
                break  # a CNAME out of our zones: the server answers the CNAME only
            if zone is None:
                raise NoSuchDomain(name, what, "no such domain (NXDOMAIN)")
            node = zone.get_node(qname)
            if node is None:
                if any(n != qname and n.is_subdomain(qname) for n in zone.nodes):
                    raise NoData(name, what, f"no {what} records")
                raise NoSuchDomain(name, what, "no such domain (NXDOMAIN)")
            secure = secure and zone.origin in self.signed
            rdataset = node.get_rdataset(dns.rdataclass.IN, rdtype)
            if rdataset is not None:
                return Answer(list(rdataset), secure, _text(qname))
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None:
                break
            qname = cname[0].target
        raise NoData(name, what, f"no {what} records")

    def _zone_for(self, name: dns.name.Name) -> dns.zone.Zone | None:
        """The zone with the longest origin `name` is in (RFC 1034 §4.3.2, step 2)."""
        origins = [origin for origin in self.zones if name.is_subdomain(origin)]
        return self.zones[max(origins, key=len)] if origins else None


def _addresses(found: Answer[Any]) -> Answer[str]:
    return Answer(
        [str(ipaddress.ip_address(r.address)) for r in found.records], found.secure, found.name
    )


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()

"""The resolver interface: DNS look-ups as plain values and three kinds of failure.

    try:
        records = await resolver.mx("example.org")      # [MxRecord(10, "mx1.example.org"), ...]
    except NoData:             # the name exists, it has no MX records (RFC 2308 §2.2)
        ...
    except NoSuchDomain:       # NXDOMAIN (RFC 1035 §4.1.1, RCODE 3; RFC 8020)
        ...
    except TemporaryFailure:   # SERVFAIL, timeout, no server answered: try again later
        ...

Contract:
  * `Resolver` is what every part that needs DNS takes through its
    constructor (CONTRIBUTING.md, rule 14): MX routing (routing/mx.py)
    today; SPF, DKIM, DMARC and the client's PTR name later. One
    implementation talks to the network (`pigeon.dns.stub.StubResolver`,
    dnspython); tests use `pigeon.testing.fakedns.FakeResolver`, which holds
    zones in memory.
  * Every look-up is a coroutine that returns a NON-EMPTY list or raises one
    of the three `DnsError`s below; nothing else for DNS trouble. So a caller
    can tell "this domain does not exist" (a permanent answer: bounce, SPF
    "none") from "it exists but has no such records" (fall back: implicit
    MX, RFC 5321 §5.1) from "we could not find out" (defer; SPF
    "temperror", RFC 7208 §2.6.6).
  * Every wait on the network is bounded: each look-up ends within the
    resolver's per-look-up timeout (`delivery.dns_timeout`), then raises
    `TemporaryFailure` (CONTRIBUTING.md, rule 4).
  * Values are normalised: host names lowercase without the final dot;
    addresses in their canonical text form (`ipaddress`); a null MX's
    exchange (RFC 7505: the root, ".") is "." (`MxRecord.null`); a TXT
    record's character-strings are concatenated without separator (RFC 7208
    §3.3, RFC 6376 §3.6.2.2) and decoded as UTF-8 (undecodable octets
    replaced). CNAME chains are followed by the resolver: answers are the
    records of the type asked for.
  * A name that cannot be a DNS name (an empty label, a label over 63
    octets) is `NoSuchDomain`: no such domain can exist. `ptr()` takes an
    IP address; anything else is a `ValueError` (a programming error).
  * No cache in a `Resolver` itself. The cache is a wrapper:
    `pigeon.dns.cache.CachingResolver` keeps answers for their TTL (from a
    resolver that is also a `TtlSource`, such as `StubResolver`) and is
    what the mail authentication checks use (SPF, DKIM, DMARC, ARC ask the
    same names again and again); MX routing asks the resolver given to it,
    beside the machine's caching resolver, as every MTA does.
  * DNSSEC (RFC 7672 §2.1): a `DnssecResolver` also answers with `Answer`s
    that say whether the records were validated: `secure` is the AD bit of
    the response of a validating resolver (RFC 4035 §3.2.3; the query asks
    for it, RFC 6840 §5.7). pigeon validates nothing itself: it trusts the
    AD bit of the resolver it is configured with, which must therefore be
    a validating resolver reached over a trusted path (on the same host,
    RFC 4035 §4.9.3). A bogus answer is the resolver's SERVFAIL:
    `TemporaryFailure`. `Answer.name` is the name the records belong to
    after CNAMEs (the TLSA base domain of RFC 7672 §2.2.3). The plain
    look-ups above stay as they are; a resolver without the DNSSEC methods
    still is a `Resolver` (DANE then never applies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

__all__ = [
    "Answer",
    "DnsError",
    "DnssecResolver",
    "MxRecord",
    "NoData",
    "NoSuchDomain",
    "Resolver",
    "TemporaryFailure",
    "TlsaRecord",
    "TtlSource",
]

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class MxRecord:
    """One MX record (RFC 1035 §3.3.9): lower `preference` is tried first."""

    preference: int
    exchange: str  # lowercase, no final dot; "." for a null MX (RFC 7505)

    @property
    def null(self) -> bool:
        """The exchange is the root: "this domain accepts no mail" (RFC 7505 §3)."""
        return self.exchange == "."


@dataclass(frozen=True, slots=True)
class TlsaRecord:
    """One TLSA record (RFC 6698 §2.1): how to match the server's certificate."""

    usage: int  # 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE (RFC 7218 §2.1)
    selector: int  # 0 the whole certificate, 1 its SubjectPublicKeyInfo
    matching_type: int  # 0 the data itself, 1 SHA-256, 2 SHA-512
    data: bytes  # the certificate association data

    def __str__(self) -> str:
        """The presentation form, "3 1 1 <hex>" (RFC 6698 §2.2; RFC 8460 §4.2 policy-string)."""
        return f"{self.usage} {self.selector} {self.matching_type} {self.data.hex()}"


@dataclass(frozen=True, slots=True)
class Answer(Generic[R]):
    """The records of one look-up and whether the resolver validated them (module contract)."""

    records: list[R]  # never empty, as for the plain look-ups
    secure: bool  # the AD bit: DNSSEC-validated by the resolver (RFC 4035 §3.2.3)
    name: str  # the owner name of the records, after CNAMEs; lowercase, no final dot


class DnsError(Exception):
    """A look-up of `name` for records of `rdtype` ("MX", "A"...) found none; `reason` says why."""

    def __init__(self, name: str, rdtype: str, reason: str) -> None:
        super().__init__(name, rdtype, reason)
        self.name = name
        self.rdtype = rdtype
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.name} {self.rdtype}: {self.reason}"


class NoSuchDomain(DnsError):
    """NXDOMAIN: the name does not exist (RFC 1035 §4.1.1 RCODE 3), or cannot be a DNS name."""


class NoData(DnsError):
    """The name exists but has no records of this type (NOERROR, empty answer: RFC 2308 §2.2)."""


class TemporaryFailure(DnsError):
    """No answer could be had: SERVFAIL, a timeout, no name server answered, no resolver
    configuration. Worth trying again later."""


class Resolver(Protocol):
    """DNS look-ups (see the module contract): a non-empty list, or a `DnsError`."""

    async def mx(self, name: str) -> list[MxRecord]:
        """MX records of `name`, in the order the server gave them."""
        ...

    async def a(self, name: str) -> list[str]:
        """IPv4 addresses of `name` (A records)."""
        ...

    async def aaaa(self, name: str) -> list[str]:
        """IPv6 addresses of `name` (AAAA records)."""
        ...

    async def txt(self, name: str) -> list[str]:
        """TXT records of `name`, one string per record (character-strings concatenated)."""
        ...

    async def ptr(self, address: str) -> list[str]:
        """Names of the IP `address` (PTR records under in-addr.arpa / ip6.arpa)."""
        ...


@runtime_checkable
class DnssecResolver(Resolver, Protocol):
    """A `Resolver` that also says which answers were DNSSEC-validated (module contract)."""

    async def mx_answer(self, name: str) -> Answer[MxRecord]:
        """`mx()` with the validation status (RFC 7672 §2.2.1: is the MX RRset secure?)."""
        ...

    async def a_answer(self, name: str) -> Answer[str]:
        """`a()` with the validation status and the name after CNAMEs (RFC 7672 §2.2.2)."""
        ...

    async def aaaa_answer(self, name: str) -> Answer[str]:
        """`aaaa()` with the validation status and the name after CNAMEs."""
        ...

    async def tlsa(self, name: str) -> Answer[TlsaRecord]:
        """TLSA records of `name` (RFC 6698 §2: "_25._tcp.mx.example.org")."""
        ...


class TtlSource(Protocol):
    """A resolver that can also say how long an answer may be kept (its TTL)."""

    async def answer(self, kind: str, name: str) -> tuple[list[Any], int]:
        """The values of look-up `kind` ("mx", "a", "aaaa", "txt", "ptr": as the
        `Resolver` method of that name returns them) and the TTL in seconds."""
        ...

"""DANE for SMTP (RFC 7672): the TLSA records that apply to an MX host, and whether the
certificate chain its server presents matches them.

    lookup = await dane_lookup(resolver, "mx.example.org", 25)
    if lookup is not None:                 # DANE applies: TLS is mandatory, authenticated
        ...STARTTLS without ssl's own certificate check (the TLSA records are the check)...
        reason = dane_verify(lookup, peer_chain(ssl_object))   # tlspolicy/peer.py
        if reason is not None:             # not authenticated: do not send, defer (4.7.5)
            ...

Contract:
  * `dane_lookup(resolver, mx_host, port)` -> `DaneLookup | None`:
      - None when DANE does not apply: the resolver cannot say what DNSSEC
        validated (not a `pigeon.dns.api.DnssecResolver`); the MX host's
        address records (A, else AAAA) are not validated (RFC 7672 §2.2.2);
        no TLSA records (NXDOMAIN or no data); TLSA records not validated
        ("insecure", §2.2). Then the caller goes on as without DANE (its
        other policy, or opportunistic TLS).
      - A `DaneLookup` whose `records` is empty when validated TLSA records
        exist but none is usable (below): RFC 7672 §2.2 then asks for TLS
        that is mandatory but not authenticated (`mandatory_only`); the
        records found are in `unusable`, for the log and the reports.
      - raises `TemporaryFailure` when a look-up fails (SERVFAIL, which is
        also how a validating resolver reports a "bogus" answer, or a
        timeout): the TLSA records may exist and could not be had, so the
        mail must not go to this host now (§2.2.1: defer).
      - The TLSA records are those of `_<port>._tcp.<base domain>` (RFC 6698
        §3). The base domain is the MX host's name after CNAMEs when its
        expansion was validated, and the MX host name itself when that name
        has none (§2.2.2: the expanded name is tried first).
      - The caller asks only for hosts of a validated MX RRset
        (`DnssecResolver.mx_answer(...).secure`, §2.2.1): with an insecure
        MX RRset DANE does not apply, the attacker could have chosen the
        host. Next hops without MX look-up (a transport's literal host) are
        the caller's choice.
  * Usable records (RFC 7672 §3.1): certificate usage DANE-TA(2) or
    DANE-EE(3) (PKIX-TA(0) and PKIX-EE(1) are unusable in SMTP, §3.1.3);
    selector Cert(0) or SPKI(1); matching type Full(0), SHA2-256(1) or
    SHA2-512(2), with data of the digest's length. (dnspython refuses a
    whole answer holding a digest of the wrong length: such an RRset is a
    failed look-up, `TemporaryFailure`, so that host is not used.)
  * `dane_verify(lookup, chain_der)` -> None when the chain matches a usable
    record, else the reason (one line, for the log and the bounce).
    `chain_der` is the server's chain in DER, leaf first, as it was sent.
      - DANE-EE(3): the leaf matches; its names and validity dates are not
        looked at (§3.1.1).
      - DANE-TA(2): a certificate of the chain matches (the server must send
        its trust anchor, §3.1.2); the leaf chains up to it through the
        chain's certificates, each signature checked by `cryptography`, each
        issuer a CA (basicConstraints), every certificate on the path within
        its validity dates; and the leaf names a reference identifier
        (§3.2.2): the TLSA base domain or the MX host name, in a
        subjectAltName dNSName (the subject CN when it has none, §3.2.3),
        a wildcard only as the whole left-most label.
  * The chain comes from `tlspolicy.peer.peer_chain` (its Python-version limits).
  * Pure but for the resolver: no sockets; `now` is an argument.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from pigeon.dns.api import (
    Answer,
    DnssecResolver,
    NoData,
    NoSuchDomain,
    Resolver,
    TlsaRecord,
)

__all__ = ["DaneLookup", "dane_lookup", "dane_verify", "usable"]

DANE_TA, DANE_EE = 2, 3  # certificate usages (RFC 7218 §2.1)
SELECTORS = {0: "Cert", 1: "SPKI"}
# Matching types (RFC 6698 §2.1.3) and the length of their data (0: any).
MATCHING = {0: ("Full", 0), 1: ("SHA2-256", 32), 2: ("SHA2-512", 64)}
USAGES = {DANE_TA: "DANE-TA", DANE_EE: "DANE-EE"}


@dataclass(frozen=True, slots=True)
class DaneLookup:
    """The usable, validated TLSA records of one MX host (module contract)."""

    mx_host: str
    port: int
    base_domain: str  # the TLSA base domain (RFC 7672 §2.2.2)
    records: tuple[TlsaRecord, ...]  # all usable; empty: see `mandatory_only`
    unusable: tuple[TlsaRecord, ...] = ()  # validated records that are not usable (§3.1)

    @property
    def mandatory_only(self) -> bool:
        """Validated TLSA records, none usable: TLS without authentication (RFC 7672 §2.2)."""
        return not self.records

    @property
    def tlsa_name(self) -> str:
        return f"_{self.port}._tcp.{self.base_domain}"

    @property
    def reference_names(self) -> tuple[str, ...]:
        """The names a DANE-TA leaf must carry one of (RFC 7672 §3.2.2)."""
        return tuple(dict.fromkeys((self.base_domain, self.mx_host)))


def usable(record: TlsaRecord) -> bool:
    """RFC 7672 §3.1: DANE-TA/DANE-EE, a known selector, a known matching type and length."""
    if record.usage not in USAGES or record.selector not in SELECTORS:
        return False
    if record.matching_type not in MATCHING:
        return False
    length = MATCHING[record.matching_type][1]
    return bool(record.data) and (length == 0 or len(record.data) == length)


async def dane_lookup(resolver: Resolver, mx_host: str, port: int) -> DaneLookup | None:
    """The usable TLSA records of `mx_host`, or None: see the module contract."""
    if not isinstance(resolver, DnssecResolver):
        return None  # nothing says what was validated: DANE cannot apply
    host = mx_host.lower().rstrip(".")
    address = await _address_answer(resolver, host)
    if address is None or not address.secure:
        return None  # §2.2.2: an insecure host name has no secure TLSA records
    # §2.2.2: the CNAME-expanded name first, then the name the MX record gave.
    for base in dict.fromkeys((address.name, host)):
        try:
            answer = await resolver.tlsa(f"_{port}._tcp.{base}")
        except (NoData, NoSuchDomain):
            continue
        if not answer.secure:
            return None  # §2.2: "insecure" TLSA records are ignored
        records = tuple(r for r in answer.records if usable(r))
        unusable = tuple(r for r in answer.records if not usable(r))
        return DaneLookup(host, port, base, records, unusable)
    return None


async def _address_answer(resolver: DnssecResolver, host: str) -> Answer[str] | None:
    """The A records of `host`, else its AAAA records, else None; TemporaryFailure passes."""
    for lookup in (resolver.a_answer, resolver.aaaa_answer):
        try:
            return await lookup(host)
        except (NoData, NoSuchDomain):
            continue
    return None


# --- verification --------------------------------------------------------------------


def dane_verify(
    lookup: DaneLookup, chain_der: list[bytes], *, now: datetime | None = None
) -> str | None:
    """None when `chain_der` (leaf first) matches a record of `lookup`; else the reason."""
    if not chain_der:
        return "DANE: the server sent no certificate"
    try:
        chain = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError as exc:
        return f"DANE: the server's certificate cannot be parsed ({_first_line(exc)})"
    when = now or datetime.now(UTC)
    problems: list[str] = []
    for record in lookup.records:
        if record.usage == DANE_EE:
            if _matches(record, chain[0]):
                return None  # §3.1.1: no name, no expiry check
            continue
        anchors = [c for c in chain if _matches(record, c)]
        if not anchors:
            continue
        problem = _trust_anchor_path(chain, anchors, when)
        if problem is None:
            problem = _name_problem(chain[0], lookup.reference_names)
        if problem is None:
            return None
        problems.append(problem)
    if problems:  # a DANE-TA anchor was found: say why it did not do
        return f"DANE: {problems[0]}"
    return f"DANE: no TLSA record of {lookup.tlsa_name} matches the server's certificate chain"


def _matches(record: TlsaRecord, cert: x509.Certificate) -> bool:
    """RFC 6698 §2.1.2 and §2.1.3: the selected content, hashed as the record says."""
    if record.selector == 0:
        content = cert.public_bytes(Encoding.DER)
    else:
        content = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    digest: Callable[[bytes], Any] | None = {1: hashlib.sha256, 2: hashlib.sha512}.get(
        record.matching_type
    )
    return (content if digest is None else digest(content).digest()) == record.data


def _trust_anchor_path(
    chain: list[x509.Certificate], anchors: list[x509.Certificate], now: datetime
) -> str | None:
    """None when the leaf chains to one of `anchors` through `chain` (RFC 7672 §3.1.2)."""
    current = chain[0]
    path = [current]
    for _ in range(len(chain)):  # bounded: each step takes a certificate not yet on the path
        if any(current is anchor for anchor in anchors):
            return _validity_problem(path, now)
        issuer = next(
            (c for c in chain if all(c is not p for p in path) and _issued(current, c)), None
        )
        if issuer is None:
            break
        current = issuer
        path.append(current)
    if any(current is anchor for anchor in anchors):
        return _validity_problem(path, now)
    return "the server's certificate does not chain to the DANE-TA trust anchor"


def _issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """`issuer` is a CA certificate whose key signed `cert` (RFC 5280 §4.2.1.9, §6.1.3)."""
    if cert.issuer != issuer.subject:
        return False
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False  # TypeError/ValueError: key types that cannot have signed it
    return True


def _validity_problem(path: Iterable[x509.Certificate], now: datetime) -> str | None:
    for cert in path:
        if now < cert.not_valid_before_utc:
            return f"certificate {cert.subject.rfc4514_string()} is not valid yet"
        if now > cert.not_valid_after_utc:
            return f"certificate {cert.subject.rfc4514_string()} has expired"
    return None


def _name_problem(leaf: x509.Certificate, names: tuple[str, ...]) -> str | None:
    """RFC 7672 §3.2.2/§3.2.3: the leaf must name one of the reference identifiers."""
    presented = _dns_names(leaf)
    for name in names:
        if any(_name_matches(pattern, name) for pattern in presented):
            return None
    return f"the server's certificate names {', '.join(presented) or 'no host'}, not {names[0]}"


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if not names:  # §3.2.3: the CN only when there is no DNS name in the SAN
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [n.lower().rstrip(".") for n in names]


def _name_matches(pattern: str, name: str) -> bool:
    """A wildcard only as the whole left-most label, standing for one label (§3.2.3)."""
    if pattern.startswith("*."):
        head, dot, rest = name.partition(".")
        return bool(head and dot) and rest == pattern[2:]
    return pattern == name


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]

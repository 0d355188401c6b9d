"""check_host() (RFC 7208 §4): evaluate a domain's SPF record for a client IP.

    result = await check_host("192.0.2.3", "example.org", "alice@example.org",
                              "mx.example.net", resolver, now=time.time())
    result.result        # SpfVerdict.PASS, .FAIL, ... (§2.6)
    result.mechanism     # "ip4:192.0.2.0/24": the term that matched (None: no match)
    result.explanation   # fail only: the exp= text, expanded (§6.2)

Contract:
  * Results (§2.6): NONE (no record, or the domain cannot be one: §4.3),
    NEUTRAL (no term matched, no redirect: §4.7), PASS / FAIL / SOFTFAIL /
    NEUTRAL from the qualifier of the matching mechanism (§4.6.2),
    TEMPERROR (a DNS look-up gave TemporaryFailure: §2.6.6), PERMERROR (the
    record is broken, several records, a limit is exceeded: §2.6.7).
    `problem` says why for none, temperror and permerror.
  * Limits (§4.6.4), over the whole evaluation (include and redirect
    included): at most 10 terms that query DNS (include, a, mx, ptr,
    exists, redirect; the 11th is a permerror); at most 2 void look-ups
    (NoData or NoSuchDomain for a mechanism's own query; the 3rd is a
    permerror); an "mx" with more than 10 MX records is a permerror; "ptr"
    validates at most the first 10 names. The lookups of exp= and of the
    "p" macro are not counted and never change the result; "p" is looked
    up once per check (its uses are bounded by the terms that count).
  * include (§5.2): pass matches; fail, softfail, neutral do not; none is
    a permerror; temperror and permerror end the evaluation. redirect
    (§6.1): the target's result is the result, but its "none" is a
    permerror. exp= is taken from the record that gave "fail", never from
    an included record, and a broken one only means no explanation (§6.2).
  * "ptr" (§5.5) never gives temperror: DNS errors only mean no match.
  * `ip` must be an IP address (a `ValueError` otherwise: a programming
    error); <domain> and <sender> may be anything a client sent.
  * An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is checked as IPv4 (§5).
  * HELO identity (§2.3) and the null reverse-path (§2.4): `check_helo`
    and `check_mail_from` build <domain> and <sender> as the RFC says.
  * Each look-up is bounded by the resolver's timeout (pigeon.dns.api);
    the whole evaluation is bounded by the limits above (at most about
    10 + 10×10 + 2 look-ups), there is no overall clock here.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from pigeon.dns.api import DnsError, NoData, NoSuchDomain, Resolver, TemporaryFailure
from pigeon.policy.spf.macros import MacroContext, SpfSyntaxError, expand, fit_domain, uses_ptr
from pigeon.policy.spf.record import Directive, SpfRecord, parse_record, select_record

__all__ = ["SpfResult", "SpfVerdict", "check_helo", "check_host", "check_mail_from"]

MAX_DNS_TERMS = 10  # §4.6.4
MAX_VOID_LOOKUPS = 2  # §4.6.4
MAX_NAMES = 10  # §4.6.4: MX records per "mx", PTR names per "ptr"

T = TypeVar("T")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class SpfVerdict(StrEnum):
    """The seven results of check_host() (RFC 7208 §2.6)."""

    NONE = "none"
    NEUTRAL = "neutral"
    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


QUALIFIER_VERDICT = {  # §4.6.2
    "+": SpfVerdict.PASS,
    "-": SpfVerdict.FAIL,
    "~": SpfVerdict.SOFTFAIL,
    "?": SpfVerdict.NEUTRAL,
}


@dataclass(frozen=True, slots=True)
class SpfResult:
    """What check_host() found; see the module contract."""

    result: SpfVerdict
    domain: str  # the domain whose record decided (after redirects)
    mechanism: str | None = None  # the matching term as written in that record
    explanation: str | None = None  # fail with a usable exp= only (§6.2)
    problem: str | None = None  # why: none, temperror, permerror


class _Stop(Exception):
    """Ends the evaluation with temperror or permerror."""

    def __init__(self, verdict: SpfVerdict, problem: str) -> None:
        super().__init__(problem)
        self.verdict = verdict
        self.problem = problem


@dataclass(frozen=True, slots=True)
class _Outcome:
    verdict: SpfVerdict
    domain: str
    record: SpfRecord | None = None
    mechanism: str | None = None
    problem: str | None = None


async def check_helo(
    ip: str, helo: str, resolver: Resolver, *, now: float, receiver: str = "unknown"
) -> SpfResult:
    """The HELO identity (§2.3): <domain> is the HELO name, <sender> postmaster@HELO."""
    return await check_host(
        ip, helo, f"postmaster@{helo}", helo, resolver, now=now, receiver=receiver
    )


async def check_mail_from(
    ip: str, mail_from: str, helo: str, resolver: Resolver, *, now: float, receiver: str = "unknown"
) -> SpfResult:
    """The MAIL FROM identity (§2.4); the null reverse-path checks postmaster@HELO."""
    if not mail_from:
        return await check_helo(ip, helo, resolver, now=now, receiver=receiver)
    domain = mail_from.rpartition("@")[2]
    return await check_host(ip, domain, mail_from, helo, resolver, now=now, receiver=receiver)


async def check_host(
    ip: str,
    domain: str,
    sender: str,
    helo: str,
    resolver: Resolver,
    *,
    now: float,
    receiver: str = "unknown",
) -> SpfResult:
    """RFC 7208 §4: the SPF result for `ip` sending as `sender` on behalf of `domain`."""
    address = _client_address(ip)
    local, _, sender_domain = sender.rpartition("@")
    sender = f"{local or 'postmaster'}@{sender_domain}"  # §4.3
    evaluation = _Evaluation(address, sender, helo, resolver, receiver, now)
    domain = domain.lower()
    try:
        outcome = await evaluation.evaluate(domain)
    except _Stop as stop:
        return SpfResult(stop.verdict, domain, problem=stop.problem)
    except SpfSyntaxError as error:
        return SpfResult(SpfVerdict.PERMERROR, domain, problem=str(error))
    explanation = None
    if outcome.verdict is SpfVerdict.FAIL and outcome.record and outcome.record.exp is not None:
        explanation = await evaluation.explain(outcome.record.exp, outcome.domain)
    return SpfResult(
        outcome.verdict, outcome.domain, outcome.mechanism, explanation, outcome.problem
    )


@functools.lru_cache(maxsize=1024)
def _client_address(ip: str) -> Address:
    """`ip` parsed (cached: a client sends many messages); ValueError if it is none."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped  # §5: checked as the IPv4 address it carries
    return address


@functools.lru_cache(maxsize=1024)
def _network(
    network: str, bits: int | None
) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """An ip4:/ip6: term's or a looked-up address's network (cached: records repeat)."""
    try:
        return ipaddress.ip_network(f"{network}/{bits}" if bits is not None else network, False)
    except ValueError:
        return None


class _Evaluation:
    """One check_host() call: the counters of §4.6.4 shared by includes and redirects."""

    def __init__(
        self,
        ip: Address,
        sender: str,
        helo: str,
        resolver: Resolver,
        receiver: str,
        now: float,
    ) -> None:
        self.ip = ip
        self.sender = sender
        self.helo = helo
        self.resolver = resolver
        self.receiver = receiver
        self.now = now
        self.dns_terms = 0
        self.void_lookups = 0
        self.ptr_macro_names: list[str] | None = None  # "p": looked up once per check

    async def evaluate(self, domain: str) -> _Outcome:
        """check_host() for `domain` (§4.3 to §4.7); `_Stop` / `SpfSyntaxError` end it."""
        malformed = _malformed(domain)
        if malformed:
            return _Outcome(SpfVerdict.NONE, domain, problem=malformed)
        try:
            texts = await self.resolver.txt(domain)
        except (NoData, NoSuchDomain) as error:
            return _Outcome(SpfVerdict.NONE, domain, problem=str(error))  # §4.3, §4.4
        except TemporaryFailure as error:
            raise _Stop(SpfVerdict.TEMPERROR, str(error)) from None
        text = select_record(texts)
        if text is None:
            return _Outcome(SpfVerdict.NONE, domain, problem=f"{domain}: no SPF record")
        record = parse_record(text)  # §4.6: the whole record is checked first
        for directive in record.directives:
            if await self._matches(directive, domain):
                verdict = QUALIFIER_VERDICT[directive.qualifier]
                return _Outcome(verdict, domain, record, directive.text)
        if record.redirect is None:
            return _Outcome(SpfVerdict.NEUTRAL, domain, record)  # §4.7
        self._count_dns_term(f"redirect={record.redirect}")
        target = await self._expand_domain(record.redirect, domain)
        outcome = await self.evaluate(target)
        if outcome.verdict is SpfVerdict.NONE:  # §6.1
            raise _Stop(SpfVerdict.PERMERROR, f"redirect={target}: {outcome.problem}")
        return outcome

    async def explain(self, spec: str, domain: str) -> str | None:
        """§6.2: the exp= text, or None when anything about it fails."""
        try:
            target = await self._expand_domain(spec, domain)
            texts = await self.resolver.txt(target)
            if len(texts) != 1:
                return None
            return expand(texts[0], await self._context(domain, texts[0]), explanation=True)
        except (DnsError, SpfSyntaxError, _Stop):
            return None

    # --- mechanisms (§5) -------------------------------------------------------------------

    async def _matches(self, directive: Directive, domain: str) -> bool:
        name = directive.mechanism
        if name == "all":
            return True  # §5.1
        if name in ("ip4", "ip6"):  # §5.6
            bits = directive.cidr4 if name == "ip4" else directive.cidr6
            return self._in_network(str(directive.argument), bits)
        self._count_dns_term(directive.text)
        target = domain  # §5.3-5.5: no domain-spec means <domain>, which is never expanded
        if directive.argument is not None:
            target = await self._expand_domain(directive.argument, domain)
        if name == "include":
            return await self._include(target, directive.text)
        if name == "a":  # §5.3
            addresses = await self._query(self._address_lookup(), target)
            return self._any_in(addresses, directive)
        if name == "mx":  # §5.4
            exchanges = await self._query(self.resolver.mx, target)
            problem = f"{directive.text}: {len(exchanges)} MX records, over {MAX_NAMES}"
            _limit(len(exchanges), MAX_NAMES, problem)
            for exchange in exchanges:
                if exchange.null:
                    continue
                lookup = self._address_lookup()
                addresses = await self._query(lookup, exchange.exchange, counts_void=False)
                if self._any_in(addresses, directive):
                    return True
            return False
        if name == "ptr":  # §5.5
            names = await self._validated_names(counts_void=True)
            return any(n == target or n.endswith("." + target) for n in names)
        # "exists" (§5.7): an A look-up whatever the client's address family
        return bool(await self._query(self.resolver.a, target))

    async def _include(self, target: str, term: str) -> bool:
        """§5.2: the included domain's result decides whether this mechanism matches."""
        outcome = await self.evaluate(target)
        if outcome.verdict is SpfVerdict.NONE:
            raise _Stop(SpfVerdict.PERMERROR, f"{term}: {outcome.problem}")
        return outcome.verdict is SpfVerdict.PASS

    def _in_network(self, network: str, bits: int | None) -> bool:
        net = _network(network, bits)
        return net is not None and net.version == self.ip.version and self.ip in net

    def _any_in(self, addresses: list[str], directive: Directive) -> bool:
        bits = directive.cidr4 if self.ip.version == 4 else directive.cidr6
        return any(self._in_network(address, bits) for address in addresses)

    def _address_lookup(self) -> Callable[[str], Awaitable[list[str]]]:
        return self.resolver.a if self.ip.version == 4 else self.resolver.aaaa

    async def _validated_names(self, *, counts_void: bool) -> list[str]:
        """§5.5: the PTR names of the IP whose own addresses include it (first 10 names)."""
        try:
            names = await self.resolver.ptr(str(self.ip))
        except (NoData, NoSuchDomain):
            if counts_void:
                self._count_void(f"PTR of {self.ip}")
            return []
        except TemporaryFailure:
            return []  # §5.5: a DNS error on the PTR look-up: no match
        validated = []
        for name in names[:MAX_NAMES]:
            try:
                addresses = await self._address_lookup()(name)
            except DnsError:
                continue  # §5.5: that name is skipped
            if any(ipaddress.ip_address(a) == self.ip for a in addresses):
                validated.append(name)
        return validated

    # --- DNS, macros, counters -------------------------------------------------------------

    async def _query(
        self,
        lookup: Callable[[str], Awaitable[list[T]]],
        name: str,
        *,
        counts_void: bool = True,
    ) -> list[T]:
        try:
            return await lookup(name)
        except (NoData, NoSuchDomain):
            if counts_void:
                self._count_void(name)
            return []
        except TemporaryFailure as error:
            raise _Stop(SpfVerdict.TEMPERROR, str(error)) from None

    def _count_dns_term(self, term: str) -> None:
        self.dns_terms += 1
        _limit(
            self.dns_terms, MAX_DNS_TERMS, f"{term}: more than {MAX_DNS_TERMS} DNS-querying terms"
        )

    def _count_void(self, name: str) -> None:
        self.void_lookups += 1
        _limit(
            self.void_lookups,
            MAX_VOID_LOOKUPS,
            f"{name}: more than {MAX_VOID_LOOKUPS} void look-ups",
        )

    async def _expand_domain(self, spec: str, domain: str) -> str:
        return fit_domain(expand(spec, await self._context(domain, spec))).rstrip(".").lower()

    async def _context(self, domain: str, text: str) -> MacroContext:
        ptr_name = None
        if uses_ptr(text):  # §7.2 "p": a validated name, one in <domain> preferred
            if self.ptr_macro_names is None:
                self.ptr_macro_names = await self._validated_names(counts_void=False)
            names = self.ptr_macro_names
            inside = [n for n in names if n == domain or n.endswith("." + domain)]
            ptr_name = (inside or names)[0] if names else None
        return MacroContext(
            self.sender, domain, self.ip, self.helo, self.receiver, self.now, ptr_name
        )


def _limit(count: int, limit: int, problem: str) -> None:
    """§4.6.4: going over a limit is a permerror."""
    if count > limit:
        raise _Stop(SpfVerdict.PERMERROR, f"{problem} (RFC 7208 §4.6.4)")


def _malformed(domain: str) -> str | None:
    """§4.3: why `domain` cannot have an SPF record, or None."""
    name = domain[:-1] if domain.endswith(".") else domain
    labels = name.split(".")
    if len(labels) < 2 or labels[-1].isdigit() or name.startswith("["):
        return f"{domain!r}: not a multi-label domain name (RFC 7208 §4.3)"
    if len(name) > 253 or any(not label or len(label) > 63 for label in labels):
        return f"{domain!r}: malformed domain name (RFC 7208 §4.3)"
    return None

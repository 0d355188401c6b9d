"""Next hop -> the ordered list of servers to try: MX and address lookups (RFC 5321 §5.1).

    resolver = MxResolver(dns, remote_port=25, own_names=names, own_addresses=addrs)
    try:
        for c in await resolver.candidates(nexthop):   # Candidate(host, address, port, preference)
            ... connect to (c.address, c.port), greet c.host ...
    except ResolveError as e:                          # e.message, e.status, e.permanent
        ... every recipient of the nexthop: deferred (e.permanent False) or bounced ...

Contract:
  * DNS comes from the injected `pigeon.dns.Resolver` (`dns` above: the
    dnspython `StubResolver` in production, `FakeResolver` in tests); this
    module decides what its answers mean for mail, and never talks to the
    network itself.
  * `candidates(nexthop)` returns a non-empty list, best first, or raises
    `ResolveError`; it never raises anything else for DNS trouble (a
    `ValueError` means a programming error: a "local"/"discard" nexthop).
  * Which name is looked up: `nexthop.host` if set, else `nexthop.domain`.
    With `nexthop.mx` (and transport "smtp") its MX records are used; else
    (`[host]`, LMTP, address literals) only its own addresses. An IP address
    resolves to itself; an LMTP Unix socket path gives one candidate with
    host = address = the path and port 0.
  * MX rules (RFC 5321 §5.1):
      Rule 1: MX records are sorted by preference, lowest first; records of
        equal preference are shuffled with `rng` (load spreading, §5.1 "MUST
        randomize").
      Rule 2: each MX host gives its IPv6 (AAAA) addresses, then its IPv4 (A)
        ones, each family shuffled; both are always returned, the agent
        decides what it can reach.
      Rule 3: no MX records (NOERROR, no data): the name itself is the only
        "implicit MX", preference 0.
      Rule 4: a single MX whose exchange is "." is a null MX (RFC 7505): the
        domain accepts no mail: permanent, 5.1.10, message "556 5.1.10 ...".
        A "." among other MX records is skipped like an unresolvable host.
      Rule 5 (loops): if an MX host is us (its name is in `own_names`, or
        one of its addresses in `own_addresses`), every MX of that
        preference or worse is dropped (§5.1 "MUST discard"); none left:
        permanent 5.4.6 "mail for <domain> loops back to myself". Loop
        detection applies to MX lookups (explicit or implicit) only, not to
        `[host]`, literal or LMTP next hops, which an operator may point at
        a filter on one of our own addresses. (The SMTP agent's greeting
        check, delivery/smtp.py `checks_loops`, follows the same line: MX
        lookups, plus address literals, whose peer we only know by its
        greeting.)
      Rule 6: an MX host that does not resolve is skipped; if none resolves:
        transient 4.4.4.
  * Failure statuses (RFC 3463):
      recipient domain (nexthop.host is None):
        NXDOMAIN -> permanent 5.1.2; no MX and no address -> permanent 5.4.4;
      a configured host (relay_host, [transports]): NXDOMAIN or no address
        -> transient 4.4.4 (a configuration mistake must not bounce mail,
        Postfix defers too);
      SERVFAIL, timeout (`dns_timeout` per lookup), no usable name server,
      an unconfigured resolver (the resolver's `TemporaryFailure`) ->
      transient 4.4.3.
  * Ports: `nexthop.port`, else `remote_port` (smtp) or 24 (lmtp).
  * No cache: run a caching resolver (unbound, systemd-resolved) next to
    pigeon, as for any MTA. Lookups of one call run concurrently; a call
    takes at most about two `dns_timeout`s (MX, then the hosts).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from dataclasses import dataclass
from itertools import groupby

from pigeon.config.schema import Config
from pigeon.dns.api import DnsError, NoData, NoSuchDomain, Resolver, TemporaryFailure
from pigeon.routing.resolve import literal_ip
from pigeon.vocab import Nexthop

__all__ = ["Candidate", "ResolveError", "MxResolver", "own_identity", "LMTP_PORT"]

LMTP_PORT = 24  # RFC 2033 §5 (no assigned port; 24 is "any private mail system", Postfix's default)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One server to try: `host` for EHLO/TLS names and logs, `address` to connect to."""

    host: str  # MX host name (lowercase, no final dot), or the IP / socket path itself
    address: str  # IPv6/IPv4 address, or a Unix socket path (LMTP)
    port: int  # TCP port; 0 for a Unix socket
    preference: int = 0  # MX preference (0 for implicit MX and explicit hosts)


class ResolveError(Exception):
    """The next hop cannot be resolved: `status` is the RFC 3463 code, `message` the diagnostic."""

    def __init__(self, message: str, status: str, permanent: bool) -> None:
        super().__init__(message, status, permanent)
        self.message = message
        self.status = status
        self.permanent = permanent

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


def own_identity(config: Config) -> tuple[set[str], set[str]]:
    """(own_names, own_addresses) for loop detection: hostname, helo_name,
    listen addresses (not wildcards such as 0.0.0.0) and delivery.own_addresses."""
    names = {config.hostname.lower().rstrip(".")}
    if config.delivery.helo_name:
        names.add(config.delivery.helo_name.lower().rstrip("."))
    addresses: set[str] = set()
    for item in [*(la.host for la in config.listen), *config.delivery.own_addresses]:
        try:
            ip = ipaddress.ip_address(item)
        except ValueError:
            names.add(item.lower().rstrip("."))
            continue
        if not ip.is_unspecified:
            addresses.add(str(ip))
    return names, addresses


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


class _Lookup:
    """How one address lookup ended: addresses, and if none, the failure that says why."""

    __slots__ = ("addresses", "problem")

    def __init__(self, addresses: list[str], problem: DnsError | None) -> None:
        self.addresses = addresses
        self.problem = problem  # None when there are addresses


class MxResolver:
    """Finds the servers for a `Nexthop` (see the module contract)."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        remote_port: int = 25,
        own_names: set[str],
        own_addresses: set[str],
        rng: random.Random | None = None,
    ) -> None:
        self._dns = resolver
        self._remote_port = remote_port
        self._own_names = {n.lower().rstrip(".") for n in own_names}
        self._own_addresses = {_ip(a) or a for a in own_addresses}
        self._rng = rng if rng is not None else random.Random()

    # --- the public question ---------------------------------------------------------------

    async def candidates(self, nexthop: Nexthop) -> list[Candidate]:
        """The servers to try for `nexthop`, best first; ResolveError if there are none."""
        if nexthop.transport not in ("smtp", "lmtp"):
            raise ValueError(f"no servers to resolve for transport {nexthop.transport!r}")
        default_port = LMTP_PORT if nexthop.transport == "lmtp" else self._remote_port
        port = nexthop.port or default_port
        target = (nexthop.host or nexthop.domain).lower().rstrip(".")
        configured = nexthop.host is not None
        if target.startswith("/"):
            return [Candidate(target, target, 0, 0)]
        ip = literal_ip(target) or _ip(target)
        if ip is not None:
            return [Candidate(ip, ip, port, 0)]
        if nexthop.transport == "lmtp" or not nexthop.mx:
            found = await self._addresses(target)
            if not found.addresses:
                raise self._no_address(target, found.problem, configured)
            return [Candidate(target, a, port, 0) for a in found.addresses]
        return await self._via_mx(target, port, configured)

    # --- MX ------------------------------------------------------------------------------------

    async def _via_mx(self, target: str, port: int, configured: bool) -> list[Candidate]:
        try:
            records = await self._dns.mx(target)
        except NoSuchDomain:
            raise self._not_found(target, configured) from None
        except TemporaryFailure as exc:
            raise ResolveError(
                f"cannot look up MX records of {target}: {exc.reason}", "4.4.3", False
            ) from None
        except NoData:
            records = []
        if not records:  # Rule 3: implicit MX
            hosts = [(0, target)]
        else:
            if len(records) == 1 and records[0].null:  # Rule 4
                raise ResolveError(
                    f"556 5.1.10 domain {target} does not accept mail (null MX, RFC 7505)",
                    "5.1.10",
                    True,
                )
            hosts = self._order([(r.preference, r.exchange) for r in records if not r.null])
        lookups = await asyncio.gather(*(self._addresses(h) for _, h in hosts))
        # Rule 5: anything at or after our own preference is discarded.
        for (pref, host), found in zip(hosts, lookups):
            if host in self._own_names or self._own_addresses.intersection(found.addresses):
                kept = [(p, h, f) for (p, h), f in zip(hosts, lookups) if p < pref]
                if not kept:
                    raise ResolveError(f"mail for {target} loops back to myself", "5.4.6", True)
                break
        else:
            kept = [(p, h, f) for (p, h), f in zip(hosts, lookups)]
        out = [Candidate(h, a, port, p) for p, h, f in kept for a in f.addresses]
        if out:
            return out
        if not records:  # implicit MX without address
            raise self._no_address(target, lookups[0].problem, configured, implicit=True)
        names = ", ".join(h for _, h, _ in kept)
        raise ResolveError(f"no MX host of {target} has an address ({names})", "4.4.4", False)

    def _order(self, hosts: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """Rule 1: by preference, equal preferences shuffled."""
        out: list[tuple[int, str]] = []
        for _, group in groupby(sorted(hosts, key=lambda ph: ph[0]), key=lambda ph: ph[0]):
            same = list(dict.fromkeys(group))  # drop duplicate records
            self._rng.shuffle(same)
            out.extend(same)
        return out

    # --- addresses ---------------------------------------------------------------------------

    async def _addresses(self, host: str) -> _Lookup:
        """Rule 2: AAAA then A, each shuffled; partial answers are fine."""
        v6, v4 = await asyncio.gather(
            self._dns.aaaa(host), self._dns.a(host), return_exceptions=True
        )
        addresses: list[str] = []
        problems: list[DnsError] = []
        for answer in (v6, v4):
            if isinstance(answer, DnsError):
                problems.append(answer)
            elif isinstance(answer, BaseException):
                raise answer  # a bug, not a DNS answer
            else:
                family = list(dict.fromkeys(answer))
                self._rng.shuffle(family)
                addresses.extend(family)
        if addresses:
            return _Lookup(addresses, None)
        # The most telling failure: "we could not find out" beats "no such name"
        # beats "no records".
        for kind in (TemporaryFailure, NoSuchDomain, DnsError):
            for problem in problems:
                if isinstance(problem, kind):
                    return _Lookup([], problem)
        raise AssertionError("a look-up without addresses has a failure")  # pragma: no cover

    def _no_address(
        self, target: str, problem: DnsError | None, configured: bool, *, implicit: bool = False
    ) -> ResolveError:
        if isinstance(problem, TemporaryFailure):
            return ResolveError(
                f"cannot look up the address of {target}: {problem.reason}", "4.4.3", False
            )
        if isinstance(problem, NoSuchDomain):
            return self._not_found(target, configured)
        what = "no MX and no address records" if implicit else "no address records"
        if configured:
            return ResolveError(f"host {target} has {what}", "4.4.4", False)
        return ResolveError(f"domain {target} has {what}", "5.4.4", True)

    @staticmethod
    def _not_found(target: str, configured: bool) -> ResolveError:
        if configured:
            return ResolveError(f"host {target} not found (NXDOMAIN)", "4.4.4", False)
        return ResolveError(f"domain {target} not found (NXDOMAIN)", "5.1.2", True)

"""DNS block lists with weights and a threshold ([dnsbl]): DNSBL and RHSBL (RFC 5782).

Contract:
  * `BlockLists` is a mail check (an `async def`: it waits for DNS). For a
    client that is neither in `relay_networks` nor logged in it asks, all
    at once: each of `dnsbl.sites` for the client's address (RFC 5782
    §2.1: the octets reversed, "2.0.0.127.zone"; IPv6 by nibbles, §2.4),
    and each of `dnsbl.rhsbl_sites` for the sender's domain and for the
    HELO name (§2.3: "domain.zone"; an address literal or the null sender
    is not asked). A list counts when one of its A answers passes the
    site's filter (`DnsblSite.matches`), once however many names it
    listed. The weights of the lists that count are added; at
    `dnsbl.threshold` or more the MAIL gets BLOCKED (550 5.7.1, naming
    the lists). Weights may be negative (allow lists).
  * A list that cannot answer (time-out, SERVFAIL: `TemporaryFailure`)
    counts 0: a broken list must not stop mail (postscreen does the same).
    NXDOMAIN or no A record: not listed.
  * Answers are kept `CACHE_SECONDS` (at most `CACHE_ENTRIES` names, the
    oldest dropped first), so a client that makes many transactions asks
    the lists once; the check keeps no per-connection state.
  * Every look-up is bounded by the resolver (`delivery.dns_timeout`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable

from pigeon.config.abuse import DnsblConfig, DnsblSite
from pigeon.dns.api import DnsError, Resolver, TemporaryFailure
from pigeon.policy.api import SessionFacts, Verdict, refuse
from pigeon.policy.relay import RelayNetworks, client_address
from pigeon.proto import reply as R
from pigeon.proto.params import MailParams
from pigeon.vocab.address import Address

__all__ = ["BlockLists", "reversed_name"]

CACHE_SECONDS = 300.0
CACHE_ENTRIES = 10_000


def reversed_name(client_ip: str) -> str | None:
    """The DNSBL query label of an address (RFC 5782 §2.1, §2.4); None: no IP."""
    ip = client_address(client_ip)
    if ip is None:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return ".".join(reversed(str(ip).split(".")))
    return ".".join(reversed(ip.exploded.replace(":", "")))


def _domain(name: str | None) -> str | None:
    """A name worth asking an RHSBL about: a domain, not an address literal."""
    if not name or name.startswith("[") or "." not in name:
        return None
    return name.lower().rstrip(".")


class BlockLists:
    """mail: the weighted DNSBL/RHSBL score (module contract)."""

    def __init__(
        self,
        config: DnsblConfig,
        resolver: Resolver,
        trusted: RelayNetworks,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._resolver = resolver
        self._trusted = trusted
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, tuple[str, ...]]] = OrderedDict()

    async def mail(
        self, session: SessionFacts, sender: Address | None, params: MailParams
    ) -> Verdict | None:
        if self._trusted.trusts(session):
            return None
        config = self._config
        asked: list[tuple[DnsblSite, str]] = []
        label = reversed_name(session.client_ip)
        if label is not None:
            asked += [(site, f"{label}.{site.zone}") for site in config.sites]
        domains = {_domain(sender.domain if sender else None), _domain(session.helo)} - {None}
        asked += [(site, f"{d}.{site.zone}") for site in config.rhsbl_sites for d in domains]
        if not asked:
            return None
        answers = await asyncio.gather(*(self._answers(name) for _, name in asked))
        listed: dict[str, int] = {}
        for (site, _), found in zip(asked, answers, strict=True):
            if any(site.matches(a) for a in found):
                listed[site.zone] = site.weight
        if sum(listed.values()) < config.threshold:
            return None
        names = ", ".join(zone for zone, weight in listed.items() if weight > 0)
        return refuse(
            R.reply(
                550,
                "5.7.1",
                f"Service unavailable; client [{session.client_ip}] blocked using {names}",
            )
        )

    async def _answers(self, name: str) -> tuple[str, ...]:
        now = self._clock()
        cached = self._cache.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            found: tuple[str, ...] = tuple(await self._resolver.a(name))
        except TemporaryFailure:
            return ()  # counts 0 and is asked again next time
        except DnsError:
            found = ()
        self._cache[name] = (now + CACHE_SECONDS, found)
        self._cache.move_to_end(name)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return found

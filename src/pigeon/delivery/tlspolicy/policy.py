"""The outbound TLS policy of a recipient domain, and the plan for each of its MX hosts.

    policies = TlsPolicies(resolver, config.tls_policy, base_mode="may", cache_dir=...)
    domain_policy = await policies.for_nexthop(nexthop)
    plan = await domain_policy.plan(candidate)   # CandidatePlan: how to connect there

Contract:
  * A policy applies to next hops found through the recipient domain's MX
    records (transport "smtp", no `host`): not to a smarthost, a
    `[transports]` host or LMTP, which the operator chose (their TLS is
    `delivery.tls`); for those the plan's label is "".
  * Per MX host, the stricter applicable policy wins (RFC 8461 §2):
      1. DANE (RFC 7672), when `[tls_policy] dane` is on, the domain's MX
         RRset was DNSSEC-validated (§2.2.1: `for_nexthop` asks the resolver
         with `mx_answer`; a validated "no MX" counts, the domain is then its
         own host) and `dane_lookup` finds usable DNSSEC-validated TLSA
         records for the host: TLS is
         required and the peer's chain must pass `dane_verify` (mode "dane",
         label "dane"). A DNS failure of a validated TLSA look-up makes the
         host unusable (RFC 7672 §2.2.1): a refusal.
      2. MTA-STS (RFC 8461), when `[tls_policy] mta_sts` is on and the
         domain has a policy in mode enforce or testing (`tlspolicy.mtasts`):
         TLS with a certificate that chains to the CAs (`[tls_policy]
         ca_file` or the system's) and matches the MX host name (§4.2, mode
         "verify"); an MX host not matching the policy's mx patterns (§4.1)
         is refused. Label "mta-sts:enforce" or "mta-sts:testing".
      3. none: `delivery.tls` as configured (label "none").
  * `enforced`: a failure of the plan defers the candidate (DANE,
    enforce); in testing mode (§5) it is reported and the mail goes as
    without the policy (`fallback`, `delivery.tls`).
  * Each plan carries what RFC 8460 reports need (`policy_type`,
    `policy_strings`) and makes the `TlsRecord` of an attempt (`record`).
  * DANE's functions are `tlspolicy.dane` (`dane_lookup`, `dane_verify`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pigeon.config.tlspolicy import TlsPolicyConfig
from pigeon.delivery.tlspolicy import dane
from pigeon.delivery.tlspolicy.mtasts import StsSource
from pigeon.delivery.tlspolicy.peer import TlsCheck
from pigeon.delivery.tlspolicy.sts import StsPolicy
from pigeon.dns.api import DnsError, DnssecResolver, NoData, Resolver, TemporaryFailure
from pigeon.reports.records import TlsRecord
from pigeon.routing.mx import Candidate
from pigeon.vocab import Nexthop

__all__ = ["CandidatePlan", "DomainPolicy", "TlsPolicies"]


@dataclass(frozen=True, slots=True)
class CandidatePlan:
    """How to connect to one MX host of a domain (module contract)."""

    domain: str
    label: str  # "dane" | "mta-sts:enforce" | "mta-sts:testing" | "none" | "" (no policy applies)
    mode: str  # the client's TLS policy: "dane" | "verify" | delivery.tls
    enforced: bool = True  # a failure defers (False: testing mode, report and go on)
    fallback: str = "may"  # testing mode: the TLS policy used once the plan failed
    ca_file: str | None = None  # CAs for "verify" (None: delivery.tls_ca_file / the system's)
    check: TlsCheck | None = None  # the "dane" chain check
    refusal: str = ""  # this host must not be used: why (§4.1 MX mismatch, TLSA look-up failure)
    policy_type: str = "no-policy-found"  # RFC 8460 §4.2: "sts" | "tlsa" | "no-policy-found"
    policy_strings: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        """Whether this plan lets no mail go in clear or to an unauthenticated host."""
        return self.enforced and self.label not in ("", "none")

    def record(
        self, cand: Candidate, *, success: bool, result_type: str | None = None, info: str = ""
    ) -> TlsRecord:
        return TlsRecord(
            when=time.time(),
            policy_domain=self.domain,
            policy_type=self.policy_type,
            policy_strings=self.policy_strings,
            mx_host=cand.host,
            receiving_ip=cand.address,
            success=success,
            result_type=result_type,
            additional_information=info,
        )


class DomainPolicy:
    """One recipient domain's policy: `plan(candidate)` per MX host (module contract)."""

    def __init__(
        self,
        owner: TlsPolicies,
        domain: str,
        sts: StsPolicy | None,
        *,
        applies: bool,
        mx_secure: bool = False,
    ) -> None:
        self.owner = owner
        self.domain = domain
        self.sts = sts
        self.applies = applies
        self.mx_secure = mx_secure  # RFC 7672 §2.2.1: DANE only under a validated MX RRset

    async def plan(self, cand: Candidate) -> CandidatePlan:
        owner = self.owner
        base = CandidatePlan(self.domain, "none" if self.applies else "", owner.base_mode)
        if not self.applies:
            return base
        if owner.config.dane and owner.resolver is not None and self.mx_secure:
            try:
                lookup = await dane.dane_lookup(owner.resolver, cand.host, cand.port)
            except TemporaryFailure as exc:
                return CandidatePlan(
                    self.domain,
                    "dane",
                    "dane",
                    refusal=f"TLSA look-up for {cand.host} failed: {exc} (RFC 7672 §2.2.1)",
                    policy_type="tlsa",
                )
            if lookup is not None and lookup.mandatory_only:
                # RFC 7672 §2.2: validated TLSA records, none usable: TLS is still
                # mandatory (no clear text), but nothing can authenticate the host.
                return CandidatePlan(
                    self.domain,
                    "dane",
                    "encrypt",
                    policy_type="tlsa",
                    policy_strings=tuple(str(r) for r in lookup.unusable),
                )
            if lookup is not None:
                return CandidatePlan(
                    self.domain,
                    "dane",
                    "dane",
                    check=partial(dane.dane_verify, lookup),
                    policy_type="tlsa",
                    policy_strings=tuple(str(r) for r in lookup.records),
                )
        sts = self.sts
        if sts is None or sts.mode == "none":
            return base
        refusal = ""
        if not sts.allows(cand.host):
            refusal = (
                f"MX host {cand.host} is not allowed by the MTA-STS policy of {self.domain} "
                "(RFC 8461 §4.1)"
            )
        ca_file = owner.config.ca_file
        return CandidatePlan(
            self.domain,
            f"mta-sts:{sts.mode}",
            "verify",
            enforced=sts.mode == "enforce",
            fallback=owner.base_mode,
            ca_file=str(ca_file) if ca_file else None,
            refusal=refusal,
            policy_type="sts",
            policy_strings=sts.lines(),
        )


class TlsPolicies:
    """Finds each recipient domain's policy (module contract)."""

    def __init__(
        self,
        resolver: Resolver | None,
        config: TlsPolicyConfig,
        *,
        base_mode: str,
        cache_dir: Path | None,
        clock: Callable[[], float] = time.time,
        https_port: int = 443,
    ) -> None:
        self.resolver = resolver
        self.config = config
        self.base_mode = base_mode
        self.sts: StsSource | None = None
        if config.mta_sts and resolver is not None and cache_dir is not None:
            self.sts = StsSource(
                resolver,
                cache_dir,
                ca_file=config.ca_file,
                timeout=config.fetch_timeout,
                clock=clock,
                https_port=https_port,
            )

    @classmethod
    def off(cls, base_mode: str) -> TlsPolicies:
        """No policy for anyone: `delivery.tls` everywhere."""
        return cls(
            None, TlsPolicyConfig(mta_sts=False, dane=False), base_mode=base_mode, cache_dir=None
        )

    async def for_nexthop(self, nexthop: Nexthop) -> DomainPolicy:
        domain = nexthop.domain.lower().rstrip(".")
        applies = nexthop.transport == "smtp" and nexthop.host is None and nexthop.mx
        if not applies or (self.sts is None and not self.config.dane):
            return DomainPolicy(self, domain, None, applies=applies)
        sts = await self.sts.policy(domain) if self.sts is not None else None
        mx_secure = self.config.dane and await self._mx_secure(domain)
        return DomainPolicy(self, domain, sts, applies=True, mx_secure=mx_secure)

    async def _mx_secure(self, domain: str) -> bool:
        """Whether `domain`'s MX RRset was DNSSEC-validated (RFC 7672 §2.2.1).

        A second MX look-up (the candidate walk made the first): a caching
        resolver answers it from its cache. No MX records (NoData): the domain
        is its own host (RFC 5321 §5.1), whose addresses `dane_lookup` checks.
        """
        if not isinstance(self.resolver, DnssecResolver):
            return False
        try:
            return (await self.resolver.mx_answer(domain)).secure
        except NoData:
            return True
        except DnsError:  # no such domain, or no answer: the walk fails or defers anyway
            return False

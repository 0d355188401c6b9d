"""DMARC (RFC 7489): the From domain, the policy record, alignment, the result.

Contract:
  * `author_domain(headers)` is RFC 7489 §6.6.1: the domain of the one
    RFC5322.From address. No From field, several From fields, or addresses
    of different domains give a `problem` instead (the check's documented
    verdict: dmarc=permerror; the last two, `ambiguous`, are refused under
    enforce; docs/mail-auth.md).
  * `find_policy(resolver, domain, orgs)` is §6.6.3 record discovery: the
    TXT records at `_dmarc.<From domain>`, then, if none is usable, at
    `_dmarc.<organizational domain>`. Records not starting with "v=DMARC1"
    are dropped; more than one left is "no record" (step 5). A record whose
    p= is missing or invalid counts only with a valid rua= (then p=none,
    §6.6.3 step 6). A DNS failure (`TemporaryFailure`) is temperror.
  * `evaluate(...)` is §3.1 alignment and §6.6.2: pass when an SPF pass
    (of MAIL FROM, or of HELO for the null sender, §2.4 of RFC 7208) or a
    DKIM pass has a domain aligned with the From domain (strict: equal;
    relaxed: the same organizational domain); else temperror when an SPF
    or DKIM temperror could have made it pass; else fail. The policy that
    applies is sp= for a subdomain whose record was found at the
    organizational domain, else p=; pct= samples (§6.6.4: a message left
    out of the sample gets the next milder policy, reject -> quarantine ->
    none, reason "sampled_out"). `sample` is an argument (0 <= x < 100) so
    tests choose it.
  * Pure but for `find_policy`, which only asks the resolver.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import getaddresses

from pigeon.dns.api import DnsError, Resolver, TemporaryFailure
from pigeon.policy.mailauth.orgdomain import OrgDomains

__all__ = ["Author", "DmarcPolicy", "DmarcResult", "author_domain", "evaluate", "find_policy"]

_POLICIES = ("none", "quarantine", "reject")
_MILDER = {"reject": "quarantine", "quarantine": "none", "none": "none"}


@dataclass(frozen=True, slots=True)
class Author:
    domain: str = ""  # the RFC5322.From domain, lowercased
    problem: str = ""  # why there is no one From domain
    #: Several authors (fields or domains): the way round a DMARC policy that
    #: RFC 7489 §6.6.1 says receivers reject; no author at all names nobody's
    #: domain, so nobody's policy is forged (written down, not refused).
    ambiguous: bool = False


def author_domain(headers: Sequence[tuple[str, str]]) -> Author:
    """The From domain of the message (module contract)."""
    values = [v for n, v in headers if n.lower() == "from"]
    if not values:
        return Author(problem="no From: header field")
    if len(values) > 1:
        return Author(problem="more than one From: header field", ambiguous=True)
    return _author(values[0])


@functools.lru_cache(maxsize=1024)
def _author(value: str) -> Author:
    """The author of one From: field's value; cached, as a sender's From repeats."""
    domains = set()
    for _, address in getaddresses([value]):
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain:
            continue
        domains.add(domain.lower().rstrip(".").strip("[]"))
    if not domains:
        return Author(problem="no address with a domain in From:")
    if len(domains) > 1:
        return Author(problem="From: addresses of different domains", ambiguous=True)
    return Author(domains.pop())


@dataclass(frozen=True, slots=True)
class DmarcPolicy:
    """A usable DMARC record (§6.3)."""

    domain: str  # where it was found
    p: str
    sp: str
    pct: int = 100
    adkim: str = "r"
    aspf: str = "r"
    record: str = ""


@functools.lru_cache(maxsize=1024)
def _parse(domain: str, text: str) -> DmarcPolicy | None:
    """A record's tags (§6.3), or None when it is not usable (§6.6.3 step 6);
    cached, as a domain's record is the same for each of its messages."""
    found: dict[str, str] = {}
    for part in text.split(";"):
        key, eq, value = part.partition("=")
        if eq:
            found.setdefault(key.strip().lower(), value.strip())
    if found.get("v") != "DMARC1":
        return None
    p = found.get("p", "").lower()
    if p not in _POLICIES:
        if not found.get("rua", "").lower().startswith("mailto:"):
            return None
        p = "none"
    sp = found.get("sp", p).lower()
    if sp not in _POLICIES:
        sp = p
    try:
        pct = min(100, max(0, int(found.get("pct", "100"))))
    except ValueError:
        pct = 100
    adkim = "s" if found.get("adkim", "r").lower() == "s" else "r"
    aspf = "s" if found.get("aspf", "r").lower() == "s" else "r"
    return DmarcPolicy(domain, p, sp, pct, adkim, aspf, text)


async def _record_at(resolver: Resolver, domain: str) -> DmarcPolicy | None:
    """The one usable record at _dmarc.<domain>; TemporaryFailure passes up."""
    try:
        records = await resolver.txt(f"_dmarc.{domain}")
    except TemporaryFailure:
        raise
    except DnsError:
        return None
    dmarc = [r for r in records if r.startswith("v=DMARC1")]  # §6.6.3 step 4
    if len(dmarc) != 1:  # step 5: none, or more than one
        return None
    return _parse(domain, dmarc[0])


async def find_policy(resolver: Resolver, domain: str, orgs: OrgDomains) -> DmarcPolicy | None:
    """§6.6.3 discovery (module contract); raises TemporaryFailure."""
    found = await _record_at(resolver, domain)
    if found is None:
        org = orgs.org(domain)
        if org != domain:
            found = await _record_at(resolver, org)
    return found


@dataclass(frozen=True, slots=True)
class DmarcResult:
    result: str  # pass | fail | temperror
    policy: str  # the policy that applies after sampling: none | quarantine | reject
    spf_aligned: bool
    dkim_aligned: bool
    sampled_out: bool = False


def _aligned(domain: str, author: str, mode: str, orgs: OrgDomains) -> bool:
    domain = domain.lower().rstrip(".")
    if mode == "s":
        return domain == author
    return bool(domain) and orgs.org(domain) == orgs.org(author)


def evaluate(
    policy: DmarcPolicy,
    author: str,
    spf: tuple[str, str],
    dkim: Sequence[tuple[str, str]],
    orgs: OrgDomains,
    *,
    sample: float,
) -> DmarcResult:
    """`spf`: (result, domain) of the SPF identity DMARC uses; `dkim`:
    (result, d=) of each signature (module contract)."""
    spf_aligned = spf[0] == "pass" and _aligned(spf[1], author, policy.aspf, orgs)
    dkim_aligned = any(r == "pass" and _aligned(d, author, policy.adkim, orgs) for r, d in dkim)
    subdomain = policy.domain != author
    applied = policy.sp if subdomain else policy.p
    if spf_aligned or dkim_aligned:
        return DmarcResult("pass", applied, spf_aligned, dkim_aligned)
    could_pass = (spf[0] == "temperror" and _aligned(spf[1], author, policy.aspf, orgs)) or any(
        r == "temperror" and _aligned(d, author, policy.adkim, orgs) for r, d in dkim
    )
    if could_pass:
        return DmarcResult("temperror", applied, False, False)
    if sample >= policy.pct and applied != "none":  # §6.6.4
        return DmarcResult("fail", _MILDER[applied], False, False, sampled_out=True)
    return DmarcResult("fail", applied, False, False)

"""What the checks find about one message: SPF, DKIM, ARC and DMARC, computed once.

Contract:
  * `Investigator.investigate(session, message, headers, policies)` runs,
    all at once, the look-ups the message needs for the checks its
    `CheckPolicies` turn on: SPF of MAIL FROM and of HELO (RFC 7208 §2.3,
    §2.4: `pigeon.policy.spf`), the DKIM and ARC keys (policy/mailauth/keys.py),
    the DMARC record of the From domain (policy/mailauth/dmarc.py); then
    verifies the signatures and the ARC chain (policy/mailauth/verify.py) and
    evaluates DMARC. The result is one `Findings`, from which the check
    writes the header, the verdict and the report record: nothing is
    computed twice for a message. DMARC needs SPF and DKIM, so they run
    whenever DMARC is on, even when their own policy is off (they are then
    used for DMARC only, not written into the header).
  * The look-ups are started at once (policy/mailauth/eager.py): answered
    from the cache they finish on the spot, without a task each; only a
    look-up that waits for DNS gets one.
  * SPF results are kept for the (client IP, MAIL FROM, HELO) they were
    computed for, exactly as long as the DNS answers behind them
    (policy/mailauth/spfmemo.py).
  * Every DNS look-up goes through the resolver given (the TTL cache,
    dns/cache.py, in a server) and is bounded by its time-out; a DNS failure
    is a temperror in the findings, never an exception and never a pass.
  * The message is read into memory once (header section and body) only
    when it carries a DKIM-Signature or ARC header field; messages are
    bounded by `limits.message_size`. Verification runs on the event loop
    for a message up to `THREAD_ABOVE` octets and in a worker thread
    (`asyncio.to_thread`) above, so a large message does not hold the loop.
    Measured (two signatures, rsa-sha256 2048 and ed25519-sha256, one core
    of the 2-core project machine, policy/mailauth/dkimfast.py): 0.24 ms
    for 2 KB, 0.8 ms for 256 KiB, 2.5 ms for 1 MB, 24 ms for 10 MB; a
    thread hop costs more than the small cases.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pigeon.config.mailauth import CheckPolicies
from pigeon.dns.api import Resolver, TemporaryFailure
from pigeon.policy.api import Message, SessionFacts
from pigeon.policy.mailauth import eager
from pigeon.policy.mailauth.dmarc import (
    Author,
    DmarcPolicy,
    DmarcResult,
    author_domain,
    evaluate,
    find_policy,
)
from pigeon.policy.mailauth.keys import SIGNATURE_FIELDS, KeyAnswers, fetch_keys, key_names
from pigeon.policy.mailauth.orgdomain import OrgDomains
from pigeon.policy.mailauth.spfmemo import SpfMemo
from pigeon.policy.mailauth.verify import (
    ArcOutcome,
    DkimLimits,
    DkimOutcome,
    verify_arc,
    verify_dkim,
)
from pigeon.policy.spf import SpfResult, SpfVerdict, check_helo, check_mail_from

__all__ = ["Findings", "Investigator", "THREAD_ABOVE", "message_content"]

#: Messages larger than this are verified in a worker thread (module contract).
THREAD_ABOVE = 256 * 1024

_ARC_FIELDS = ("arc-seal", "arc-message-signature")


@dataclass(slots=True)
class Findings:
    """Everything found about one message (module contract)."""

    sender: str = ""  # MAIL FROM ("" = <>)
    helo: str = ""
    spf_mfrom: SpfResult | None = None  # None: SPF was not checked
    spf_helo: SpfResult | None = None  # None: not checked (no usable HELO name)
    dkim: list[DkimOutcome] = field(default_factory=list)
    dkim_checked: bool = False
    arc: ArcOutcome | None = None  # None: ARC was not checked
    author: Author | None = None  # None: DMARC was not checked
    dmarc_policy: DmarcPolicy | None = None
    dmarc_lookup_failed: TemporaryFailure | None = None
    dmarc: DmarcResult | None = None  # None: no record, or not checked

    @property
    def spf_identity(self) -> tuple[str, str]:
        """(result, domain) of the SPF identity DMARC uses (RFC 7489 §3.1.2:
        MAIL FROM, or HELO for the null sender)."""
        if self.spf_mfrom is None:
            return "none", ""
        domain = self.sender.rpartition("@")[2] if self.sender else self.helo
        return str(self.spf_mfrom.result), domain.lower()


def _helo_name(helo: str | None) -> str:
    """A HELO name SPF can check: a domain, not an address literal (RFC 7208 §2.3)."""
    if not helo or helo.startswith("[") or "." not in helo:
        return ""
    return helo.lower().rstrip(".")


class Investigator:
    """See the module contract."""

    def __init__(
        self,
        resolver: Resolver,
        orgs: OrgDomains,
        limits: DkimLimits,
        *,
        receiver: str,
        wallclock: Callable[[], float] = time.time,
        sample: Callable[[], float] | None = None,
    ) -> None:
        self.resolver = resolver
        self.orgs = orgs
        self.limits = limits
        self.receiver = receiver
        self.wallclock = wallclock
        self.sample = sample or (lambda: random.random() * 100)  # DMARC pct= (§6.6.4)
        self.spf_memo = SpfMemo(resolver)

    async def investigate(
        self,
        session: SessionFacts,
        message: Message,
        headers: Sequence[tuple[str, str]],
        policies: CheckPolicies,
    ) -> Findings:
        dmarc_on = policies.dmarc != "off"
        spf_on = dmarc_on or policies.spf != "off"
        dkim_on = dmarc_on or policies.dkim != "off"
        arc_on = policies.arc != "off" and any(n.lower() in _ARC_FIELDS for n, _ in headers)
        found = Findings(str(session.sender) if session.sender else "", session.helo or "")
        fields = [f for f, on in zip(SIGNATURE_FIELDS, (dkim_on, arc_on, arc_on)) if on]
        names = key_names(headers, fields)
        # Each signature needs one key; ARC at most two per set (RFC 8617 §5.1.1 caps sets at 50).
        limit = self.limits.max_signatures + (100 if arc_on else 0)
        jobs: list[asyncio.Future[None]] = []
        keys_job = eager.start(fetch_keys(self.resolver, names, limit))
        if spf_on:
            jobs.append(eager.start(self._spf(session, found)))
        if dmarc_on:
            found.author = author_domain(headers)
            if found.author.domain:
                jobs.append(eager.start(self._dmarc_policy(found.author.domain, found)))
        keys = await keys_job
        if dkim_on or arc_on:
            await self._verify(message, headers, keys, found, dkim_on=dkim_on, arc_on=arc_on)
        if jobs:
            await eager.gather(*jobs)
        if found.dmarc_policy is not None and found.author is not None:
            dkim = [(d.result, d.domain) for d in found.dkim]
            found.dmarc = evaluate(
                found.dmarc_policy,
                found.author.domain,
                found.spf_identity,
                dkim,
                self.orgs,
                sample=self.sample(),
            )
        return found

    async def _spf(self, session: SessionFacts, found: Findings) -> None:
        ip = session.client_ip
        key = (ip, found.sender, session.helo)
        kept = self.spf_memo.lookup(key)
        if kept is not None:
            found.spf_mfrom, found.spf_helo = kept
            return
        view = self.spf_memo.tracking()
        await self._evaluate_spf(ip, _helo_name(session.helo), found, view)
        self.spf_memo.keep(key, (found.spf_mfrom, found.spf_helo), view)

    async def _evaluate_spf(self, ip: str, helo: str, found: Findings, dns: Resolver) -> None:
        now = self.wallclock()
        mfrom = check_mail_from(
            ip, found.sender, helo or found.helo, dns, now=now, receiver=self.receiver
        )
        if helo and found.sender:
            checks = check_helo(ip, helo, dns, now=now, receiver=self.receiver)
            found.spf_mfrom, found.spf_helo = await eager.gather(mfrom, checks)
        elif found.sender or helo:
            found.spf_mfrom = await mfrom
            found.spf_helo = found.spf_mfrom if not found.sender else None
        else:  # null sender and no usable HELO name: nothing to check (RFC 7208 §2.4)
            found.spf_mfrom = SpfResult(SpfVerdict.NONE, "", problem="no identity to check")

    async def _dmarc_policy(self, domain: str, found: Findings) -> None:
        try:
            found.dmarc_policy = await find_policy(self.resolver, domain, self.orgs)
        except TemporaryFailure as exc:
            found.dmarc_lookup_failed = exc

    async def _verify(
        self,
        message: Message,
        headers: Sequence[tuple[str, str]],
        keys: KeyAnswers,
        found: Findings,
        *,
        dkim_on: bool,
        arc_on: bool,
    ) -> None:
        found.dkim_checked = dkim_on
        signed = dkim_on and any(n.lower() == "dkim-signature" for n, _ in headers)
        if not signed and not arc_on:
            return
        content = message_content(message)

        def work() -> None:
            if signed:
                found.dkim = verify_dkim(content, headers, keys, self.limits)
            if arc_on:
                found.arc = verify_arc(content, headers, keys, self.limits.min_key_bits)

        if len(content) > THREAD_ABOVE:
            await asyncio.to_thread(work)
        else:
            work()


def message_content(message: Message) -> bytes:
    """The whole message (header section and body), read once."""
    head = message.header_section()
    if not head.endswith(b"\r\n\r\n"):  # a view may leave the empty line out
        head += b"\r\n" if head.endswith(b"\r\n") else b"\r\n\r\n"
    with message.body() as body:
        return head + body.read()

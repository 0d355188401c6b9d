"""pigeon.policy.mailauth: inbound SPF, DKIM, DMARC and ARC as a receive-pipeline stage.

    check = build_mail_auth(config, resolver, networks, sink)   # policy/build.py does this

Modules (each has its contract):
    check      `MailAuth`: the stage (rcpt, end_of_data), the rules users read
    examine    findings -> the verdict and the DMARC record, wherever the checks run
    remote     the server's end of the checker process (app/checker.py)
    outcome    findings -> decision, Authentication-Results entries, DmarcRecord (pure)
    findings   the look-ups and verifications of one message, computed once
    keys       DKIM/ARC keys fetched through our resolver; dkimpy's dnsfunc
    verify     DKIM (RFC 6376, RFC 8463) and ARC (RFC 8617): dkimfast first, dkimpy behind
    dkimfast   the lean DKIM verifier for rsa-sha256 and ed25519-sha256
    (pigeon.signing.dkimrsa: dkimpy's RSA steps by OpenSSL, for its fallback and ARC)
    eager      look-ups started at once; a task only when one must wait
    memo       SPF results, DMARC policies, keys kept as long as their DNS answers
    dmarc      RFC 7489: the From domain, record discovery, alignment
    orgdomain  the organizational domain from the Public Suffix List
    authres    the Authentication-Results field (RFC 8601)

The libraries (dkimpy, publicsuffixlist; SPF is our `pigeon.policy.spf`) are
used only inside these modules, behind the stage, so they can be swapped.
docs/mail-auth.md ("Inbound checks") is the user's side.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pigeon.config.schema import Config
from pigeon.dns.api import Resolver
from pigeon.policy.mailauth.check import MailAuth
from pigeon.policy.mailauth.examine import Examiner
from pigeon.policy.mailauth.findings import Investigator
from pigeon.policy.mailauth.orgdomain import OrgDomains
from pigeon.policy.mailauth.pool import CheckerPool
from pigeon.policy.mailauth.remote import RemoteChecks
from pigeon.policy.mailauth.verify import DkimLimits
from pigeon.policy.relay import RelayNetworks
from pigeon.reports.records import ReportSink

__all__ = ["CheckerPool", "MailAuth", "RemoteChecks", "build_examiner", "build_mail_auth"]


def build_examiner(
    config: Config, resolver: Resolver, *, wallclock: Callable[[], float] = time.time
) -> Examiner:
    """What examines a message under `config` ([mail_auth]), in the server or
    in the checker process; `resolver` should cache (dns/cache.py)."""
    auth = config.mail_auth
    authserv_id = auth.authserv_id or config.hostname
    limits = DkimLimits(auth.max_signatures, auth.min_key_bits, auth.max_key_bits)
    orgs = OrgDomains(auth.public_suffix_list)
    investigator = Investigator(resolver, orgs, limits, receiver=authserv_id, wallclock=wallclock)
    return Examiner(
        auth,
        investigator,
        authserv_id=authserv_id,
        wallclock=wallclock,
        records=config.reports.dmarc,  # the sink keeps them only then (app/reportjob.py)
    )


def build_mail_auth(
    config: Config,
    resolver: Resolver,
    networks: RelayNetworks,
    sink: ReportSink,
    *,
    wallclock: Callable[[], float] = time.time,
    remote: CheckerPool | None = None,
) -> MailAuth:
    """The stage for `config` ([mail_auth]); with `remote` (the checker
    process, `[mail_auth] checker = "process"`) the checks run there, told
    of `config` here."""
    examiner = build_examiner(config, resolver, wallclock=wallclock)
    if remote is not None:
        remote.configure(config)
    return MailAuth(config.mail_auth, examiner, networks, sink, remote=remote)

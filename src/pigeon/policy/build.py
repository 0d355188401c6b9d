"""The one place that composes the receive checks from the configuration.

Contract:
  * `build_pipeline(config, deps)` returns the `ReceivePipeline` for
    `config`: the built-in checks, in the order below, each configured from
    `config` and the long-lived objects in `deps`. The composition root
    (pigeon.app) calls it at start-up and the reload calls it again with the
    new configuration and the same `deps` (`pipeline.deps`), so counts that
    must survive a reload (new mailboxes per client) carry over.
  * The order is the decision order (first refusal wins within a stage):

      connect ConnectionRateLimit
      mail   MessageSizeLimit, MessageRateLimit, BlockLists, SenderMailboxLimit,
             StorageReserve, SenderOwnership
      rcpt   SrsRecipients (with [srs] enabled), RelayControl, LocalRecipients,
             Greylisting, RecipientMailboxLimit
      rcpt   MailAuth (only with [mail_auth.domains]: one set of policies per message)
      data   StorageReserve, RecipientMerge
      end    MailAuth (SPF, DKIM, DMARC, ARC: policy/mailauth; when some
             [mail_auth] check is on and DNS can be asked),
             FromHeaderCheck (only with auth.check_from_header)
      etrn   EtrnTrust
      then   one MilterCheck per [[milters]] entry, in order (connect,
             helo, mail, rcpt, data, end_of_data; policy/milter.py),
             then the [[plugins]] (below)

    helo, tls and auth have no built-in check yet: they are where HELO
    checks, TLS requirements and per-user login rules plug in. Checks added
    later go here, in the same list. The users' plugins (`[[plugins]]`,
    docs/hooks.md) come last at every stage, in the order of the
    configuration: they see only what the built-in checks let through.
  * The rcpt checks share one `RecipientLookup` (policy/recipients.py), so
    one RCPT asks the router once however many checks need its answers.
  * `PolicyDeps` holds what checks need besides the configuration: the
    router (aliases, mailboxes; shared with the queue manager), the
    free-space reserve of the queue (`queue.space.FreeSpace`; None: no
    reserve check), the new-mailbox counts, the abuse controls' state
    (`policy.abusestate`: `<data_dir>/abuse.db` in a server, in memory by
    default), the clocks, the Maildir test and the report sink (`reports`:
    the DMARC check hands it one record per message evaluated; `NullSink`
    by default). Whoever made the deps closes their state
    (`PolicyDeps.close()`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pigeon.config.schema import Config
from pigeon.dns.api import Resolver
from pigeon.mailstore import maildir_exists as mailstore_maildir_exists
from pigeon.policy.abusestate import AbuseState, Counters
from pigeon.policy.dnsbl import BlockLists
from pigeon.policy.greylist import Greylisting
from pigeon.policy.mailauth import CheckerPool, build_mail_auth
from pigeon.policy.milter import MilterCheck
from pigeon.policy.newmailboxes import (
    NewMailboxLimiter,
    RecipientMailboxLimit,
    SenderMailboxLimit,
)
from pigeon.policy.pipeline import ReceivePipeline
from pigeon.policy.ratelimit import ConnectionRateLimit, MessageRateLimit, RateLimiter
from pigeon.policy.recipients import LocalRecipients, RecipientLookup, RecipientMerge
from pigeon.policy.relay import EtrnTrust, RelayControl, RelayNetworks
from pigeon.policy.reserve import MessageSizeLimit, Room, StorageReserve
from pigeon.policy.srs import SrsRecipients
from pigeon.policy.submission import FromHeaderCheck, SenderOwnership
from pigeon.reports.records import NullSink, ReportSink
from pigeon.routing.resolve import Router

__all__ = ["PolicyDeps", "build_pipeline"]


@dataclass(frozen=True)
class PolicyDeps:
    """The long-lived collaborators of the checks (module contract)."""

    router: Router
    space: Room | None = None
    new_mailboxes: NewMailboxLimiter = field(default_factory=NewMailboxLimiter)
    clock: Callable[[], float] = time.monotonic
    maildir_exists: Callable[[str], bool] = mailstore_maildir_exists
    state: Counters = field(default_factory=AbuseState.memory)
    #: DNS for the block lists (None: no DNSBL/RHSBL checks can be made).
    resolver: Resolver | None = None
    #: Wall-clock seconds, for what outlives the process (rate buckets).
    wallclock: Callable[[], float] = time.time
    #: Where the DMARC check's records go (pigeon.reports; NullSink: nowhere).
    reports: ReportSink = field(default_factory=NullSink)
    #: The checker process ([mail_auth] checker = "process"; None: checks inline).
    checker: CheckerPool | None = None

    def with_router(self, router: Router) -> PolicyDeps:
        """The same collaborators with the router of a new configuration."""
        return dataclasses.replace(self, router=router)

    def close(self) -> None:
        """Write the abuse controls' state and let its file go; end the checker process."""
        self.state.close()
        if self.checker is not None:
            self.checker.close()


def build_pipeline(
    config: Config, deps: PolicyDeps, plugins: Sequence[object] = ()
) -> ReceivePipeline:
    """The receive pipeline of `config` (module contract); `plugins` are the
    users' checks (pigeon.hooks.load.receive_checks), asked after ours."""
    router = deps.router
    networks = RelayNetworks(config.relay_networks)
    lookup = RecipientLookup(router)  # one router look-up per RCPT for the rcpt checks
    limit, exists = config.limits.new_mailboxes_per_hour, deps.maildir_exists
    reserve = [StorageReserve(deps.space)] if deps.space is not None else []
    size = config.limits.message_size
    checks: list[object] = [
        # mail first: a SIZE= over the limit is refused before anything is counted
        *([MessageSizeLimit(size)] if size else []),  # mail (0: no limit, no check)
        *_rate_limits(config, deps),  # connect, mail
        *_block_lists(config, deps, networks),  # mail
        SenderMailboxLimit(
            lookup, networks, deps.new_mailboxes, limit, clock=deps.clock, maildir_exists=exists
        ),  # mail
        *reserve,  # mail, data
        SenderOwnership(),  # mail
        *([SrsRecipients(router, deps.wallclock)] if router.srs is not None else []),  # rcpt
        RelayControl(lookup, networks),  # rcpt
        LocalRecipients(lookup),  # rcpt
        *_greylisting(config, deps, networks),  # rcpt
        RecipientMailboxLimit(
            lookup, networks, deps.new_mailboxes, limit, clock=deps.clock, maildir_exists=exists
        ),  # rcpt
        *_mail_auth(config, deps, networks),  # rcpt, end_of_data
        RecipientMerge(router),  # data
        EtrnTrust(networks),  # etrn
    ]
    if config.auth.check_from_header:
        checks.append(FromHeaderCheck())  # end_of_data
    # [[milters]], in order, after the built-in checks: a milter is asked
    # only about what pigeon itself accepts (docs/milter.md).
    size_limit = config.limits.message_size
    checks.extend(MilterCheck(m, config.hostname, max_body=size_limit) for m in config.milters)
    checks += plugins  # [[plugins]], in their order, after every built-in check and milter
    return ReceivePipeline(checks, deps=deps)


def _rate_limits(config: Config, deps: PolicyDeps) -> list[object]:
    """The rate limit checks whose limits are on (a limit 0 is off)."""
    rl = config.rate_limits
    rates = RateLimiter(deps.state.table("bucket"), rl.time_unit)
    made = (rates, rl, config.relay_networks, deps.wallclock, config.hostname)
    checks: list[object] = []
    if rl.client_connections or rl.network_connections:
        checks.append(ConnectionRateLimit(*made))
    if rl.client_messages or rl.network_messages or rl.sender_messages or rl.user_messages:
        checks.append(MessageRateLimit(*made))
    return checks


def _block_lists(config: Config, deps: PolicyDeps, networks: RelayNetworks) -> list[object]:
    """The DNSBL/RHSBL check, when lists are configured and DNS can be asked."""
    dnsbl = config.dnsbl
    if not (dnsbl.sites or dnsbl.rhsbl_sites) or deps.resolver is None:
        return []
    return [BlockLists(dnsbl, deps.resolver, networks, clock=deps.clock)]


def _mail_auth(config: Config, deps: PolicyDeps, networks: RelayNetworks) -> list[object]:
    """SPF, DKIM, DMARC, ARC ([mail_auth]), when some check is on and DNS can be asked."""
    if not config.mail_auth.enabled or deps.resolver is None:
        return []
    remote = deps.checker if config.mail_auth.checker == "process" else None
    return [
        build_mail_auth(
            config, deps.resolver, networks, deps.reports, wallclock=deps.wallclock, remote=remote
        )
    ]


def _greylisting(config: Config, deps: PolicyDeps, networks: RelayNetworks) -> list[object]:
    if not config.greylist.enabled:
        return []
    state = deps.state
    triplets, clients = state.table("greylist"), state.table("greylist-client")
    return [Greylisting(config.greylist, triplets, clients, networks, clock=deps.wallclock)]

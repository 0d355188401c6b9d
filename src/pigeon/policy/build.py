"""The one place that composes the receive checks from the configuration.

Contract:
  * `build_pipeline(config, deps)` returns the `ReceivePipeline` for
    `config`: the built-in checks, in the order below, each configured from
    `config` and the long-lived objects in `deps`. The composition root
    (pigeon.app) calls it at start-up and the reload calls it again with the
    new configuration and the same `deps` (`pipeline.deps`), so counts that
    must survive a reload (new mailboxes per client) carry over.
  * The order is the decision order (first refusal wins within a stage):

      mail   MessageSizeLimit, SenderMailboxLimit, StorageReserve, SenderOwnership
      rcpt   RelayControl, LocalRecipients, RecipientMailboxLimit
      data   StorageReserve, RecipientMerge
      end    FromHeaderCheck (only with auth.check_from_header)
      etrn   EtrnTrust

    connect, helo, tls and auth have no built-in check yet: they are where
    DNS block lists, HELO checks, TLS requirements and per-user login rules
    plug in. Checks added later go here, in the same list. The users'
    plugins (`[[plugins]]`, docs/hooks.md) come last at every stage, in the
    order of the configuration: they see only what the built-in checks let
    through.
  * The rcpt checks share one `RecipientLookup` (policy/recipients.py), so
    one RCPT asks the router once however many checks need its answers.
  * `PolicyDeps` holds what checks need besides the configuration: the
    router (aliases, mailboxes; shared with the queue manager), the
    free-space reserve of the queue (`queue.space.FreeSpace`; None: no
    reserve check), the new-mailbox counts, the clock and the Maildir test.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pigeon.config.schema import Config
from pigeon.mailstore import maildir_exists as mailstore_maildir_exists
from pigeon.policy.newmailboxes import (
    NewMailboxLimiter,
    RecipientMailboxLimit,
    SenderMailboxLimit,
)
from pigeon.policy.pipeline import ReceivePipeline
from pigeon.policy.recipients import LocalRecipients, RecipientLookup, RecipientMerge
from pigeon.policy.relay import EtrnTrust, RelayControl, RelayNetworks
from pigeon.policy.reserve import MessageSizeLimit, Room, StorageReserve
from pigeon.policy.submission import FromHeaderCheck, SenderOwnership
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

    def with_router(self, router: Router) -> PolicyDeps:
        """The same collaborators with the router of a new configuration."""
        return dataclasses.replace(self, router=router)


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
        *([MessageSizeLimit(size)] if size else []),  # mail (0: no limit, no check)
        SenderMailboxLimit(
            lookup, networks, deps.new_mailboxes, limit, clock=deps.clock, maildir_exists=exists
        ),  # mail
        *reserve,  # mail, data
        SenderOwnership(),  # mail
        RelayControl(lookup, networks),  # rcpt
        LocalRecipients(lookup),  # rcpt
        RecipientMailboxLimit(
            lookup, networks, deps.new_mailboxes, limit, clock=deps.clock, maildir_exists=exists
        ),  # rcpt
        RecipientMerge(router),  # data
        EtrnTrust(networks),  # etrn
    ]
    if config.auth.check_from_header:
        checks.append(FromHeaderCheck())  # end_of_data
    checks += plugins  # [[plugins]], in their order, after every built-in check
    return ReceivePipeline(checks, deps=deps)

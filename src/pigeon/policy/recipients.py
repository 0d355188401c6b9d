"""The RCPT TO (and MAIL FROM) decision the SMTP driver asks for.

Contract:
  * `check_recipient(address, client_ip)` returns None to accept (the driver
    then sends the standard 250 2.1.5) or a `Reply` from the catalogue in
    `pigeon.proto.reply`; it never builds reply text itself and never raises
    for any address/IP the protocol core can hand it.
  * Decision order (first match wins), like Postfix's
    permit_mynetworks + reject_unauth_destination + local_recipient_maps:
      1. bare `<postmaster>` (RFC 5321 §4.5.1: must be accepted) -> accept;
      2. local domain: accepted exactly when delivery would deliver it
         somewhere: the router resolves the address as the queue manager
         will (aliases, catch-all, aliases_file, recipient delimiter) and
         some destination is remote or a local mailbox that exists
         (`Router.mailbox_exists`, the test the Maildir agent applies too);
         otherwise UNKNOWN_USER 550 5.1.1. So RCPT and delivery never
         disagree: what is accepted is delivered, what would bounce is
         refused now.
      3. any other domain, address literals such as "[192.0.2.1]" included:
         the client IP inside `config.relay_networks` -> accept (the message
         waits in the queue until remote delivery exists); otherwise
         RELAY_DENIED 554 5.7.1 (we are not an open relay).
  * New mailboxes (`limits.new_mailboxes_per_hour`): an accepted local
    destination in a domain without a `mailboxes` list whose Maildir does
    not exist yet would be created by delivery; each such one counts
    against the client (`policy.newmailboxes`), and past the limit the
    recipient gets TOO_MANY_NEW_MAILBOXES 450 4.7.1. Clients in
    relay_networks and authenticated ones are not counted (Postfix exempts
    mynetworks from its anvil rate limits the same way).
  * `authenticated=True` (the client passed SMTP AUTH, RFC 4954; the
    driver checks that MAIL FROM is one of the account's addresses) lets the
    client relay to any domain, as Postfix's permit_sasl_authenticated;
    local recipients are still checked (550 5.1.1 for unknown mailboxes).
    Callers that do not pass it keep the old behaviour.
  * `merge_recipients(recipients)` drops repeated envelope recipients (one
    message naming one destination twice, by `Router.merge_key`), keeping
    the first with its DSN parameters; the driver applies it to the
    envelope it commits.
  * `check_sender()` accepts every reverse-path, with one exception: a
    sender in a local domain without a `mailboxes` list whose Maildir does
    not exist yet counts as a new mailbox too (a DSN to it, e.g. the
    success report NOTIFY=SUCCESS asks for, would create it), so an
    untrusted client cannot make directories through made-up senders either:
    past the limit, TOO_MANY_NEW_MAILBOXES 450 4.7.1. SPF/sender-login maps
    belong to later work (authenticated senders are checked by the driver).
  * No I/O and no clock of its own, except for the new-mailbox count: the
    injected `clock` and one stat of the Maildir (`maildir_exists`, only
    for list-less domains). Decisions are pinned by golden files in
    tests/unit/policy/golden/.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

from pigeon.config.schema import Config
from pigeon.policy.newmailboxes import NewMailboxLimiter, client_address
from pigeon.proto import reply as R
from pigeon.routing.resolve import Router
from pigeon.vocab import Route
from pigeon.vocab.address import Address

T = TypeVar("T")


class RecipientPolicy:
    """Recipient and sender checks for one configuration."""

    def __init__(
        self,
        config: Config,
        router: Router,
        *,
        new_mailboxes: NewMailboxLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
        maildir_exists: Callable[[str], bool] = os.path.isdir,
    ) -> None:
        self._config = config
        self._router = router
        #: Shared across reloads (pigeon.app.wiring.receive_policy passes the old one on).
        self.new_mailboxes = new_mailboxes if new_mailboxes is not None else NewMailboxLimiter()
        self._clock = clock
        self._maildir_exists = maildir_exists

    def check_sender(
        self, address: Address | None, client_ip: str, *, authenticated: bool = False
    ) -> R.Reply | None:
        """None to accept (None is the null reverse-path <>). See module doc."""
        if (
            address is None
            or not address.domain
            or not self._router.is_local_domain(address.domain)
        ):
            return None
        routes = self._router.resolve(str(address), expand_aliases=False)
        return (
            None
            if self._new_mailboxes_allowed(routes, client_ip, authenticated)
            else R.TOO_MANY_NEW_MAILBOXES
        )

    def check_recipient(
        self, address: Address, client_ip: str, *, authenticated: bool = False
    ) -> R.Reply | None:
        """None to accept, else the reply to send (see the module contract)."""
        if not address.domain:
            # The grammar only lets "<postmaster>" through without a domain.
            return None if address.is_postmaster else R.UNKNOWN_USER
        router = self._router
        if router.is_local_domain(address.domain):
            # str(address): the form the envelope stores and delivery resolves.
            canonical = router.canonical(str(address))
            if router.alias_targets(canonical) is None:
                # No alias: resolve() would give this one address; skip it
                # where it cannot matter (hot path: a listed mailbox).
                if not router.mailbox_exists(canonical):
                    return R.UNKNOWN_USER
                if router.has_mailbox_list(address.domain):
                    return None
                routes = router.resolve(canonical, expand_aliases=False)
            else:
                routes = router.resolve(canonical)
                if not any(r.kind == "remote" or router.mailbox_exists(r.address) for r in routes):
                    return R.UNKNOWN_USER
            if not self._new_mailboxes_allowed(routes, client_ip, authenticated):
                return R.TOO_MANY_NEW_MAILBOXES
            return None
        return None if authenticated or self.client_may_relay(client_ip) else R.RELAY_DENIED

    def _new_mailboxes_allowed(
        self, routes: list[Route], client_ip: str, authenticated: bool
    ) -> bool:
        """False when a Maildir these routes would create is one too many for
        the client (module contract); trusted clients are not counted."""
        limit = self._config.limits.new_mailboxes_per_hour
        new = [
            str(r.mailbox)
            for r in routes
            if r.kind == "local" and not self._router.has_mailbox_list(r.address.rpartition("@")[2])
        ]
        if limit <= 0 or not new or authenticated or self.client_may_relay(client_ip):
            return True
        return all(
            self._maildir_exists(path)
            or self.new_mailboxes.allow(client_ip, path, self._clock(), limit)
            for path in new
        )

    def merge_recipients(self, recipients: list[tuple[Address, T]]) -> list[tuple[Address, T]]:
        """`recipients` without repeats (module contract): first one kept."""
        seen: set[str] = set()
        out = []
        for item in recipients:
            key = self._router.merge_key(str(item[0]))
            if key not in seen:
                seen.add(key)
                out.append(item)
        return out

    def client_may_relay(self, client_ip: str) -> bool:
        """True if `client_ip` is inside one of `config.relay_networks`."""
        ip = client_address(client_ip)
        return ip is not None and any(
            ip.version == net.version and ip in net for net in self._config.relay_networks
        )

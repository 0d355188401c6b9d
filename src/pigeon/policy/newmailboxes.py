"""How many new Maildirs one client may cause per hour (`limits.new_mailboxes_per_hour`).

In a local domain without a `mailboxes` list every local part is a mailbox,
and delivering to one that has no Maildir yet creates one: without a bound,
a few 1,000-recipient messages make tens of thousands of directories
(inode exhaustion). The RCPT check asks this limiter before accepting such
a recipient.

Contract:
  * `allow(client, mailbox, now, limit)` counts the new mailbox `mailbox`
    (its Maildir path) for `client` and says whether it is within `limit`
    per `WINDOW` seconds (False: refuse the recipient, nothing is counted).
    A mailbox counted in the last `WINDOW` seconds, by any client, is not
    counted again (it is one directory, whether named by one RCPT or by a
    hundred before the first delivery creates it). `limit` 0 means no limit
    (always True, nothing kept).
  * Clients are counted by address; IPv6 clients by their /64 (one host
    commonly holds a whole /64, so per-address counting would not bound it).
  * The window is fixed: it starts with a client's first new mailbox and
    lasts `WINDOW` seconds, then counting starts again (memory O(1) per
    client, at most `max_entries` clients and as many counted mailboxes;
    the oldest are dropped first).
  * Pure: time is an argument; no I/O. Limits are per process, like the
    other [limits] (worker processes count separately).
  * `RecipientMailboxLimit` (rcpt) and `SenderMailboxLimit` (mail) are the
    receive checks that ask it (two checks, so each can take its place in
    its stage's order; they share one limiter). An
    accepted local destination in a domain without a `mailboxes` list whose
    Maildir does not exist yet would be created by delivery; each such one
    counts against the client, and past `limits.new_mailboxes_per_hour` the
    recipient gets TOO_MANY_NEW_MAILBOXES 450 4.7.1 (a rate limit, so 4xx).
    A sender in such a domain counts too (a DSN to it, e.g. the success
    report NOTIFY=SUCCESS asks for, would create it), so an untrusted client
    cannot make directories through made-up senders either. Clients in
    relay_networks and logged-in ones are not counted (Postfix exempts
    mynetworks from its anvil rate limits the same way). The rcpt check runs
    after `LocalRecipients`: unknown recipients are refused before they are
    counted. Their only I/O is one stat of the Maildir (`maildir_exists`).
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable

from pigeon.mailstore import maildir_exists as mailstore_maildir_exists
from pigeon.policy.api import SessionFacts, Verdict, refuse
from pigeon.policy.recipients import RecipientLookup
from pigeon.policy.relay import RelayNetworks, client_address
from pigeon.proto import reply as R
from pigeon.proto.params import MailParams, RcptParams
from pigeon.vocab import Route
from pigeon.vocab.address import Address

WINDOW = 3600.0


def client_key(client_ip: str) -> str:
    """The counting key of `client_ip`: the address itself, an IPv6 one's /64."""
    ip = client_address(client_ip)
    if ip is None:
        return client_ip
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class NewMailboxLimiter:
    """Counts new mailboxes per client in fixed windows (module contract)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._counts: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._counted: OrderedDict[str, float] = OrderedDict()  # mailbox -> when counted

    def allow(self, client_ip: str, mailbox: str, now: float, limit: int) -> bool:
        if limit <= 0:
            return True
        when = self._counted.get(mailbox)
        if when is not None and now - when < WINDOW:
            return True
        key = client_key(client_ip)
        started, count = self._counts.get(key, (now, 0))
        if now - started >= WINDOW:
            started, count = now, 0
        if count >= limit:
            return False
        self._counts[key] = (started, count + 1)
        self._counts.move_to_end(key)
        self._counted[mailbox] = now
        self._counted.move_to_end(mailbox)
        for table in (self._counts, self._counted):
            while len(table) > self.max_entries:
                table.popitem(last=False)
        return True


_TOO_MANY = refuse(R.TOO_MANY_NEW_MAILBOXES)


class _MailboxLimit:
    """What both checks share: the limiter, the exemptions, the count."""

    def __init__(
        self,
        lookup: RecipientLookup,
        networks: RelayNetworks,
        limiter: NewMailboxLimiter,
        limit: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        maildir_exists: Callable[[str], bool] = mailstore_maildir_exists,
    ) -> None:
        self._lookup = lookup
        self._router = lookup.router
        self._networks = networks
        self._limiter = limiter
        self._limit = limit
        self._clock = clock
        self._maildir_exists = maildir_exists

    def _exempt(self, session: SessionFacts) -> bool:
        return self._limit <= 0 or self._networks.trusts(session)

    def _count(self, routes: list[Route], session: SessionFacts) -> Verdict | None:
        """TOO_MANY when a Maildir these routes would create is one too many."""
        router = self._router
        new = [
            str(r.mailbox)
            for r in routes
            if r.kind == "local" and not router.has_mailbox_list(r.address.rpartition("@")[2])
        ]
        allowed = all(
            self._maildir_exists(path)
            or self._limiter.allow(session.client_ip, path, self._clock(), self._limit)
            for path in new
        )
        return None if allowed else _TOO_MANY


class SenderMailboxLimit(_MailboxLimit):
    """mail: a made-up sender in a list-less local domain counts (module contract)."""

    def mail(
        self, session: SessionFacts, sender: Address | None, params: MailParams
    ) -> Verdict | None:
        router = self._router
        if sender is None or not sender.domain or not router.is_local_domain(sender.domain):
            return None
        if self._exempt(session):
            return None
        return self._count(router.resolve(str(sender), expand_aliases=False), session)


class RecipientMailboxLimit(_MailboxLimit):
    """rcpt: a recipient whose Maildir delivery would create counts (module contract)."""

    def rcpt(self, session: SessionFacts, recipient: Address, params: RcptParams) -> Verdict | None:
        lookup = self._lookup
        if self._exempt(session) or not lookup.local(recipient):
            return None
        _, aliased = lookup.canonical(recipient)
        if not aliased and self._router.has_mailbox_list(recipient.domain):
            return None  # a listed mailbox: nothing is created
        return self._count(lookup.routes(recipient), session)

"""Local recipients: is there a mailbox for this address? And each recipient once.

Contract:
  * `LocalRecipients` (rcpt), Postfix's local_recipient_maps: an address in
    a local domain is accepted exactly when delivery would deliver it
    somewhere: the router resolves it as the queue manager will (aliases,
    catch-all, aliases_file, recipient delimiter) and some destination is
    remote or a local mailbox that exists (`Router.mailbox_exists`, the test
    the Maildir agent applies too); otherwise UNKNOWN_USER 550 5.1.1. So
    RCPT and delivery never disagree: what is accepted is delivered, what
    would bounce is refused now. The bare `<postmaster>` (RFC 5321 §4.5.1:
    must be accepted) is accepted; any other address without a domain is
    unknown. Other domains are left to `RelayControl` (policy/relay.py);
    logged-in clients get no exemption here (an unknown mailbox is unknown
    to everyone).
  * `RecipientMerge` (data): one message naming one destination twice
    (by `Router.merge_key`: case, recipient delimiter...) is queued with
    it once, the first with its DSN parameters (each repeated RCPT got its
    250). It changes the recipient list only when there was a repeat.
  * `RecipientLookup` is what the rcpt checks ask the router about the
    recipient being checked (its canonical form, whether an alias names it,
    its routes), asked once per RCPT however many checks need it: it
    remembers the last recipient, and the checks of one RCPT get the same
    `Address` object. The builder gives one to every check that asks.
  * Pure with respect to the router's configuration, except that
    `mailbox_exists` may look at the Maildir (list-less domains). Decisions
    are pinned by golden files in tests/unit/policy/golden/.
"""

from __future__ import annotations

from pigeon.policy.api import EnvelopeRecipient, SessionFacts, Verdict, refuse
from pigeon.proto import reply as R
from pigeon.proto.params import RcptParams
from pigeon.routing.resolve import Router
from pigeon.vocab import Route
from pigeon.vocab.address import Address

_UNKNOWN_USER = refuse(R.UNKNOWN_USER)


class RecipientLookup:
    """The router's answers about the recipient being checked (module contract)."""

    __slots__ = ("router", "_address", "_local", "_canonical", "_aliased", "_routes")

    def __init__(self, router: Router) -> None:
        self.router = router
        self._address: Address | None = None
        self._local = False
        self._canonical = ""
        self._aliased = False
        self._routes: list[Route] | None = None

    def _learn(self, address: Address) -> None:
        if address is not self._address:
            router = self.router
            self._address, self._routes = address, None
            # An address of our SRS domain is ours too (policy/srs.py checks it first).
            self._local = bool(address.domain) and (
                router.is_local_domain(address.domain) or router.is_srs_address(str(address))
            )
            # str(address): the form the envelope stores and delivery resolves.
            self._canonical = router.canonical(str(address)) if self._local else ""
            self._aliased = self._local and router.alias_targets(self._canonical) is not None

    def local(self, address: Address) -> bool:
        """In a local domain, or an SRS address of ours (routing/resolve.py)."""
        self._learn(address)
        return self._local

    def canonical(self, address: Address) -> tuple[str, bool]:
        """(canonical form, named by an alias) of a local address."""
        self._learn(address)
        return self._canonical, self._aliased

    def routes(self, address: Address) -> list[Route]:
        """Where delivery would take a local address (aliases expanded)."""
        self._learn(address)
        if self._routes is None:
            self._routes = self.router.resolve(self._canonical, expand_aliases=self._aliased)
        return self._routes


class LocalRecipients:
    """rcpt: local addresses must be deliverable (module contract)."""

    def __init__(self, lookup: RecipientLookup) -> None:
        self._lookup = lookup

    def rcpt(self, session: SessionFacts, recipient: Address, params: RcptParams) -> Verdict | None:
        if not recipient.domain:
            # The grammar only lets "<postmaster>" through without a domain.
            return None if recipient.is_postmaster else _UNKNOWN_USER
        lookup = self._lookup
        if not lookup.local(recipient):
            return None
        router = lookup.router
        canonical, aliased = lookup.canonical(recipient)
        if not aliased:
            # No alias: resolve() would give this one address (hot path).
            return None if router.mailbox_exists(canonical) else _UNKNOWN_USER
        routes = lookup.routes(recipient)
        if any(r.kind == "remote" or router.mailbox_exists(r.address) for r in routes):
            return None
        return _UNKNOWN_USER


class RecipientMerge:
    """data: each destination once in the envelope (module contract)."""

    def __init__(self, router: Router) -> None:
        self._router = router

    def merged(self, recipients: list[EnvelopeRecipient]) -> list[EnvelopeRecipient]:
        """`recipients` without repeats, the first of each kept."""
        merge_key = self._router.merge_key
        seen: set[str] = set()
        out = []
        for item in recipients:
            key = merge_key(str(item[0]))
            if key not in seen:
                seen.add(key)
                out.append(item)
        return out

    def data(self, session: SessionFacts) -> Verdict | None:
        if len(session.recipients) < 2:
            return None
        merged = self.merged(session.recipients)
        if len(merged) == len(session.recipients):
            return None
        return Verdict(recipients=tuple(merged))

"""From an envelope to delivery requests grouped by next hop: pure.

Contract:
  * `expand_aliases(env, router)` replaces each pending, not-yet-expanded
    recipient by its alias expansion (each expansion becomes its own
    recipient with `original` set, so a retry neither re-expands nor
    redelivers the parts done) and drops every pending recipient whose
    destination (`Router.delivery_key`: one Maildir, or one remote address)
    an earlier recipient of the message already has, the first keeping its
    DSN parameters (Postfix's duplicate filter): one message reaches one
    mailbox once, however many recipients or aliases lead there. The new
    list is stored with the message's next update, so this happens once.
    It returns the route of each recipient kept as it is, so nobody
    resolves it a second time.
  * `dispatch(env, router, content, ...)` routes every pending recipient
    and groups them by `Nexthop` (pigeon/vocab): the local recipients of a
    next hop go in one request (their Maildirs are written together
    anyway, delivery/local.py); other next hops are cut into chunks of
    `chunk` recipients (`delivery.destination_recipients`), one request
    (one SMTP transaction) each. A local recipient carries its Maildir, the
    final address (Delivered-To:) and, when an alias changed it, the
    client's recipient (X-Original-To:).
  * A recipient with a `route` (a next hop a receive check chose,
    queue/model.py) goes there: it is neither alias-expanded nor merged,
    and its next hop is the route's ("local" routes it as usual, to its
    Maildir; "local:.Folder" too, into that Maildir++ folder of a local
    recipient's Maildir: the DMARC quarantine's ".Junk").
  * Forwarding (docs/mail-auth.md, "Forwarding: SRS and ARC"): a recipient
    an alias expanded (`original` set) to a remote next hop is a forwarded
    copy. Forwarded copies go in requests of their own (`forwarded=True`:
    the SMTP agent seals them with ARC, delivery/sealing.py) whose sender,
    with `[srs] enabled` (`router.srs`), is the SRS address of the
    envelope's (`SrsCodec.forward(sender, now)`), except for the null
    sender and a sender in one of our own domains (a local domain or the
    SRS domain itself: SPF passes for those already). The envelope keeps
    its sender: our own reports still go to the original one.
  * Decided here, without an agent, and recorded on the recipient at once:
    a local address whose mailbox does not exist bounces 5.1.1 "no such
    local mailbox" (`Router.mailbox_exists`, the same test the RCPT check
    makes); a transport no agent serves defers 4.3.0 "mail transport
    unavailable".
  * Pure: no I/O (the content is a handle, not read here), no clock (`now`
    is an argument); the envelope's recipient list and the decided
    recipients change, nothing else.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field, replace

from pigeon.config._delivery import parse_nexthop
from pigeon.delivery.api import DeliveryRecipient, DeliveryRequest
from pigeon.forwarding.srs import SrsError
from pigeon.qmgr.results import (
    LOCAL,
    NO_AGENT,
    LogLine,
    defer_all,
    log_fields,
    set_status,
)
from pigeon.queue.api import MessageContent
from pigeon.queue.model import Envelope, Recipient, RecipientStatus
from pigeon.routing.resolve import Router, nexthop_from_spec
from pigeon.vocab import Nexthop, Route

__all__ = ["Dispatch", "Group", "dispatch", "expand_aliases", "forwarded_sender"]


@dataclass(slots=True)
class Group:
    """One request for one next hop, and the queue's recipients it carries."""

    nexthop: Nexthop
    recipients: list[Recipient]
    request: DeliveryRequest


@dataclass(slots=True)
class Dispatch:
    groups: list[Group] = field(default_factory=list)
    #: Log lines of the recipients decided without an agent (module contract).
    logs: list[LogLine] = field(default_factory=list)


def expand_aliases(env: Envelope, router: Router) -> dict[str, Route]:
    """Expand and merge `env.recipients` in place (module contract); the
    routes of the recipients kept as they are, by address."""
    seen: set[tuple[str, str]] = set()
    out: list[Recipient] = []
    kept: dict[str, Route] = {}
    for rcpt in env.recipients:
        if rcpt.route and not rcpt.final:
            out.append(rcpt)  # a check chose its next hop: not expanded, not merged
            continue
        if rcpt.final or rcpt.original:
            # Already expanded (or done): itself only, never expanded again.
            route = router.resolve(rcpt.address, expand_aliases=False)[0]
            key = router.delivery_key(route)
            if not rcpt.final and key in seen:
                continue  # an earlier recipient covers it
            seen.add(key)
            out.append(rcpt)
            if not rcpt.final:
                kept[rcpt.address] = route
            continue
        routes = router.resolve(rcpt.address)
        if not routes:
            out.append(rcpt)
            continue
        fresh = [r for r in routes if router.delivery_key(r) not in seen]
        seen.update(router.delivery_key(r) for r in routes)
        if [r.address for r in routes] == [rcpt.address.lower()]:
            if fresh:
                kept[rcpt.address] = routes[0]
                out.append(rcpt)
            continue  # else: a repeat, merged away
        for route in fresh:
            out.append(
                replace(
                    rcpt,
                    address=route.address,
                    original=rcpt.address,
                    status=RecipientStatus.PENDING,
                    diagnostic="",
                )
            )
    env.recipients = out
    return kept


def _route(rcpt: Recipient, known: dict[str, Route], router: Router) -> Route:
    if rcpt.route:
        try:
            spec = parse_nexthop(rcpt.route, folder=True)
        except ValueError:  # checked when the verdict was made: a damaged entry
            spec = None
        if spec is not None and spec.transport != LOCAL:
            domain = rcpt.address.rpartition("@")[2].lower()
            return Route.remote(rcpt.address, nexthop_from_spec(spec, domain))
    route = known.get(rcpt.address)
    if route is not None:
        return route
    routes = router.resolve(rcpt.address, expand_aliases=False)
    if routes:
        return routes[0]
    return Route.remote(rcpt.address, Nexthop("smtp", rcpt.address.rpartition("@")[2]))


def _folder(rcpt: Recipient) -> str:
    """The Maildir++ folder a "local:.Folder" route names ("" = the inbox)."""
    if not rcpt.route.startswith("local:"):
        return ""
    try:
        return parse_nexthop(rcpt.route, folder=True).host or ""
    except ValueError:  # checked when the verdict was made: a damaged entry
        return ""


def _original_to(rcpt: Recipient, route: Route) -> str:
    """The X-Original-To of a Maildir copy: the client's recipient when an
    alias (a catch-all, say) changed it, else ""."""
    if rcpt.original and rcpt.original.lower() != route.address:
        return rcpt.original
    return ""


def forwarded_sender(sender: str, router: Router, now: float) -> str:
    """The envelope sender of a forwarded copy of mail from `sender` (module contract)."""
    srs = router.srs
    if srs is None or not sender:
        return sender
    domain = sender.rpartition("@")[2].lower()
    if not domain or domain == srs.domain or router.is_local_domain(domain):
        return sender
    try:
        return srs.forward(sender, now)
    except SrsError:  # no local part: nothing to rewrite, sent as it is
        return sender


def dispatch(
    env: Envelope,
    router: Router,
    content: MessageContent,
    *,
    chunk: int,
    transports: Container[str],
    now: float,
) -> Dispatch:
    """The requests of one delivery run of `env` (module contract)."""
    known = expand_aliases(env, router)
    out = Dispatch()
    # (next hop, forwarded copy?) -> its recipients (module contract, forwarding).
    by_hop: dict[tuple[Nexthop, bool], list[tuple[Recipient, DeliveryRecipient]]] = {}
    for rcpt in env.recipients:
        if rcpt.final:
            continue
        route = _route(rcpt, known, router)
        nh = route.nexthop
        if nh.transport == LOCAL:
            if not router.mailbox_exists(route.address):
                set_status(
                    rcpt,
                    RecipientStatus.BOUNCED,
                    "5.1.1",
                    "no such local mailbox",
                    now=now,
                    action="failed",
                    transport=LOCAL,
                )
                out.logs.append((log_fields(rcpt, LOCAL, rcpt.status), rcpt.diagnostic))
                continue
            mailbox = route.mailbox
            folder = _folder(rcpt)
            if mailbox is not None and folder:
                mailbox = mailbox / folder
            wanted = DeliveryRecipient(
                rcpt.address, rcpt.params, mailbox, route.address, _original_to(rcpt, route)
            )
        else:
            wanted = DeliveryRecipient(rcpt.address, rcpt.params)
        if nh.transport not in transports:
            reason = f"{NO_AGENT}: no delivery agent for transport {nh.transport}"
            defer_all([rcpt], "4.3.0", reason, nh.transport, out.logs, now=now)
            continue
        forwarded = bool(rcpt.original) and route.kind == "remote" and not rcpt.route
        by_hop.setdefault((nh, forwarded), []).append((rcpt, wanted))
    for (nh, forwarded), pairs in by_hop.items():
        sender = forwarded_sender(env.sender, router, now) if forwarded else env.sender
        size = len(pairs) if nh.transport == LOCAL else chunk
        for i in range(0, len(pairs), size):
            part = pairs[i : i + size]
            request = DeliveryRequest(
                env.queue_id,
                sender,
                env.params,
                tuple(wanted for _, wanted in part),
                content,
                env.size,
                env.eight_bit,
                env.params.smtputf8,
                nh,
                forwarded=forwarded,
            )
            out.groups.append(Group(nh, [rcpt for rcpt, _ in part], request))
    return out

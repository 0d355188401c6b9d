"""SmtpAgent: deliver one request to its next hop over SMTP (RFC 5321 §5.1, §4.5.3).

    agent = SmtpAgent(ClientConfig(), resolver, own_hostname="mx.pigeon.example")
    results = await agent.deliver(request)      # one RecipientResult per recipient
    await agent.aclose()                        # QUIT the cached connections

Contract (CONTRIBUTING.md, rule 7, delivery/api.py):
  * Candidates come from the injected resolver (`NexthopResolver` below:
    routing.mx.MxResolver, which asks its own injected `pigeon.dns.Resolver`,
    or a fake in tests): `await resolver.candidates(nexthop)` returns addresses
    already in RFC 5321 §5.1 order (MX preference, random among equals, IPv6
    and IPv4), or raises `ResolveError` whose status/permanence every
    recipient then gets (NXDOMAIN 5.1.2, null MX 5.1.10, SERVFAIL 4.4.3,
    loop 5.4.6). A next hop with `host` set (smarthost, `[host]`) is the
    resolver's business too: we only call candidates().
  * Candidate walk (RFC 5321 §5.1: "try the next address"): a connection
    failure, a timeout, a non-2xx greeting or EHLO, a TLS failure, or a 4xx
    reply to MAIL (and a connection lost before any content was sent) moves
    the still-open recipients to the next candidate, at most
    `max_candidates` of them. When every candidate failed, the open
    recipients get the last error: deferred (e.g. 4.4.1 "connect to
    mx.example[192.0.2.1]:25: Connection refused"), or bounced when that
    last error was a 5xx reply from the peer (a 554 greeting).
  * Otherwise results are per recipient (Rule 2 of proto/client.py): a 2xx
    is DELIVERED, a 4xx DEFERRED, a 5xx BOUNCED (5xx to MAIL bounces all).
    status = the enhanced code of the reply when it has one, else X.0.0 of
    its class; diagnostic = the reply as sent ("550 5.1.1 <x@y>: Recipient
    address rejected"), or our own reason for local decisions;
    remote_mta = "host[ip]:port"; tls = what conn.tls says ("verified" or
    "encrypted", version, cipher), "none" in plaintext; tls_policy = the
    label of the outbound TLS policy that applied.
  * Outbound TLS policy (delivery/tlspolicy): before the walk the domain's
    policy is found (`TlsPolicies.for_nexthop`: MTA-STS, DANE, none); each
    candidate is connected to under its plan (`tlspolicy.apply`): a host the
    policy refuses, or one failing its TLS requirement, is a failed candidate
    with a 4.7.x reason, never used in clear; all failing, the mail is
    deferred with that reason. One `TlsRecord` per attempt goes to `sink`.
  * action on success (RFC 3464 §2.3.3, RFC 3461 §6.2.2): "delivered" when
    the peer advertised DSN (it takes over DSN duties, it will report a
    final delivery itself if asked), "relayed" when it did not (no further
    DSN can come from that path).
  * Recipients go in transactions of at most `max_recipients_per_transaction`,
    one after the other over the same connection.
  * Before MAIL, content rules: SMTPUTF8 needed but not offered -> 5.6.7;
    larger than the peer's SIZE -> 5.3.4; 8-bit content and no 8BITMIME ->
    converted to 7 bit (delivery/downgrade.py) in a temporary file, deleted
    afterwards, or 5.6.3 when conversion is impossible. Addresses go out in
    the form our own server parses back to the same address; one with no
    such form bounces by itself (5.1.3 recipient, 5.1.7 sender: proto/client.py
    Rule 6) and, like every bounce, does not count against the next hop.
  * A peer that names itself (first word of the EHLO reply) like
    `own_hostname` means mail would loop back to us: bounced, 5.4.6
    ("mail for ... loops back to myself", as Postfix says). The rule is the
    one routing/mx.py Rule 5 applies to MX hosts (`checks_loops`): it holds
    for next hops found through DNS (an MX lookup, explicit or implicit)
    and for address literals, NOT for a host the operator named with
    brackets or as an IP address in `[transports]` or `delivery.relay_host`
    (`smtp:[127.0.0.1]:10025`): such a route is an explicit decision, e.g.
    a content filter on loopback that shares our host name.
  * Relay login (AUTH PLAIN, only over TLS): only for a next hop equal to the
    configured smarthost: host, port (the default port filled in) and
    brackets (`login_key`); any other route, `[transports]` ones to the same
    host included, connects without credentials.
  * Connection reuse: after a clean transaction the connection is kept idle
    (at most `max_idle_per_destination` per next hop and address, for
    `idle_timeout` seconds, then QUIT). A cached connection is checked with
    RSET before use; if that fails a new one is opened.
  * Never raises for delivery failures (they are results); never touches
    the queue store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Protocol, TypeVar

from pigeon.delivery.api import (
    DeliveryRecipient,
    DeliveryRequest,
    MessageContent,
    Outcome,
    RecipientResult,
)
from pigeon.delivery.content import FileMessage
from pigeon.delivery.downgrade import DowngradeError, convert_to_temp
from pigeon.delivery.smtpc import ClientConnection, ConnectError, connect
from pigeon.delivery.tlspolicy.apply import connect_under
from pigeon.delivery.tlspolicy.peer import TlsCheck
from pigeon.delivery.tlspolicy.policy import DomainPolicy, TlsPolicies
from pigeon.proto.client import ClientConfig, RecipientReply, Transaction
from pigeon.proto.client_reply import reply_text
from pigeon.proto.reply import Reply
from pigeon.reports.records import NullSink, ReportSink
from pigeon.routing.mx import Candidate, ResolveError  # one definition, shared with the resolver
from pigeon.routing.resolve import literal_ip
from pigeon.vocab import Nexthop

log = logging.getLogger("pigeon.delivery.smtp")


def checks_loops(nexthop: Nexthop) -> bool:
    """Whether a peer greeting with our name is a loop for `nexthop` (module
    contract): yes for MX lookups and address literals, no for an explicit
    "[host]" or IP route the operator configured."""
    return nexthop.mx or (nexthop.host is not None and nexthop.host == literal_ip(nexthop.domain))


T = TypeVar("T")

#: (next hop, candidate host, address, port): where an idle connection goes.
ConnKey = tuple[str, str, str, int]

#: (host lowercased, port, mx): the destination a relay login belongs to.
LoginKey = tuple[str, int, bool]


def login_key(host: str, port: int | None, mx: bool, *, default_port: int) -> LoginKey:
    """The destination a login is for: "[relay]:587" and "[relay]:25", or
    "relay" (its MX hosts) and "[relay]" (its own address), are different
    destinations (Postfix keys smtp_sasl_password_maps by "[host]:port" the
    same way), so a password never goes to another service on the same host."""
    return (host.lower(), port or default_port, mx)


class NexthopResolver(Protocol):
    """A next hop -> the servers to try, in order (routing/mx.py); ResolveError if none."""

    async def candidates(self, nexthop: Nexthop) -> list[Candidate]: ...


# --- results -------------------------------------------------------------------


def reply_status(r: Reply) -> str:
    if r.enhanced and r.enhanced[0] == str(r.code // 100):
        return r.enhanced
    return f"{r.code // 100}.0.0"


def recipient_result(
    address: str, rr: RecipientReply, remote_mta: str, *, dsn: bool, tls: str = ""
) -> RecipientResult:
    """Map one reply to a result (see the module contract)."""
    return dataclasses.replace(_reply_result(address, rr, remote_mta, dsn=dsn), tls=tls)


def _reply_result(
    address: str, rr: RecipientReply, remote_mta: str, *, dsn: bool
) -> RecipientResult:
    r = rr.reply
    diagnostic = r.text if rr.local else reply_text(r)
    status = reply_status(r)
    if r.positive:
        return RecipientResult(
            address,
            Outcome.DELIVERED,
            status,
            diagnostic,
            remote_mta,
            "delivered" if dsn else "relayed",
        )
    if r.transient:
        return RecipientResult(address, Outcome.DEFERRED, status, diagnostic, remote_mta, "delayed")
    return RecipientResult(address, Outcome.BOUNCED, status, diagnostic, remote_mta, "failed")


def failure_result(
    address: str, status: str, diagnostic: str, *, permanent: bool, remote_mta: str = ""
) -> RecipientResult:
    if permanent:
        return RecipientResult(address, Outcome.BOUNCED, status, diagnostic, remote_mta, "failed")
    return RecipientResult(address, Outcome.DEFERRED, status, diagnostic, remote_mta, "delayed")


def connect_failure(
    address: str, exc: ConnectError, *, transient_only: bool = False
) -> RecipientResult:
    permanent = exc.reply.permanent and not exc.local and not transient_only
    status = reply_status(exc.reply)
    if not permanent and status.startswith("5"):
        status = "4" + status[1:]
    res = failure_result(
        address, status, exc.diagnostic, permanent=permanent, remote_mta=exc.remote_mta
    )
    return dataclasses.replace(res, tls_policy=exc.tls_policy)


def make_transaction(
    request: DeliveryRequest, group: list[DeliveryRecipient], *, size: int, eight_bit: bool
) -> Transaction:
    return Transaction(
        sender=request.sender,
        recipients=tuple(r.address for r in group),
        rcpt_params=tuple(r.params for r in group),
        size=size,
        eight_bit=eight_bit,
        smtputf8=request.smtputf8,
        ret=request.params.ret,
        envid=request.params.envid,
    )


def groups_of(items: list[T], n: int) -> list[list[T]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


class Content:
    """The content to send to one peer: the original, or its 7-bit conversion (made once)."""

    def __init__(self, request: DeliveryRequest) -> None:
        self.request = request
        self._converted: FileMessage | None = None
        self._error: DowngradeError | None = None

    async def for_peer(self, eight_bit_ok: bool) -> tuple[MessageContent, int, bool]:
        """(content, size, eight_bit); DowngradeError when conversion is impossible."""
        req = self.request
        if not req.eight_bit or eight_bit_ok:
            return req.content, req.size, req.eight_bit
        if self._error is not None:
            raise self._error
        if self._converted is None:
            try:
                self._converted = await asyncio.to_thread(convert_to_temp, req.content)
            except DowngradeError as exc:
                self._error = exc
                raise
        return self._converted, self._converted.size, False

    def cleanup(self) -> None:
        if self._converted is not None:
            self._converted.remove()


# --- the agent -------------------------------------------------------------------


class SmtpAgent:
    """DeliveryAgent for transport "smtp"; see the module contract."""

    def __init__(
        self,
        config: ClientConfig,
        resolver: NexthopResolver,
        *,
        own_hostname: str,
        credentials: dict[LoginKey, tuple[str, str]] | None = None,
        tls_policies: TlsPolicies | None = None,
        sink: ReportSink | None = None,
    ) -> None:
        self.config = config
        self.tls_policies = tls_policies or TlsPolicies.off(config.tls)
        self.sink: ReportSink = sink or NullSink()
        #: `login_key(...)` of a next hop -> (user, password): AUTH PLAIN over
        #: TLS for the smarthost (delivery.relay_user), used for exactly that
        #: destination: same host, same port, same MX-or-not (see login_key).
        self.credentials = dict(credentials or {})
        self.resolver = resolver
        self.own_hostname = own_hostname
        self.helo_name = config.helo_name or own_hostname
        self._idle: dict[ConnKey, list[tuple[ClientConnection, asyncio.TimerHandle]]] = {}
        self.stats = {"connections": 0, "reused": 0, "transactions": 0}

    def statistics(self) -> dict[str, int]:
        return {**self.stats, "idle": sum(len(v) for v in self._idle.values())}

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn, timer in conns:
                timer.cancel()
                await conn.quit()

    async def deliver(self, request: DeliveryRequest) -> list[RecipientResult]:
        try:
            candidates = await self.resolver.candidates(request.nexthop)
        except ResolveError as exc:
            return [
                failure_result(r.address, exc.status, exc.message, permanent=exc.permanent)
                for r in request.recipients
            ]
        if not candidates:
            return [
                failure_result(
                    r.address, "4.4.3", f"no address for {request.nexthop}", permanent=False
                )
                for r in request.recipients
            ]
        results: dict[int, RecipientResult] = {}
        pending = list(range(len(request.recipients)))
        last: ConnectError | RecipientResult | None = None
        content = Content(request)
        policy = await self.tls_policies.for_nexthop(request.nexthop)
        try:
            for cand in candidates[: self.config.max_candidates]:
                if not pending:
                    break
                pending, failure = await self._try(cand, request, pending, results, content, policy)
                last = failure if failure is not None else last
        finally:
            content.cleanup()
        for i in pending:
            address = request.recipients[i].address
            if isinstance(last, ConnectError):
                results[i] = connect_failure(address, last)
            elif isinstance(last, RecipientResult):
                results[i] = dataclasses.replace(last, address=address)
            else:
                results[i] = failure_result(
                    address, "4.4.1", "no candidate could be tried", permanent=False
                )
        return [results[i] for i in range(len(request.recipients))]

    # --- one candidate ---------------------------------------------------------------

    async def _try(
        self,
        cand: Candidate,
        request: DeliveryRequest,
        pending: list[int],
        results: dict[int, RecipientResult],
        content: Content,
        policy: DomainPolicy,
    ) -> tuple[list[int], ConnectError | RecipientResult | None]:
        """Deliver what we can through `cand`; returns (indexes for the next candidate, failure)."""
        started = time.monotonic()
        plan = await policy.plan(cand)
        keys: list[ConnKey] = []

        async def opener(
            mode: str, ca_file: str | None, check: TlsCheck | None
        ) -> ClientConnection:
            # Pooled per TLS policy: an unverified connection never serves a policy that verifies.
            keys.append((f"{request.nexthop} {mode}", cand.host, cand.address, cand.port))
            auth = self._auth_for(request.nexthop)
            return await self._connection(keys[-1], cand, auth, mode, ca_file, check)

        try:
            conn = await connect_under(plan, cand, opener, self.sink)
        except ConnectError as exc:
            log.info("%s: %s", request.queue_id, exc.diagnostic)
            return pending, exc
        key = keys[-1]
        setup = time.monotonic() - started
        recipients = request.recipients
        name = conn.extensions.server_name.lower().rstrip(".")
        if name and name == self.own_hostname.lower().rstrip(".") and checks_loops(request.nexthop):
            await conn.quit()
            for i in pending:
                results[i] = failure_result(
                    recipients[i].address,
                    "5.4.6",
                    f"mail for {request.nexthop.domain} loops back to myself",
                    permanent=True,
                    remote_mta=conn.remote_mta,
                )
            return [], None
        try:
            body, size, eight_bit = await content.for_peer(conn.extensions.has("8BITMIME"))
        except DowngradeError as exc:
            self._release(key, conn)
            for i in pending:
                results[i] = failure_result(
                    recipients[i].address,
                    "5.6.3",
                    f"8-bit message cannot be converted for {conn.remote_mta} (no 8BITMIME): {exc}",
                    permanent=True,
                    remote_mta=conn.remote_mta,
                )
            return [], None
        dsn = conn.extensions.has("DSN")
        retry: list[int] = []
        failure: RecipientResult | None = None  # template (address "") for `retry`
        for group in groups_of(pending, self.config.max_recipients_per_transaction):
            if failure is not None or not conn.usable:
                retry.extend(group)
                continue
            tx = make_transaction(
                request, [recipients[i] for i in group], size=size, eight_bit=eight_bit
            )
            self.stats["transactions"] += 1
            sending = time.monotonic()
            done = await conn.deliver(tx, body)
            timings = (round(setup, 3), round(time.monotonic() - sending, 3))
            for i, rr in zip(group, done.replies):
                res = recipient_result(
                    recipients[i].address, rr, conn.remote_mta, dsn=dsn, tls=str(conn.tls or "none")
                )
                res = dataclasses.replace(res, timings=timings, tls_policy=plan.label)
                if rr.reply.transient and rr.stage == "mail":
                    failure = failure or dataclasses.replace(res, address="")
                    retry.append(i)
                else:
                    results[i] = res
        if failure is None and not conn.usable and retry:
            # The peer went away between transactions: report it as a lost connection.
            failure = failure_result(
                "",
                "4.4.2",
                f"lost connection with {conn.remote_mta}",
                permanent=False,
                remote_mta=conn.remote_mta,
            )
        self._release(key, conn, reusable=failure is None)
        return retry, failure

    def _auth_for(self, nexthop: Nexthop) -> tuple[str, str] | None:
        if nexthop.transport != "smtp" or not nexthop.host:
            return None
        return self.credentials.get(
            login_key(nexthop.host, nexthop.port, nexthop.mx, default_port=self.config.smtp_port)
        )

    async def _connection(
        self,
        key: ConnKey,
        cand: Candidate,
        auth: tuple[str, str] | None = None,
        tls: str | None = None,
        ca_file: str | None = None,
        tls_check: TlsCheck | None = None,
    ) -> ClientConnection:
        idle = self._idle.get(key)
        while idle:
            conn, timer = idle.pop()
            timer.cancel()
            if await conn.reset():
                self.stats["reused"] += 1
                return conn
            conn.abort()
        self.stats["connections"] += 1
        conn = await connect(
            self.config,
            host=cand.host,
            address=cand.address,
            port=cand.port,
            helo_name=self.helo_name,
            auth=auth,
            tls=tls,
            ca_file=ca_file,
            tls_check=tls_check,
        )
        if conn.tls:  # as Postfix logs it ("Verified" / "Untrusted TLS connection established")
            how = "Verified" if conn.tls.verified else "Untrusted"
            log.info(
                "%s TLS connection established to %s: %s with cipher %s",
                how,
                conn.remote_mta,
                conn.tls.version,
                conn.tls.cipher,
            )
        return conn

    def _release(self, key: ConnKey, conn: ClientConnection, *, reusable: bool = True) -> None:
        idle = self._idle.setdefault(key, [])
        if not reusable or not conn.usable or len(idle) >= self.config.max_idle_per_destination:
            conn.abort()  # writes QUIT (if usable) without waiting for the 221
            if not idle:
                self._idle.pop(key, None)
            return
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.config.idle_timeout, self._expire, key, conn)
        idle.append((conn, timer))

    def _expire(self, key: ConnKey, conn: ClientConnection) -> None:
        idle = self._idle.get(key, [])
        for i, (c, _timer) in enumerate(idle):
            if c is conn:
                del idle[i]
                break
        if not idle:
            self._idle.pop(key, None)
        conn.abort()

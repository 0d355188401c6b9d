"""LmtpAgent: hand a request to a local LMTP server (RFC 2033), over TCP or a Unix socket.

    agent = LmtpAgent(ClientConfig(), own_hostname="mx.pigeon.example")
    results = await agent.deliver(request)   # nexthop.host = "/run/dovecot/lmtp" or "127.0.0.1"

Contract:
  * Where: `nexthop.host` is a Unix socket path when it starts with "/",
    else a host name or IP literal connected to directly (no MX lookup,
    RFC 2033 §1: LMTP is for local delivery) on `nexthop.port`, default
    `config.lmtp_port` (24).
  * The session says LHLO (RFC 2033 §4.1) and after the final "." reads one
    reply per accepted recipient, in RCPT order (RFC 2033 §4.2): each
    recipient's result is its own reply. BDAT is not used over LMTP.
  * Every failure to reach a usable session (connect, greeting, LHLO,
    timeouts) defers every recipient: 4.4.1 for connect failures, else the
    reply's code turned transient (an LMTP server refusing us is a local
    configuration problem, not a reason to bounce mail).
  * Replies map to results as in delivery/smtp.py (2xx delivered with
    action "delivered", 4xx deferred, 5xx bounced). TLS: none on Unix
    sockets, `config.tls` over TCP. The connection is closed with QUIT after
    the request; LMTP connections are local and cheap, so none are cached.
  * Never raises for delivery failures; never touches the queue store.
"""

from __future__ import annotations

from pigeon.delivery.api import DeliveryRequest, RecipientResult
from pigeon.delivery.downgrade import DowngradeError
from pigeon.delivery.smtp import (
    Content,
    connect_failure,
    failure_result,
    groups_of,
    make_transaction,
    recipient_result,
)
from pigeon.delivery.smtpc import ConnectError, connect
from pigeon.proto.client import ClientConfig


class LmtpAgent:
    """DeliveryAgent for transport "lmtp"; see the module contract."""

    def __init__(self, config: ClientConfig, *, own_hostname: str) -> None:
        self.config = config
        self.helo_name = config.helo_name or own_hostname

    async def deliver(self, request: DeliveryRequest) -> list[RecipientResult]:
        hop = request.nexthop
        host = hop.host or hop.domain
        port = hop.port or self.config.lmtp_port
        recipients = request.recipients
        try:
            conn = await connect(
                self.config, host=host, address=host, port=port, helo_name=self.helo_name, lmtp=True
            )
        except ConnectError as exc:
            return [connect_failure(r.address, exc, transient_only=True) for r in recipients]
        content = Content(request)
        results: list[RecipientResult | None] = [None] * len(recipients)
        try:
            try:
                body, size, eight_bit = await content.for_peer(conn.extensions.has("8BITMIME"))
            except DowngradeError as exc:
                return [
                    failure_result(
                        r.address,
                        "5.6.3",
                        f"8-bit message cannot be converted "
                        f"for {conn.remote_mta} (no 8BITMIME): {exc}",
                        permanent=True,
                        remote_mta=conn.remote_mta,
                    )
                    for r in recipients
                ]
            indexes = list(range(len(recipients)))
            for group in groups_of(indexes, self.config.max_recipients_per_transaction):
                if not conn.usable:
                    for i in group:
                        results[i] = failure_result(
                            recipients[i].address,
                            "4.4.2",
                            f"lost connection with {conn.remote_mta}",
                            permanent=False,
                            remote_mta=conn.remote_mta,
                        )
                    continue
                tx = make_transaction(
                    request, [recipients[i] for i in group], size=size, eight_bit=eight_bit
                )
                done = await conn.deliver(tx, body)
                for i, rr in zip(group, done.replies):
                    results[i] = recipient_result(
                        recipients[i].address, rr, conn.remote_mta, dsn=True
                    )
        finally:
            content.cleanup()
            await conn.quit()
        return [r for r in results if r is not None]

"""The RCPT TO (and MAIL FROM) decision the SMTP driver asks for.

Contract:
  * `check_recipient(address, client_ip)` returns None to accept (the driver
    then sends the standard 250 2.1.5) or a `Reply` from the catalogue in
    `pigeon.proto.reply`; it never builds reply text itself and never raises
    for any address/IP the protocol core can hand it.
  * Decision order (first match wins), like Postfix's
    permit_mynetworks + reject_unauth_destination + local_recipient_maps:
      1. bare `<postmaster>` (RFC 5321 §4.5.1: must be accepted) -> accept;
      2. local domain: an alias, or an existing mailbox (postmaster@ always
         exists) -> accept; otherwise UNKNOWN_USER 550 5.1.1;
      3. any other domain, address literals such as "[192.0.2.1]" included:
         the client IP inside `config.relay_networks` -> accept (the message
         waits in the queue until remote delivery exists); otherwise
         RELAY_DENIED 554 5.7.1 (we are not an open relay).
  * `authenticated=True` (the client passed SMTP AUTH, RFC 4954; the
    driver checks that MAIL FROM is one of the account's addresses) lets the
    client relay to any domain, as Postfix's permit_sasl_authenticated;
    local recipients are still checked (550 5.1.1 for unknown mailboxes).
    Callers that do not pass it keep the old behaviour.
  * `check_sender()` accepts every reverse-path for now: there is no
    authentication yet, so there is nothing to check a sender against.
    SPF/sender-login maps belong to later work.
  * Pure: no I/O, no clock. Decisions are pinned by golden files in
    tests/unit/policy/golden/ (STYLE 3.14).
"""
from __future__ import annotations

import ipaddress

from pigeon.config.schema import Config
from pigeon.proto import reply as R
from pigeon.proto.address import Address
from pigeon.routing.resolve import Router


class RecipientPolicy:
    """Recipient and sender checks for one configuration."""

    def __init__(self, config: Config, router: Router) -> None:
        self._config = config
        self._router = router

    def check_sender(self, address: Address | None, client_ip: str) -> R.Reply | None:
        """Accept any sender (None is the null reverse-path <>). See module doc."""
        return None

    def check_recipient(self, address: Address, client_ip: str, *,
                        authenticated: bool = False) -> R.Reply | None:
        """None to accept, else the reply to send (UNKNOWN_USER or RELAY_DENIED)."""
        if not address.domain:
            # The grammar only lets "<postmaster>" through without a domain.
            return None if address.is_postmaster else R.UNKNOWN_USER
        addr = f"{address.local}@{address.domain}"
        if self._router.is_local_domain(address.domain):
            if self._router.is_alias(addr) or self._router.mailbox_exists(addr):
                return None
            return R.UNKNOWN_USER
        if authenticated or self.client_may_relay(client_ip):
            return None
        return R.RELAY_DENIED

    def client_may_relay(self, client_ip: str) -> bool:
        """True if `client_ip` is inside one of `config.relay_networks`."""
        try:
            ip = ipaddress.ip_address(client_ip.split("%", 1)[0])   # drop an IPv6 zone
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped        # "::ffff:192.0.2.1" from a dual-stack socket
        return any(ip.version == net.version and ip in net
                   for net in self._config.relay_networks)

"""Which accepted mail is captured, and for which tenant (docs/capture.md).

Contract:
  * `CaptureRules.of(config)` takes the three ways mail is marked for
    capture: `[capture] accounts` (a submission credential),
    `[capture] listeners` (a listener) and `[domains."NAME"] capture = true`
    (a recipient domain). Empty rules (`CaptureRules.NONE`) capture nothing
    and cost one attribute test.
  * `tenant(user=, local=, recipients=)` is pure: the tenant the message is
    captured for, or None (delivered as usual). Captured when the
    logged-in account is a capture account, or the connection came in
    through a capture listener, or ANY recipient is in a capture domain:
    the message is then captured whole, with all its recipients (a
    capture domain never gets mail by accident; release sends it to all).
  * The tenant is the account name when the client logged in (two teams
    sharing one pigeon each see their own mail, docs/capture.md
    "Tenants"), else the listener's address ("127.0.0.1:2525"), else the
    first recipient's capture domain ("dev.example").
  * A listener matches a connection whose local port is its port and whose
    local address is its host, or any address when the host is a wildcard
    ("0.0.0.0", "::") or a name.
  * `mark(envelope)` sets `Envelope.capture` of locally submitted mail
    (`sendmail`, `POST /api/send`: no login, no listener) by the domain
    rule, before its commit.
  * Never raises; no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from pigeon.config.listen import ListenAddress

__all__ = ["CaptureRules"]

_WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})


def _same_host(configured: str, local: str) -> bool:
    if configured in _WILDCARDS:
        return True
    try:
        want = ipaddress.ip_address(configured)
    except ValueError:
        return True  # a name: the port decides
    try:
        got = ipaddress.ip_address(local.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(got, ipaddress.IPv6Address) and got.ipv4_mapped is not None:
        got = got.ipv4_mapped
    return want == got


@dataclass(frozen=True, slots=True)
class CaptureRules:
    accounts: frozenset[str] = frozenset()
    listeners: tuple[ListenAddress, ...] = ()
    domains: frozenset[str] = frozenset()

    NONE: ClassVar[CaptureRules]

    @classmethod
    def of(cls, config: Any) -> CaptureRules:
        """The rules of a `pigeon.config.schema.Config`."""
        return cls(
            accounts=config.capture.accounts,
            listeners=config.capture.listeners,
            domains=frozenset(d.name for d in config.domains.values() if d.capture),
        )

    @property
    def active(self) -> bool:
        return bool(self.accounts or self.listeners or self.domains)

    def listener(self, local: tuple[str, int] | None) -> ListenAddress | None:
        """The capture listener a connection to `local` came through, or None."""
        if local is None:
            return None
        host, port = local[0], local[1]
        for address in self.listeners:
            if address.port == port and _same_host(address.host, str(host)):
                return address
        return None

    def tenant(
        self,
        *,
        user: str | None,
        local: tuple[str, int] | None,
        recipients: Iterable[str],
    ) -> str | None:
        """See the module contract."""
        if not self.active:
            return None
        account = user.lower() if user else None
        if account is not None and account in self.accounts:
            return account
        listener = self.listener(local)
        domain = None
        if self.domains:
            for address in recipients:
                name = address.rpartition("@")[2].lower().rstrip(".")
                if name in self.domains:
                    domain = name
                    break
        if listener is None and domain is None:
            return None
        if account is not None:
            return account
        return str(listener) if listener is not None else domain

    def mark(self, envelope: Any) -> str:
        """Local submission (module contract): set and return the envelope's tenant."""
        addresses = (r.address for r in envelope.recipients)
        envelope.capture = self.tenant(user=None, local=None, recipients=addresses) or ""
        return str(envelope.capture)


CaptureRules.NONE = CaptureRules()

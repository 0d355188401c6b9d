"""Where mail goes next: the `Nexthop` value type, shared by routing and delivery.

Contract: a `Nexthop` is a frozen, hashable value naming a transport and a
destination; the queue manager groups recipients by it and hands each group
to the delivery agent of its transport. It knows nothing of how to get
there (routing builds it, delivery agents use it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Nexthop", "Transport"]

Transport = Literal["smtp", "lmtp", "local", "discard"]


@dataclass(frozen=True, slots=True)
class Nexthop:
    """Where a group of recipients goes.

    transport: "smtp" (MX lookup of `domain` unless `host` is given),
               "lmtp" (host:port or a Unix socket path in `host`),
               "local" (Maildir), "discard".
    host:      explicit host (name or IP literal) or socket path; None = MX lookup.
    port:      TCP port; None = the transport's default (config `remote_port`
               for smtp, 24 for lmtp).
    mx:        False for "[host]" (no MX lookup, Postfix's bracket syntax).
    """

    transport: Transport
    domain: str
    host: str | None = None
    port: int | None = None
    mx: bool = True

    def __str__(self) -> str:
        if self.transport in ("local", "discard"):
            return self.transport
        where = self.host if self.host else self.domain
        where = f"[{where}]" if not self.mx else where
        return f"{self.transport}:{where}" + (f":{self.port}" if self.port else "")

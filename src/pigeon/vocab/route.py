"""A recipient's final destination: the `Route` value type.

Contract: routing (pigeon.routing.resolve) turns an address into Routes;
the queue manager groups them by `nexthop`. Every Route has a Nexthop:
local delivery is the transport "local" with the Maildir in `mailbox`,
so no caller has to tell a path from a next hop by its type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pigeon.vocab.nexthop import Nexthop

__all__ = ["Route"]


@dataclass(frozen=True, slots=True)
class Route:
    """One final destination of one address (lowercased, after aliases)."""

    address: str
    nexthop: Nexthop
    mailbox: Path | None = None  # the Maildir, for nexthop.transport == "local"

    @classmethod
    def local(cls, address: str, mailbox: Path) -> Route:
        """Delivery into the Maildir `mailbox`."""
        return cls(address, Nexthop("local", address.rpartition("@")[2]), mailbox)

    @classmethod
    def remote(cls, address: str, nexthop: Nexthop) -> Route:
        return cls(address, nexthop)

    @property
    def kind(self) -> Literal["local", "remote"]:
        return "local" if self.nexthop.transport == "local" else "remote"

"""pigeon.vocab: the words every layer shares, at the bottom of the import graph.

Modules here import nothing from pigeon but each other, so anything may
import them (docs/architecture.md, "Layers"):

    address   Address, parse_path/split_path (RFC 5321 §4.1.2, RFC 6531)
    nexthop   Nexthop: a transport and a destination
    route     Route: an address's final destination (a Nexthop, a Maildir)
    states    QueueState: incoming, active, deferred, hold, corrupt
    errors    StoreError, CorruptEntry
"""

from pigeon.vocab.address import Address, NonAsciiAddressError, PathError, parse_path, split_path
from pigeon.vocab.errors import CorruptEntry, StoreError
from pigeon.vocab.nexthop import Nexthop, Transport
from pigeon.vocab.route import Route
from pigeon.vocab.states import STATES, QueueState

__all__ = [
    "Address",
    "CorruptEntry",
    "NonAsciiAddressError",
    "Nexthop",
    "PathError",
    "QueueState",
    "Route",
    "STATES",
    "StoreError",
    "Transport",
    "parse_path",
    "split_path",
]

"""Relay control and ETRN trust: who may make us send mail elsewhere.

Contract:
  * `RelayNetworks(networks).contains(client_ip)` is True when the address
    the socket reported (an IPv6 zone dropped, a v4-mapped "::ffff:a.b.c.d"
    taken as IPv4) lies in one of `relay_networks`; False for anything that
    is not an IP address.
  * `RelayControl` (rcpt), Postfix's permit_mynetworks +
    permit_sasl_authenticated + reject_unauth_destination: a recipient in a
    domain that is not local (address literals such as "[192.0.2.1]"
    included) is accepted only from a client in `relay_networks` or one that
    logged in (RFC 4954); anyone else gets RELAY_DENIED 554 5.7.1 (we are not
    an open relay). Local domains and the bare <postmaster> are left to
    `LocalRecipients` (policy/recipients.py).
  * `EtrnTrust` (etrn), RFC 1985: only trusted clients (relay_networks, or
    logged in) may make us flush the queue; anyone else could use it to make
    us hammer a destination: ETRN_DENIED 554 5.7.1.
  * Pure: no I/O, no clock.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable

from pigeon.policy.api import SessionFacts, Verdict, refuse
from pigeon.policy.recipients import RecipientLookup
from pigeon.proto import reply as R
from pigeon.proto.params import RcptParams
from pigeon.vocab.address import Address

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_RELAY_DENIED = refuse(R.RELAY_DENIED)
_ETRN_DENIED = refuse(R.ETRN_DENIED)


@functools.lru_cache(
    maxsize=1024
)  # asked for each message of a connection; the answer is immutable
def client_address(client_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`client_ip` as the socket gave it, parsed: an IPv6 zone dropped, a
    v4-mapped "::ffff:192.0.2.1" (dual-stack socket) as IPv4; None if no IP."""
    try:
        ip = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class RelayNetworks:
    """`relay_networks` (Postfix's mynetworks): see the module contract."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)
        # A client asks many times per connection (each RCPT, each counted
        # new mailbox): parse its address once. Bounded, like every cache.
        self.contains: Callable[[str], bool] = functools.lru_cache(maxsize=4096)(self._contains)

    def _contains(self, client_ip: str) -> bool:
        ip = client_address(client_ip)
        return ip is not None and any(
            ip.version == net.version and ip in net for net in self.networks
        )

    def trusts(self, session: SessionFacts) -> bool:
        """Logged in, or connecting from a relay network."""
        return session.user is not None or self.contains(session.client_ip)


class RelayControl:
    """rcpt: no relaying for strangers (module contract)."""

    def __init__(self, lookup: RecipientLookup, networks: RelayNetworks) -> None:
        self._lookup = lookup
        self._networks = networks

    def rcpt(self, session: SessionFacts, recipient: Address, params: RcptParams) -> Verdict | None:
        if not recipient.domain or self._lookup.local(recipient):
            return None
        return None if self._networks.trusts(session) else _RELAY_DENIED


class EtrnTrust:
    """etrn: only trusted clients may start a queue run (module contract)."""

    def __init__(self, networks: RelayNetworks) -> None:
        self._networks = networks

    def etrn(self, session: SessionFacts, node: str) -> Verdict | None:
        return None if self._networks.trusts(session) else _ETRN_DENIED

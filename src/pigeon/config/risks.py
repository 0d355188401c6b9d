"""Settings that are valid but dangerous: the warnings of `check-config` and start-up.

Contract:
  * `risks(config)` returns a list of `Risk(key, message)`, empty for a
    safe configuration. A risk is not an error: pigeon runs as told, but
    `pigeon check-config` prints each one ("warning: ...") and `pigeon
    serve` logs each one at start-up, so nobody runs it unknowingly.
  * The risks found:
      - an open relay: `relay_networks` covers every IPv4 or every IPv6
        address (`0.0.0.0/0`, `::/0`, or networks that add up to that,
        such as `0.0.0.0/1` + `128.0.0.0/1`): anyone may send mail
        anywhere through pigeon (promise 3: no open relay by default);
      - a public listener with relay networks: a `listen` address that
        other hosts can reach (anything but loopback: `0.0.0.0`, `[::]`, a
        non-loopback address or any host name but "localhost") while
        `relay_networks` is not empty; every client in those networks may
        relay, so they must be networks the operator controls.
  * Pure: no I/O, no name resolution.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from pigeon.config.schema import Config, ListenAddress

__all__ = ["Risk", "risks", "is_public"]


@dataclass(frozen=True)
class Risk:
    key: str  # the dotted key to change
    message: str


def is_public(addr: ListenAddress) -> bool:
    """Can hosts other than this one reach `addr`? (Only loopback cannot.)"""
    try:
        return not ipaddress.ip_address(addr.host).is_loopback
    except ValueError:
        return addr.host != "localhost"


def _covers_everything(config: Config) -> list[str]:
    """The IP versions ("IPv4", "IPv6") whose every address is in relay_networks."""
    out = []
    for version, name in ((4, "IPv4"), (6, "IPv6")):
        nets: list[Any] = [n for n in config.relay_networks if n.version == version]
        if any(n.prefixlen == 0 for n in ipaddress.collapse_addresses(nets)):
            out.append(name)
    return out


def risks(config: Config) -> list[Risk]:
    found: list[Risk] = []
    nets = ", ".join(str(n) for n in config.relay_networks)
    everything = _covers_everything(config)
    if everything:
        found.append(
            Risk(
                "relay_networks",
                (
                    f"{nets} lets every {' and every '.join(everything)} address relay: pigeon is an "
                    "OPEN RELAY (anyone may send mail anywhere through it); list only your own networks"
                ),
            )
        )
    public = [str(a) for a in config.listen if is_public(a)]
    if public and config.relay_networks and not everything:
        found.append(
            Risk(
                "relay_networks",
                (
                    f"every client in {nets} may relay (send to any domain) through the public "
                    f"listener{'s' if len(public) > 1 else ''} {', '.join(public)}: make sure these "
                    "networks are yours"
                ),
            )
        )
    return found

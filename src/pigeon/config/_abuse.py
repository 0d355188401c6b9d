"""Value checks for the abuse controls' sections (schema: `pigeon.config.abuse`).

Contract: same shape and message style as `pigeon.config._checks` (which
see): `check(key, value) -> value` or `ConfigError(key, message)`, no I/O.
`SECTIONS` is this module's part of the loader's table of [section]s
(`pigeon.config.load._SECTIONS`): section name -> (schema class, one
checker per key).

A DNSBL site is written as Postfix writes postscreen_dnsbl_sites entries:
"zone", "zone*weight", "zone=127.0.0.2", "zone=127.0.0.[2..11]*3",
"zone=127.0.[0;1].[2..4]" (each octet a number, a range [a..b] or a list
[a;b;c]); the weight is an integer, negative for allow lists.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pigeon.config import _checks as C
from pigeon.config._checks import ConfigError
from pigeon.config.abuse import (
    DnsblConfig,
    DnsblSite,
    GreylistConfig,
    PostscreenConfig,
    RateLimitConfig,
)

__all__ = ["SECTIONS", "dnsbl_site", "dnsbl_sites"]

_SITE = re.compile(r"(?P<zone>[^=*\s]+)(?:=(?P<filter>[^*\s]+))?(?:\*(?P<weight>-?\d+))?")
_OCTET_TEXT = r"\d{1,3}|\[\d{1,3}\.\.\d{1,3}\]|\[\d{1,3}(?:;\d{1,3})*\]"
_OCTET = re.compile(r"(\d{1,3})|\[(\d{1,3})\.\.(\d{1,3})\]|\[(\d{1,3}(?:;\d{1,3})*)\]")
_FILTER = re.compile(rf"({_OCTET_TEXT})\.({_OCTET_TEXT})\.({_OCTET_TEXT})\.({_OCTET_TEXT})")


def _octets(text: str) -> frozenset[int] | None:
    found = _OCTET.fullmatch(text)
    if found is None:
        return None
    single, low, high, listed = found.groups()
    if single is not None:
        values = {int(single)}
    elif listed is not None:
        values = {int(v) for v in listed.split(";")}
    else:
        values = set(range(int(low), int(high) + 1))
    if not values or any(v > 255 for v in values) or (low is not None and int(low) > int(high)):
        return None
    return frozenset(values)


def dnsbl_site(key: str, text: str) -> DnsblSite:
    """One "zone[=filter][*weight]" entry (module docstring)."""
    found = _SITE.fullmatch(text)
    zone = found.group("zone").lower().rstrip(".") if found else ""
    if found is None or C.domain_problem(zone) is not None or "." not in zone:
        raise ConfigError(
            key,
            f'{C.show(text)} is not a DNS list entry (write "zone", "zone*2" or '
            f'"zone=127.0.0.[2..11]*3")',
        )
    site_filter = None
    if found.group("filter"):
        four = _FILTER.fullmatch(found.group("filter"))
        parts = [_octets(p) for p in four.groups()] if four else []
        if len(parts) != 4 or any(p is None for p in parts):
            raise ConfigError(
                key,
                f"{C.show(text)}: the filter must be four octets, each a number, "
                f"[low..high] or [a;b;c] (as in 127.0.0.[2..11])",
            )
        a, b, c, d = (p for p in parts if p is not None)
        site_filter = (a, b, c, d)
    weight = int(found.group("weight")) if found.group("weight") else 1
    return DnsblSite(zone, site_filter, weight)


def dnsbl_sites(key: str, value: Any) -> tuple[DnsblSite, ...]:
    return tuple(dnsbl_site(key, item) for item in C.string_list(key, value))


def _domains(key: str, value: Any) -> tuple[str, ...]:
    """Domains, each optionally with a leading dot (its subdomains), lowercased."""
    out = []
    for item in C.string_list(key, value):
        name = item.lower().rstrip(".")
        if C.domain_problem(name.removeprefix(".")) is not None:
            raise ConfigError(key, f"{C.show(item)} is not a domain name")
        out.append(name)
    return tuple(out)


_ACTIONS = C.choice("ignore", "enforce", "drop")

SECTIONS: dict[str, tuple[type, dict[str, Callable[[str, Any], Any]]]] = {
    "rate_limits": (
        RateLimitConfig,
        {
            "time_unit": C.seconds(positive=True),
            "client_connections": C.integer(0),
            "network_connections": C.integer(0),
            "client_messages": C.integer(0),
            "network_messages": C.integer(0),
            "sender_messages": C.integer(0),
            "user_messages": C.integer(0),
            "exceptions": C.relay_networks,
        },
    ),
    "dnsbl": (
        DnsblConfig,
        {"sites": dnsbl_sites, "rhsbl_sites": dnsbl_sites, "threshold": C.integer(1)},
    ),
    "greylist": (
        GreylistConfig,
        {
            "enabled": C.boolean,
            "delay": C.seconds(positive=False),
            "retry_window": C.seconds(positive=True),
            "pass_lifetime": C.seconds(positive=True),
            "auto_allow_clients": C.integer(0),
            "allow_clients": C.relay_networks,
            "allow_domains": _domains,
        },
    ),
    "postscreen": (
        PostscreenConfig,
        {
            "greet_wait": C.seconds(positive=False),
            "greet_action": _ACTIONS,
            "pipelining_action": _ACTIONS,
        },
    ),
}

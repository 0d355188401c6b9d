"""The schema of the abuse controls: [rate_limits], [dnsbl], [greylist], [postscreen].

Contract: like `pigeon.config.schema` (which holds these as `Config`
fields): frozen dataclasses, one documented field each, the TOML key,
default and unit in its comment; docs/config.md agrees. The checks of the
values are `pigeon.config._abuse`; the checks that use them are
`pigeon.policy.ratelimit`, `pigeon.policy.dnsbl`, `pigeon.policy.greylist`
and the pre-greeting test of `pigeon.net.smtpd`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Loopback: local programs are not rate-limited unless the operator says so.
LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """[rate_limits]: token buckets (Postfix anvil); 0 = that limit is off."""

    time_unit: float = 60.0  # [rate_limits] time_unit, s: the rates below are per this long (anvil_rate_time_unit); > 0
    client_connections: int = 60  # [rate_limits] client_connections: connections per client address per time_unit (smtpd_client_connection_rate_limit)
    network_connections: int = (
        240  # [rate_limits] network_connections: per client /24 (IPv4) or /64 (IPv6)
    )
    client_messages: int = 120  # [rate_limits] client_messages: MAIL FROM per client address per time_unit (smtpd_client_message_rate_limit)
    network_messages: int = 480  # [rate_limits] network_messages: MAIL FROM per client /24 or /64
    sender_messages: int = (
        120  # [rate_limits] sender_messages: MAIL FROM per envelope sender address
    )
    user_messages: int = 300  # [rate_limits] user_messages: MAIL FROM per authenticated user
    #: [rate_limits] exceptions: client networks never counted (Postfix
    #: smtpd_client_event_limit_exceptions); relay_networks are not counted either.
    exceptions: tuple[Network, ...] = LOOPBACK


@dataclass(frozen=True, slots=True)
class DnsblSite:
    """One entry of dnsbl.sites or dnsbl.rhsbl_sites: "zone[=filter][*weight]"."""

    zone: str  # lowercased, no final dot
    #: The answers that count: one set of allowed values per octet of the
    #: 127.x.y.z answer; None = any answer counts.
    filter: tuple[frozenset[int], frozenset[int], frozenset[int], frozenset[int]] | None = None
    weight: int = 1

    def matches(self, address: str) -> bool:
        if self.filter is None:
            return True
        octets = address.split(".")
        return len(octets) == 4 and all(
            part.isdigit() and int(part) in allowed
            for part, allowed in zip(octets, self.filter, strict=True)
        )


@dataclass(frozen=True, slots=True)
class DnsblConfig:
    """[dnsbl]: DNS block lists, weighted (Postfix postscreen_dnsbl_sites)."""

    sites: tuple[
        DnsblSite, ...
    ] = ()  # [dnsbl] sites: client address lists, "zone[=filter][*weight]"; [] = none
    rhsbl_sites: tuple[
        DnsblSite, ...
    ] = ()  # [dnsbl] rhsbl_sites: domain lists, asked for the sender domain and the HELO name
    threshold: int = (
        1  # [dnsbl] threshold: refuse at this total weight (postscreen_dnsbl_threshold); >= 1
    )


@dataclass(frozen=True, slots=True)
class GreylistConfig:
    """[greylist]: greylisting of (client /24 or /64, sender, recipient) triplets."""

    enabled: bool = False  # [greylist] enabled
    delay: float = 300.0  # [greylist] delay, s: a first attempt is retried no sooner than this (postgrey --delay)
    retry_window: float = (
        172800.0  # [greylist] retry_window, s: a retry later than this starts over (2 days)
    )
    pass_lifetime: float = 3024000.0  # [greylist] pass_lifetime, s: a triplet that passed passes until unused this long (35 days, postgrey --max-age)
    auto_allow_clients: int = 5  # [greylist] auto_allow_clients: after this many passed retries a client network is not greylisted any more (postgrey --auto-whitelist-clients); 0 = never
    allow_clients: tuple[Network, ...] = ()  # [greylist] allow_clients: networks never greylisted
    allow_domains: tuple[
        str, ...
    ] = ()  # [greylist] allow_domains: sender domains never greylisted ("example.org"; ".example.org": its subdomains)


@dataclass(frozen=True, slots=True)
class PostscreenConfig:
    """[postscreen]: port 25 tests of the client's protocol behaviour (Postfix postscreen)."""

    greet_wait: float = 0.0  # [postscreen] greet_wait, s: wait this long before the 220 on `listen` (postscreen_greet_wait); 0 = off
    greet_action: Literal["ignore", "enforce", "drop"] = (
        "enforce"  # [postscreen] greet_action: a client that talks first (postscreen_greet_action)
    )
    pipelining_action: Literal["ignore", "enforce", "drop"] = (
        "ignore"  # [postscreen] pipelining_action: a client that sends on before the EHLO reply (postscreen_pipelining_action); "ignore" = off
    )

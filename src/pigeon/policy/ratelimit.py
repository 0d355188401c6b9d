"""Rate limits: token buckets per client, network, sender and user ([rate_limits]).

Postfix's anvil counts connections and messages per client in a time unit;
these are the same limits as token buckets, kept in `<data_dir>/abuse.db`
(`policy.abusestate`) so that a restart does not reset them.

Contract:
  * A bucket holds at most `rate` tokens (one time unit's worth: a burst of
    `rate` is allowed) and gains `rate / time_unit` tokens a second; a key
    never seen has a full bucket. `RateLimiter.take(buckets, now)` takes one
    token from every (key, rate) bucket given, or, when one of them has
    less than one token, takes none and returns that bucket's key. A rate 0
    is no limit (that bucket is not consulted). Time is an argument (wall
    clock seconds: buckets outlive the process); no I/O here.
  * `ConnectionRateLimit` (connect): one token per connection from the
    client's address and from its network (/24 for IPv4, /64 for IPv6);
    over either, the connection is answered `421 4.7.0` instead of the
    greeting and closed (RFC 5321 §3.8).
  * `MessageRateLimit` (mail): one token per MAIL FROM from the client's
    address, its network, the envelope sender address (lowercased; not
    the null sender: every MTA's bounces use it) and, for a logged-in
    client, its user instead of the address and network; over any,
    `450 4.7.1` naming what is over (the sender may try again later, RFC
    5321 §4.2.5). Mail is counted when asked for, accepted or not, as
    anvil does.
  * Not counted: clients in `rate_limits.exceptions` (default loopback)
    or `relay_networks`, Postfix's smtpd_client_event_limit_exceptions.
  * The buckets live in one bounded table (`abusestate`): past its size
    the least recently used go first, which are full by then in practice.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable

from pigeon.config.abuse import RateLimitConfig
from pigeon.policy.abusestate import StateTable
from pigeon.policy.api import SessionFacts, Verdict, refuse
from pigeon.policy.relay import Network, RelayNetworks, client_address
from pigeon.proto import reply as R
from pigeon.proto.params import MailParams
from pigeon.vocab.address import Address

__all__ = ["ConnectionRateLimit", "MessageRateLimit", "RateLimiter", "network_of"]


@functools.lru_cache(maxsize=4096)  # asked at every connection and MAIL: parse once
def network_of(client_ip: str) -> str:
    """The client's network for counting: its /24 (IPv4) or /64 (IPv6)."""
    ip = client_address(client_ip)
    if ip is None:
        return client_ip
    prefix = 24 if isinstance(ip, ipaddress.IPv4Address) else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _shown(key: str) -> str:
    """What a bucket's key counts, for the reply: "[ip]", "network n", "sender <a>", "user u"."""
    kind, _, what = key.partition(":")
    if kind == "from":
        return f"sender <{what}>"
    if kind == "user":
        return f"user {what}"
    return f"network {what}" if "/" in what else f"[{what}]"


class RateLimiter:
    """Token buckets over a `StateTable` (module contract)."""

    def __init__(self, table: StateTable, time_unit: float) -> None:
        self._table = table
        self.time_unit = time_unit

    def tokens(self, key: str, rate: int, now: float) -> float:
        """What the bucket `key` holds at `now`."""
        found = self._table.get(key)
        if found is None:
            return float(rate)
        held, since, _ = found
        return min(float(rate), held + max(0.0, now - since) * rate / self.time_unit)

    def take(self, buckets: Iterable[tuple[str, int]], now: float) -> str | None:
        wanted = [(key, rate) for key, rate in buckets if rate > 0]
        levels = [self.tokens(key, rate, now) for key, rate in wanted]
        for (key, _), level in zip(wanted, levels, strict=True):
            if level < 1.0:
                return key
        for (key, rate), level in zip(wanted, levels, strict=True):
            # The third value, the bucket's rate, is unused here; a shared
            # store merges the takes of several nodes with it (policy/sharedstate.py).
            self._table.put(key, (level - 1.0, now, float(rate)))
        return None


class _Limit:
    def __init__(
        self,
        limiter: RateLimiter,
        config: RateLimitConfig,
        relay_networks: Iterable[Network],
        clock: Callable[[], float],
        hostname: str = "localhost",
    ) -> None:
        self._limiter = limiter
        self._config = config
        self._hostname = hostname
        self._exempt = RelayNetworks((*config.exceptions, *relay_networks))
        self._clock = clock


class ConnectionRateLimit(_Limit):
    """connect: connections per address and network (module contract)."""

    def connect(self, session: SessionFacts) -> Verdict | None:
        ip = session.client_ip
        if self._exempt.contains(ip):
            return None
        config = self._config
        buckets = (
            ("conn:" + ip, config.client_connections),
            ("conn:" + network_of(ip), config.network_connections),
        )
        over = self._limiter.take(buckets, self._clock())
        if over is None:
            return None
        # RFC 5321 §4.2: a 421 names the server.
        text = f"{self._hostname} Error: too many connections from {_shown(over)}, try again later"
        return refuse(R.reply(421, "4.7.0", text))


class MessageRateLimit(_Limit):
    """mail: messages per address, network, sender and user (module contract)."""

    def mail(
        self, session: SessionFacts, sender: Address | None, params: MailParams
    ) -> Verdict | None:
        ip = session.client_ip
        if self._exempt.contains(ip):
            return None
        config = self._config
        if session.user is not None:
            buckets = [("user:" + session.user, config.user_messages)]
        else:
            buckets = [
                ("mail:" + ip, config.client_messages),
                ("mail:" + network_of(ip), config.network_messages),
            ]
        if sender is not None:
            buckets.append(("from:" + str(sender).lower(), config.sender_messages))
        over = self._limiter.take(buckets, self._clock())
        if over is None:
            return None
        text = f"Error: too much mail from {_shown(over)}, try again later"
        return refuse(R.reply(450, "4.7.1", text))

"""How many new Maildirs one client may cause per hour (`limits.new_mailboxes_per_hour`).

In a local domain without a `mailboxes` list every local part is a mailbox,
and delivering to one that has no Maildir yet creates one: without a bound,
a few 1,000-recipient messages make tens of thousands of directories
(inode exhaustion). The RCPT check asks this limiter before accepting such
a recipient.

Contract:
  * `allow(client, mailbox, now, limit)` counts the new mailbox `mailbox`
    (its Maildir path) for `client` and says whether it is within `limit`
    per `WINDOW` seconds (False: refuse the recipient, nothing is counted).
    A mailbox counted in the last `WINDOW` seconds, by any client, is not
    counted again (it is one directory, whether named by one RCPT or by a
    hundred before the first delivery creates it). `limit` 0 means no limit
    (always True, nothing kept).
  * Clients are counted by address; IPv6 clients by their /64 (one host
    commonly holds a whole /64, so per-address counting would not bound it).
  * The window is fixed: it starts with a client's first new mailbox and
    lasts `WINDOW` seconds, then counting starts again (memory O(1) per
    client, at most `max_entries` clients and as many counted mailboxes;
    the oldest are dropped first).
  * Pure: time is an argument; no I/O. Limits are per process, like the
    other [limits] (worker processes count separately).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict

WINDOW = 3600.0


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


def client_key(client_ip: str) -> str:
    """The counting key of `client_ip`: the address itself, an IPv6 one's /64."""
    ip = client_address(client_ip)
    if ip is None:
        return client_ip
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class NewMailboxLimiter:
    """Counts new mailboxes per client in fixed windows (module contract)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._counts: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._counted: OrderedDict[str, float] = OrderedDict()  # mailbox -> when counted

    def allow(self, client_ip: str, mailbox: str, now: float, limit: int) -> bool:
        if limit <= 0:
            return True
        when = self._counted.get(mailbox)
        if when is not None and now - when < WINDOW:
            return True
        key = client_key(client_ip)
        started, count = self._counts.get(key, (now, 0))
        if now - started >= WINDOW:
            started, count = now, 0
        if count >= limit:
            return False
        self._counts[key] = (started, count + 1)
        self._counts.move_to_end(key)
        self._counted[mailbox] = now
        self._counted.move_to_end(mailbox)
        for table in (self._counts, self._counted):
            while len(table) > self.max_entries:
                table.popitem(last=False)
        return True

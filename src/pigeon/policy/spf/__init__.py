"""pigeon.policy.spf: a pure SPF evaluator (RFC 7208) over the resolver interface.

    from pigeon.policy.spf import check_host, check_mail_from, check_helo, SpfVerdict
    result = await check_mail_from(ip, "alice@example.org", helo, resolver, now=time.time())

Modules:
    macros   macro-strings (§7): syntax check and expansion, pure
    record   record selection (§4.5) and parsing (§4.6, §12), pure
    check    check_host() (§4): mechanisms, include/redirect/exp, the §4.6.4 limits

Contract: check_host() takes a `pigeon.dns.api.Resolver` and the time (`now`,
for the "t" macro) and returns an `SpfResult`; it raises nothing for any DNS
answer or any record text. No cache of its own (the receive checks give it
the TTL cache, dns/cache.py), no configuration, no I/O of its own.

Used by the inbound checks (`pigeon.policy.mailauth`, `[mail_auth] spf`),
which write its results into Authentication-Results.
"""

from pigeon.policy.spf.check import (
    SpfResult,
    SpfVerdict,
    check_helo,
    check_host,
    check_mail_from,
)

__all__ = ["SpfResult", "SpfVerdict", "check_helo", "check_host", "check_mail_from"]

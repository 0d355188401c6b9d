"""SPF results kept exactly as long as their DNS answers (policy/mailauth/memo.py),
over the loopback DNS server, our stub and the TTL cache with a clock we move."""

from __future__ import annotations

import asyncio

from pigeon.dns.cache import CachingResolver
from pigeon.dns.stub import StubResolver
from pigeon.policy.mailauth.memo import AnswerMemo
from pigeon.policy.spf import check_mail_from
from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.mailauthkit import txt

ZONES = {
    # the SPF record lives 300 s, the include's 60 s: results last 60 s
    "memo.example": (
        f"@ 300 TXT {txt('v=spf1 include:short.memo.example -all')}\n"
        f"short 60 TXT {txt('v=spf1 ip4:192.0.2.10 -all')}\n"
    ),
    "clock.example": f"@ 300 TXT {txt('v=spf1 exists:%{t}.clock.example -all')}\n",
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _evaluate(memo: AnswerMemo, sender: str):
    key = ("192.0.2.10", sender, "mail.example")
    kept = memo.lookup(key)
    if kept is not None:
        return kept, True
    view = memo.tracking()
    result = asyncio.run(check_mail_from("192.0.2.10", sender, "mail.example", view, now=0.0))
    memo.keep(key, result, view)
    return result, False


def test_a_result_lasts_as_long_as_the_shortest_answer_behind_it():
    with DnsServer(zones=ZONES) as server:
        clock = Clock()
        cache = CachingResolver(StubResolver([("127.0.0.1", server.port)], timeout=2), clock=clock)
        memo = AnswerMemo(cache)
        first, hit = _evaluate(memo, "a@memo.example")
        assert str(first.result) == "pass" and not hit
        asked = len(server.queries)
        again, hit = _evaluate(memo, "a@memo.example")
        assert hit and again == first and len(server.queries) == asked
        # Another sender is another key (its local part could be in a macro).
        assert not _evaluate(memo, "b@memo.example")[1]
        clock.now += 59
        assert _evaluate(memo, "a@memo.example")[1]
        clock.now += 2  # past the include's 60 s: evaluated again, from fresh answers
        assert not _evaluate(memo, "a@memo.example")[1]


def test_nothing_is_kept_over_a_time_macro_or_a_dns_failure():
    with DnsServer(zones=ZONES, timeout={"memo.example"}) as server:
        cache = CachingResolver(StubResolver([("127.0.0.1", server.port)], timeout=0.5))
        memo = AnswerMemo(cache)
        assert not _evaluate(memo, "x@clock.example")[1]
        assert not _evaluate(memo, "x@clock.example")[1]  # %{t}: never kept
        failed, _ = _evaluate(memo, "a@memo.example")
        assert str(failed.result) == "temperror"
        assert not _evaluate(memo, "a@memo.example")[1]  # a temporary failure: asked again


def test_without_a_caching_resolver_nothing_is_kept():
    with DnsServer(zones=ZONES) as server:
        memo = AnswerMemo(StubResolver([("127.0.0.1", server.port)], timeout=2))
        assert not _evaluate(memo, "a@memo.example")[1]
        assert not _evaluate(memo, "a@memo.example")[1]

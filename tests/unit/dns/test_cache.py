"""dns/cache.py: answers kept for their TTL (read from a real DNS server on loopback
through StubResolver), negative answers briefly, failures never."""

from __future__ import annotations

import asyncio

import pytest

from pigeon.dns import NoSuchDomain, TemporaryFailure
from pigeon.dns.cache import CachingResolver
from pigeon.dns.stub import StubResolver
from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.fakedns import FakeResolver

ZONE = '@ 30 TXT "short"\nlong 3600 TXT "long"\n@ 30 MX 10 mx\nmx 30 A 192.0.2.1\n'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _asked(server: DnsServer, name: str) -> int:
    return sum(1 for n, _, _ in server.queries if n == name)


def test_answers_are_kept_for_their_ttl():
    clock = Clock()
    with DnsServer(zones={"example.test": ZONE}) as server:
        cached = CachingResolver(StubResolver([("127.0.0.1", server.port)], timeout=2), clock=clock)

        async def main():
            assert await cached.txt("example.test") == ["short"]
            assert await cached.txt("EXAMPLE.test.") == ["short"]  # same name
            assert await cached.txt("long.example.test") == ["long"]
            assert _asked(server, "example.test") == 1
            clock.now += 31  # past the 30 s TTL, within the hour
            assert await cached.txt("example.test") == ["short"]
            assert await cached.txt("long.example.test") == ["long"]
            assert _asked(server, "example.test") == 2
            assert _asked(server, "long.example.test") == 1
            assert (await cached.mx("example.test"))[0].exchange == "mx.example.test"

        asyncio.run(main())


def test_negative_answers_are_kept_briefly_and_failures_not_at_all():
    clock = Clock()
    with DnsServer(zones={"example.test": ZONE}, servfail={"broken.example.test"}) as server:
        stub = StubResolver([("127.0.0.1", server.port)], timeout=2)
        cached = CachingResolver(stub, clock=clock, negative_ttl=60)

        async def main():
            for _ in range(2):
                with pytest.raises(NoSuchDomain):
                    await cached.txt("nothing.example.test")
                with pytest.raises(TemporaryFailure):
                    await cached.txt("broken.example.test")
            assert _asked(server, "nothing.example.test") == 1
            assert _asked(server, "broken.example.test") >= 2  # asked again each time
            clock.now += 61
            with pytest.raises(NoSuchDomain):
                await cached.txt("nothing.example.test")
            assert _asked(server, "nothing.example.test") == 2

        asyncio.run(main())


def test_look_ups_at_the_same_time_share_one_query():
    with DnsServer(zones={"example.test": ZONE}) as server:
        cached = CachingResolver(StubResolver([("127.0.0.1", server.port)], timeout=2))

        async def main():
            answers = await asyncio.gather(*(cached.txt("example.test") for _ in range(5)))
            assert answers == [["short"]] * 5

        asyncio.run(main())
        assert _asked(server, "example.test") == 1


def test_a_resolver_without_ttls_gets_the_default_and_the_size_is_bounded():
    clock = Clock()
    fake = FakeResolver({"example.test": 'a TXT "1"\nb TXT "2"\nc TXT "3"\n'})
    cached = CachingResolver(fake, clock=clock, default_ttl=10, max_entries=2)

    async def main():
        for name in ("a", "b", "c"):
            assert await cached.txt(f"{name}.example.test")
        assert len(cached) == 2  # the oldest went first

    asyncio.run(main())

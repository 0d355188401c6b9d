"""MTA-STS discovery, fetch and cache (delivery/tlspolicy/fetch.py, mtasts.py) against a
real DNS server and a real HTTPS server on loopback, with a test CA."""

from __future__ import annotations

import asyncio
import json

import dns.name
import pytest

from pigeon.delivery.tlspolicy.fetch import MAX_BODY, FetchError, fetch_policy
from pigeon.delivery.tlspolicy.mtasts import RETRY_AFTER, StsSource
from pigeon.dns.stub import StubResolver
from pigeon.testing.dnsserver import DnsServer, load_zone
from pigeon.testing.httpsserver import Answer, HttpsServer
from pigeon.testing.testca import TestCa, self_signed

POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 3600\r\n"
TESTING = b"version: STSv1\nmode: testing\nmx: *.example.test\nmax_age: 3600\n"


def zone(sts_id: str | None) -> str:
    txt = f'_mta-sts TXT "v=STSv1; id={sts_id};"\n' if sts_id else ""
    return f"@ MX 10 mx\nmx A 127.0.0.1\nmta-sts A 127.0.0.1\n{txt}"


class World:
    def __init__(self, tmp_path, dns, web, ca):
        self.tmp_path, self.dns, self.web, self.ca = tmp_path, dns, web, ca
        self.resolver = StubResolver([("127.0.0.1", dns.port)], timeout=5.0)
        self.now = 1_000_000.0

    def set_id(self, sts_id: str | None) -> None:
        self.dns.zones[dns.name.from_text("example.test")] = load_zone("example.test", zone(sts_id))

    def source(self) -> StsSource:
        return StsSource(
            self.resolver,
            self.tmp_path / "mta-sts",
            ca_file=self.ca.ca_file,
            timeout=5.0,
            clock=lambda: self.now,
            https_port=self.web.port,
        )

    def fetch(self, domain: str = "example.test", ca_file=None) -> str:
        return asyncio.run(
            fetch_policy(
                domain,
                self.resolver,
                ca_file=ca_file or self.ca.ca_file,
                timeout=5.0,
                port=self.web.port,
            )
        )

    def fetches(self) -> int:
        return len(self.web.requests)


@pytest.fixture
def world(tmp_path):
    ca = TestCa(tmp_path / "ca")
    cert, key = ca.issue("mta-sts.example.test")
    answers = {"mta-sts.example.test": Answer(POLICY)}
    with DnsServer(zones={"example.test": zone("1")}) as dns_server:
        with HttpsServer("127.0.0.1", 0, cert, key, answers) as web:
            yield World(tmp_path, dns_server, web, ca)


# --- the fetch (RFC 8461 §3.3) --------------------------------------------------------------


def test_a_policy_is_fetched_over_https_from_the_policy_host(world):
    assert world.fetch().encode() == POLICY
    assert world.web.requests == [("mta-sts.example.test", "/.well-known/mta-sts.txt")]


def test_a_redirect_is_not_followed(world):
    world.web.answers["mta-sts.example.test"] = Answer(
        b"", 301, headers={"Location": "https://elsewhere.test/"}
    )
    with pytest.raises(FetchError, match="redirect"):
        world.fetch()


@pytest.mark.parametrize(
    "answer,why",
    [
        (Answer(POLICY, content_type="text/html"), "not text/plain"),
        (Answer(b"x" * (MAX_BODY + 1)), "over 65536"),
        (Answer(b"gone", 404), "status 404"),
    ],
)
def test_bad_answers_are_refused(world, answer, why):
    world.web.answers["mta-sts.example.test"] = answer
    with pytest.raises(FetchError, match=why):
        world.fetch()


def test_a_certificate_no_trusted_ca_signed_is_refused(world, tmp_path):
    other = TestCa(tmp_path / "other")  # the server's CA is not this one
    with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
        world.fetch(ca_file=other.ca_file)


def test_a_certificate_for_another_name_is_refused(tmp_path):
    ca = TestCa(tmp_path / "ca")
    cert, key = ca.issue("www.example.test")
    with DnsServer(zones={"example.test": zone("1")}) as dns_server:
        answers = {"mta-sts.example.test": Answer(POLICY)}
        with HttpsServer("127.0.0.1", 0, cert, key, answers) as web:
            w = World(tmp_path, dns_server, web, ca)
            with pytest.raises(FetchError, match="mismatch|doesn't match"):
                w.fetch()
            assert web.requests == []


def test_a_self_signed_policy_host_is_refused(tmp_path):
    cert, key = self_signed(tmp_path / "bad", "mta-sts.example.test")
    ca = TestCa(tmp_path / "ca")
    with DnsServer(zones={"example.test": zone("1")}) as dns_server:
        answers = {"mta-sts.example.test": Answer(POLICY)}
        with HttpsServer("127.0.0.1", 0, cert, key, answers) as web:
            with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
                World(tmp_path, dns_server, web, ca).fetch()


def test_an_unusable_ca_file_is_a_fetch_error(world, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(FetchError, match="CA file"):
        world.fetch(ca_file=junk)


def test_a_policy_host_without_address_is_a_fetch_error(world):
    with pytest.raises(FetchError, match="mta-sts.nowhere.test"):
        world.fetch("nowhere.test")


# --- discovery and the cache (RFC 8461 §3.1, §5.1) ----------------------------------------------


def test_no_txt_record_means_no_policy_and_no_fetch(world):
    world.set_id(None)
    assert asyncio.run(world.source().policy("example.test")) is None
    assert world.fetches() == 0


def test_the_policy_is_cached_until_the_id_changes(world):
    source = world.source()
    policy = asyncio.run(source.policy("example.test"))
    assert policy is not None and policy.mode == "enforce"
    assert asyncio.run(source.policy("example.test")) == policy
    assert world.fetches() == 1  # same id: the cached policy
    world.web.answers["mta-sts.example.test"] = Answer(TESTING)
    world.set_id("2")
    assert asyncio.run(source.policy("example.test")).mode == "testing"
    assert world.fetches() == 2


def test_the_cache_survives_a_restart(world):
    asyncio.run(world.source().policy("example.test"))
    cached = json.loads((world.tmp_path / "mta-sts" / "example.test.json").read_text())
    assert cached["id"] == "1" and cached["policy"].encode() == POLICY
    again = world.source()  # a new process: memory empty
    assert asyncio.run(again.policy("example.test")).mode == "enforce"
    assert world.fetches() == 1


def test_a_failed_fetch_keeps_the_cached_policy(world):
    source = world.source()
    asyncio.run(source.policy("example.test"))
    world.web.answers["mta-sts.example.test"] = Answer(b"oops", 500)
    world.set_id("2")  # a new id, but its policy cannot be fetched
    assert asyncio.run(source.policy("example.test")).mode == "enforce"
    assert world.fetches() == 2


def test_a_removed_txt_record_keeps_the_cached_policy_until_it_expires(world):
    source = world.source()
    asyncio.run(source.policy("example.test"))
    world.set_id(None)
    assert asyncio.run(source.policy("example.test")).mode == "enforce"
    world.now += 3600  # max_age
    assert asyncio.run(source.policy("example.test")) is None


def test_an_expired_policy_is_fetched_again(world):
    source = world.source()
    asyncio.run(source.policy("example.test"))
    world.now += 3600
    world.web.answers["mta-sts.example.test"] = Answer(TESTING)
    assert asyncio.run(source.policy("example.test")).mode == "testing"
    assert world.fetches() == 2


def test_a_failed_fetch_is_not_repeated_for_every_message(world):
    world.web.answers["mta-sts.example.test"] = Answer(b"down", 503)
    source = world.source()
    assert asyncio.run(source.policy("example.test")) is None
    assert asyncio.run(source.policy("example.test")) is None
    assert world.fetches() == 1
    world.web.answers["mta-sts.example.test"] = Answer(POLICY)
    world.now += RETRY_AFTER
    assert asyncio.run(source.policy("example.test")).mode == "enforce"
    assert world.fetches() == 2


def test_an_invalid_policy_without_a_cached_one_is_no_policy(world):
    world.web.answers["mta-sts.example.test"] = Answer(b"version: STSv1\nmode: strict\n")
    assert asyncio.run(world.source().policy("example.test")) is None
    assert not (world.tmp_path / "mta-sts" / "example.test.json").exists()

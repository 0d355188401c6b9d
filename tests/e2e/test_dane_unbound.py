"""DANE (RFC 7672) with real components: zones signed by ldns-signzone, Debian's unbound
validating them (pigeon.testing.dnssec), TLSA records made by ldns-dane from the test
certificates, and openssl s_server presenting those certificates over TLS."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from dane_helpers import CA, LEAF, OTHER_CA, STRANGER, tlsa_by_ldns_dane

from pigeon.delivery.tlspolicy.dane import dane_lookup, dane_verify
from pigeon.delivery.tlspolicy.peer import peer_chain
from pigeon.dns.api import TemporaryFailure
from pigeon.dns.stub import StubResolver
from pigeon.testing.certs import Issued
from pigeon.testing.dnssec import ValidatingResolver
from pigeon.testing.live import free_port, require_tool, wait_for

pytestmark = pytest.mark.e2e


def zone(tmp: Path, domain: str) -> str:
    return "\n".join(
        [
            "@ MX 10 mx",
            "mx A 127.0.0.1",
            "ta A 127.0.0.1",
            "bare A 127.0.0.1",  # a host without TLSA records
            tlsa_by_ldns_dane(tmp, f"mx.{domain}", LEAF, "3 1 1"),
            tlsa_by_ldns_dane(tmp, f"ta.{domain}", CA, "2 0 1"),
        ]
    )


@pytest.fixture(scope="module")
def validating(tmp_path_factory):
    for tool in ("unbound", "ldns-keygen", "ldns-signzone"):
        require_tool(tool)
    tmp = tmp_path_factory.mktemp("dane-zones")
    with ValidatingResolver(
        signed={"example.test": zone(tmp, "example.test")},
        unsigned={"plain.test": zone(tmp, "plain.test")},
        bogus={"bogus.test": zone(tmp, "bogus.test")},
        bogus_names={"_25._tcp.mx.bogus.test"},
    ) as server:
        yield server


@pytest.fixture
def resolver(validating) -> StubResolver:
    return StubResolver([("127.0.0.1", validating.port)], timeout=5.0)


def run(coro):
    return asyncio.run(coro)


def test_validating_resolver_reports_the_ad_bit(resolver):
    assert run(resolver.mx_answer("example.test")).secure is True
    assert run(resolver.a_answer("mx.example.test")).secure is True
    assert run(resolver.mx_answer("plain.test")).secure is False


def test_validated_tlsa_records_apply(resolver):
    found = run(dane_lookup(resolver, "mx.example.test", 25))
    assert found is not None and [
        (r.usage, r.selector, r.matching_type) for r in found.records
    ] == [(3, 1, 1)]
    assert found.base_domain == "mx.example.test"


def test_unsigned_zone_means_no_dane(resolver):
    assert run(resolver.tlsa("_25._tcp.mx.plain.test")).records  # published, not validated
    assert run(dane_lookup(resolver, "mx.plain.test", 25)) is None


def test_host_without_tlsa_records_means_no_dane(resolver):
    assert run(dane_lookup(resolver, "bare.example.test", 25)) is None


def test_bogus_tlsa_records_defer(resolver, validating):
    assert run(resolver.mx_answer("bogus.test")).secure is True  # the rest of the zone is fine
    with pytest.raises(TemporaryFailure):
        run(dane_lookup(resolver, "mx.bogus.test", 25))
    assert "validation failure <_25._tcp.mx.bogus.test. TLSA IN>" in validating.log


# --- against a real TLS server -------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path):
    """openssl s_server presenting `cert` and its chain; yields a starter."""
    openssl = require_tool("openssl")
    processes: list[subprocess.Popen[bytes]] = []

    def start(cert: Issued, chain: list[Issued]) -> int:
        port = free_port()
        cert_path, key_path = cert.write(tmp_path, f"server-{port}")
        chain_path, _ = chain[0].write(tmp_path, f"chain-{port}", chain=chain[1:])
        args = [openssl, "s_server", "-quiet", "-accept", f"127.0.0.1:{port}"]
        args += ["-cert", str(cert_path), "-key", str(key_path), "-cert_chain", str(chain_path)]
        processes.append(subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL))
        assert wait_for(lambda: _listening(port), timeout=10)
        return port

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def presented_chain(port: int) -> list[bytes]:
    """The chain the server sends, as the SMTP client sees it (no verification by ssl)."""

    async def handshake() -> list[bytes]:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # DANE is the check
        _, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="mx"), 10
        )
        try:
            return peer_chain(writer.get_extra_info("ssl_object"))
        finally:
            writer.close()

    return run(handshake())


def test_peer_chain_is_the_whole_chain(tls_server):
    assert presented_chain(tls_server(LEAF, [CA])) == [LEAF.der, CA.der]


@pytest.mark.parametrize("host", ["mx.example.test", "ta.example.test"])  # DANE-EE, DANE-TA
def test_matching_server_is_authenticated(resolver, tls_server, host):
    found = run(dane_lookup(resolver, host, 25))
    assert found is not None
    assert dane_verify(found, presented_chain(tls_server(LEAF, [CA]))) is None


@pytest.mark.parametrize("host", ["mx.example.test", "ta.example.test"])
def test_other_certificate_is_refused(resolver, tls_server, host):
    found = run(dane_lookup(resolver, host, 25))
    assert found is not None
    reason = dane_verify(found, presented_chain(tls_server(STRANGER, [OTHER_CA])))
    assert reason is not None and reason.startswith("DANE: ")

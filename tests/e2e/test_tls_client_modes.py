"""The SMTP client's TLS policies that outbound TLS policies use (delivery/smtpc.py):
"verify" against a given CA file, "dane" with a chain check, against a real pigeon
peer with STARTTLS."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from pigeon.delivery.smtpc import ConnectError, connect
from pigeon.proto.client import ClientConfig
from pigeon.testing.testca import TestCa, self_signed

pytestmark = pytest.mark.e2e

FAST = ClientConfig(connect_timeout=5.0, greeting_timeout=10.0, helo_timeout=10.0)


@pytest.fixture
def peers(tmp_path, pigeon_factory):
    ca = TestCa(tmp_path / "ca")
    good_cert, good_key = ca.issue("mx.good.test")
    bad_cert, bad_key = self_signed(tmp_path / "bad", "mx.bad.test")

    def peer(cert, key, name):
        return pigeon_factory(f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n', hostname=name)

    return (
        ca,
        peer(good_cert, good_key, "mx.good.test"),
        peer(bad_cert, bad_key, "mx.bad.test"),
        bad_cert,
    )


def open_conn(port, host, **kw):
    async def go():
        conn = await connect(
            FAST, host=host, address="127.0.0.1", port=port, helo_name="client.test", **kw
        )
        tls = conn.tls
        await conn.quit()
        return tls

    return asyncio.run(go())


def test_verify_trusts_the_given_ca_file_and_names_a_bad_certificate(peers):
    ca, good, bad, _ = peers
    tls = open_conn(good.port, "mx.good.test", tls="verify", ca_file=str(ca.ca_file))
    assert tls is not None and tls.verified and str(tls).startswith("verified TLSv1.")
    with pytest.raises(ConnectError) as info:
        open_conn(bad.port, "mx.bad.test", tls="verify", ca_file=str(ca.ca_file))
    assert info.value.tls_result == "certificate-not-trusted"
    assert (
        info.value.reply.enhanced == "4.7.5"
        and "certificate verify failed" in info.value.diagnostic
    )
    with pytest.raises(ConnectError) as info:  # the right CA, the wrong name
        open_conn(good.port, "mx.other.test", tls="verify", ca_file=str(ca.ca_file))
    assert info.value.tls_result == "certificate-host-mismatch"


def test_dane_mode_hands_the_peer_chain_to_the_check_and_obeys_it(peers):
    _, _, bad, bad_cert = peers
    leaf = ssl.PEM_cert_to_DER_cert(bad_cert.read_text())
    seen = []

    def accept(chain):
        seen.append(chain)
        return None

    tls = open_conn(bad.port, "mx.bad.test", tls="dane", tls_check=accept)
    assert seen and seen[0][0] == leaf  # leaf first
    assert tls is not None and tls.verified  # the check authenticated it, not a CA
    with pytest.raises(ConnectError) as info:
        open_conn(bad.port, "mx.bad.test", tls="dane", tls_check=lambda chain: "no TLSA match")
    exc = info.value
    assert exc.tls_result == "validation-failure" and "no TLSA match" in exc.diagnostic
    assert exc.reply.enhanced == "4.7.5"

"""The SRS secret (forwarding/secrets.py), the [srs]/[arc] keys (config/_forwarding.py)
and the sealing agent in front of the SMTP agent (delivery/sealing.py)."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
import time

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pigeon.config import load_config
from pigeon.config._checks import ConfigErrors
from pigeon.config.forwarding import ArcConfig
from pigeon.delivery.api import DeliveryRecipient, DeliveryRequest, RecipientResult
from pigeon.delivery.content import PrefixedMessage
from pigeon.delivery.sealing import SealingAgent
from pigeon.forwarding.arc import ArcSealer
from pigeon.forwarding.secrets import SECRET_FILE, srs_codec, srs_secrets
from pigeon.proto.params import MailParams
from pigeon.queue.model import RecipientStatus
from pigeon.testing.fakedns import FakeResolver
from pigeon.testing.fakes import BytesContent
from pigeon.vocab import Nexthop

# --- the secret -----------------------------------------------------------------------


def test_secret_is_made_once_0600_and_kept(tmp_path):
    config = load_config(None, {"data_dir": str(tmp_path / "d"), "srs": {"enabled": True}})
    first = srs_secrets(config)
    path = tmp_path / "d" / SECRET_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first) == 1 and len(first[0]) >= 40
    assert srs_secrets(config) == first
    assert [p.name for p in path.parent.iterdir()] == [SECRET_FILE]  # no temporary left


def test_configured_secret_and_secret_file_lines(tmp_path):
    config = load_config(None, {"data_dir": str(tmp_path), "srs": {"secret": "abc"}})
    assert srs_secrets(config) == [b"abc"]
    assert srs_codec(config) is None  # not enabled
    listed = tmp_path / "secrets"
    listed.write_text("new-one\n\nold-one\n")
    config = load_config(
        None, {"data_dir": str(tmp_path), "srs": {"enabled": True, "secret_file": str(listed)}}
    )
    assert srs_secrets(config) == [b"new-one", b"old-one"]
    codec = srs_codec(config)
    assert codec is not None and codec.domain == config.hostname
    assert not (tmp_path / SECRET_FILE).exists()


# --- the keys -------------------------------------------------------------------------


def problems(overrides) -> str:
    with pytest.raises(ConfigErrors) as err:
        load_config(None, overrides)
    return str(err.value)


def test_bad_values_are_refused_naming_the_key(tmp_path):
    assert "srs.max_age" in problems({"srs": {"max_age": 2000}})
    assert "srs.hash_length" in problems({"srs": {"hash_length": 2}})
    assert "srs.domain" in problems({"srs": {"domain": "bad..domain"}})
    assert "srs.secret_file: no such file" in problems({"srs": {"secret_file": "/nonexistent"}})
    both = problems({"srs": {"secret": "a", "secret_file": str(tmp_path)}})
    assert "srs.secret: set srs.secret or srs.secret_file, not both" in both
    text = problems({"arc": {"enabled": True}})
    assert "arc.selector" in text and "arc.key_file" in text
    assert "arc.unknown" in problems({"arc": {"unknown": 1}})


def test_arc_key_must_be_an_rsa_private_key(tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    text = problems({"arc": {"enabled": True, "selector": "s", "key_file": str(garbage)}})
    assert "arc.key_file" in text and "not a private key" in text
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    text = problems({"arc": {"enabled": True, "selector": "s", "key_file": str(ec_key)}})
    assert "not an RSA key" in text


def test_sealing_domain_default():
    assert ArcConfig().sealing_domain("mx.example.org") == "example.org"
    assert ArcConfig().sealing_domain("example.org") == "example.org"
    assert ArcConfig(domain="other.example").sealing_domain("mx.example.org") == "other.example"


# --- the sealing agent ------------------------------------------------------------------


def test_prefixed_message_streams_prefix_then_content():
    content = PrefixedMessage(b"A: 1\r\n", BytesContent(b"B: 2\r\n\r\nbody\r\n"))
    assert content.size == len(b"A: 1\r\nB: 2\r\n\r\nbody\r\n")
    with content.open() as stream:
        assert stream.read(3) == b"A: "
        assert stream.read() == b"1\r\nB: 2\r\n\r\nbody\r\n"


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[DeliveryRequest, bytes]] = []

    async def deliver(self, request: DeliveryRequest) -> list[RecipientResult]:
        with request.content.open() as stream:
            self.seen.append((request, stream.read()))
        return [
            RecipientResult(r.address, RecipientStatus.DELIVERED, "2.0.0", "ok")
            for r in request.recipients
        ]


MESSAGE = b"From: a@origin.test\r\nTo: b@dest.test\r\nSubject: s\r\n\r\nbody\r\n"


def request(forwarded: bool, data: bytes = MESSAGE) -> DeliveryRequest:
    return DeliveryRequest(
        "Q1",
        "SRS0=x=y=origin.test=a@fwd.test",
        MailParams(),
        (DeliveryRecipient("b@dest.test"),),
        BytesContent(data),
        len(data),
        False,
        False,
        Nexthop("smtp", "dest.test"),
        forwarded=forwarded,
    )


@pytest.fixture(scope="module")
def sealer() -> ArcSealer:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ArcSealer("fwd.test", "s1", pem, "mx.fwd.test")


def test_only_forwarded_requests_are_sealed(sealer):
    inner = Recorder()
    agent = SealingAgent(inner, sealer, FakeResolver(), clock=lambda: 1_800_000_000)
    asyncio.run(agent.deliver(request(False)))
    asyncio.run(agent.deliver(request(True)))
    (plain, plain_data), (sealed, sealed_data) = inner.seen
    assert plain_data == MESSAGE and plain.size == len(MESSAGE)
    assert sealed_data.startswith(b"ARC-Seal: i=1; cv=none;") and sealed_data.endswith(MESSAGE)
    assert sealed.size == len(sealed_data)
    assert b"t=1800000000" in sealed_data


def test_message_that_cannot_be_sealed_goes_unsealed(sealer, caplog):
    inner = Recorder()
    agent = SealingAgent(inner, sealer, FakeResolver())
    data = b"Subject: no From\r\n\r\nbody\r\n"
    results = asyncio.run(agent.deliver(request(True, data)))
    assert results[0].outcome == RecipientStatus.DELIVERED
    assert inner.seen[0][1] == data
    assert "forwarded unsealed" in caplog.text


def test_prior_chain_keys_are_looked_up_through_the_resolver(sealer):
    # The first hop, s1: sealed with the key the fake zone publishes for s1 and m.
    first = sealer.seal(MESSAGE, now=int(time.time()), verify_chain=lambda name: None) + MESSAGE
    der = (
        serialization.load_pem_private_key(sealer._key, None)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    p = base64.b64encode(der).decode()
    chunks = " ".join(f'"{p[i : i + 200]}"' for i in range(0, len(p), 200))
    record = f'TXT "v=DKIM1; k=rsa; p=" {chunks}\n'
    resolver = FakeResolver({"fwd.test": f"s1._domainkey {record}m._domainkey {record}"})
    second = ArcSealer("fwd.test", "m", sealer._key, "mx2.fwd.test")
    inner = Recorder()
    asyncio.run(SealingAgent(inner, second, resolver).deliver(request(True, first)))
    data = inner.seen[0][1]
    assert b"ARC-Seal: i=2; cv=pass;" in data

    def dnsfunc(name, timeout=5):
        text = (name.decode() if isinstance(name, bytes) else name).rstrip(".")
        return (f"v=DKIM1; k=rsa; p={p}").encode() if text.endswith("_domainkey.fwd.test") else None

    cv, sets, reason = dkim.arc_verify(data, dnsfunc=dnsfunc)
    assert cv == dkim.CV_Pass, reason

"""pigeon.config.risks: valid but dangerous settings (open relay, public listener with relaying)."""

from __future__ import annotations

import pytest

from pigeon.config import load_config
from pigeon.config.risks import is_public, risks
from pigeon.config.schema import ListenAddress


def found(**overrides) -> list[tuple[str, str]]:
    return [(r.key, r.message) for r in risks(load_config(None, overrides))]


def test_the_defaults_are_safe():
    assert found() == []


@pytest.mark.parametrize(
    "networks, versions",
    [
        (["0.0.0.0/0"], "IPv4"),
        (["::/0"], "IPv6"),
        (["0.0.0.0/1", "128.0.0.0/1"], "IPv4"),  # halves that add up to everything
        (["192.0.2.0/24", "0.0.0.0/0", "::/0"], "IPv4 and every IPv6"),
    ],
)
def test_open_relay(networks, versions):
    ((key, message),) = found(relay_networks=networks)
    assert key == "relay_networks"
    assert f"lets every {versions} address relay: pigeon is an OPEN RELAY" in message


def test_a_public_listener_with_relay_networks():
    ((key, message),) = found(
        listen=["0.0.0.0:25", "127.0.0.1:2525"], relay_networks=["192.0.2.0/24"]
    )
    assert key == "relay_networks"
    assert message.startswith(
        "every client in 192.0.2.0/24 may relay (send to any domain) "
        "through the public listener 0.0.0.0:25:"
    )


def test_loopback_listeners_with_relay_networks_are_fine():
    assert (
        found(listen=["127.0.0.1:25", "[::1]:25", "localhost:26"], relay_networks=["192.0.2.0/24"])
        == []
    )


def test_a_public_listener_without_relay_networks_is_fine():
    assert found(listen=["0.0.0.0:25"]) == []


@pytest.mark.parametrize(
    "host, public",
    [
        ("0.0.0.0", True),
        ("::", True),
        ("192.0.2.1", True),
        ("mx.example.test", True),
        ("127.0.0.2", False),
        ("::1", False),
        ("localhost", False),
    ],
)
def test_is_public(host, public):
    assert is_public(ListenAddress(host, 25)) is public

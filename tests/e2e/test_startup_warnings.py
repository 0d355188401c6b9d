"""`pigeon serve` logs the risky settings `check-config` warns about (pigeon.config.risks)."""

from __future__ import annotations

import pytest

from pigeon.testing.live import wait_for

pytestmark = pytest.mark.e2e


def test_an_open_relay_is_logged_at_start_up(pigeon_factory):
    server = pigeon_factory('relay_networks = ["0.0.0.0/0"]\n[admin]\nmetrics_listen = ""\n')
    line = (
        "WARNING pigeon: configuration: relay_networks: 0.0.0.0/0 lets every IPv4 address "
        "relay: pigeon is an OPEN RELAY"
    )
    assert wait_for(lambda: line in server.log()), server.log()

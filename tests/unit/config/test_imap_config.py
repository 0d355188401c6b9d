"""The [imap] section: defaults, sizes, the RFC 9051 §5.4 auto-logout floor, listeners."""

from __future__ import annotations

import pytest

from pigeon.config import load_config
from pigeon.config.load import ConfigErrors
from pigeon.config.schema import ListenAddress


def load(tmp_path, text: str):
    path = tmp_path / "pigeon.toml"
    path.write_text(text)
    return load_config(path)


def test_defaults(tmp_path):
    imap = load(tmp_path, "").imap
    assert imap.listen == (ListenAddress("127.0.0.1", 2143),)
    assert imap.tls_listen == (ListenAddress("127.0.0.1", 2993),)
    assert imap.max_literal == 50 * 1024 * 1024
    assert imap.autologout == 1800.0


@pytest.mark.parametrize(
    ("value", "octets"),
    [('"50MB"', 50 * 1024**2), ('"512KB"', 512 * 1024), ("4096", 4096), ('"1G"', 1024**3)],
)
def test_sizes(tmp_path, value, octets):
    assert load(tmp_path, f"[imap]\nmax_literal = {value}\n").imap.max_literal == octets


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('max_literal = "lots"', "imap.max_literal: must be a size in octets"),
        ("max_literal = 10", "imap.max_literal: must be at least 1024 octets"),
        ("autologout = 60", "imap.autologout: must be at least 1800 seconds (RFC 9051 §5.4)"),
        ('listen = ["127.0.0.1:2525"]', 'imap.listen: "127.0.0.1:2525" is also in listen'),
        ("idle_pol = 5", 'imap.idle_pol: unknown key (did you mean "idle_poll"?)'),
    ],
)
def test_refused_values_name_the_key(tmp_path, text, problem):
    with pytest.raises(ConfigErrors) as caught:
        load(tmp_path, f"[imap]\n{text}\n")
    assert problem in str(caught.value)


def test_an_empty_list_turns_a_role_off(tmp_path):
    imap = load(tmp_path, "[imap]\nlisten = []\ntls_listen = []\n").imap
    assert imap.listen == () and imap.tls_listen == ()

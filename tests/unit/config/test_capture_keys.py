"""[capture] and `[domains."NAME"] capture` (config/_capture.py): defaults, values, errors naming the key."""

from __future__ import annotations

import pytest

from pigeon.config import ConfigError, load_config
from pigeon.config.listen import ListenAddress


def test_defaults():
    config = load_config(None)
    assert config.capture.listeners == () and config.capture.accounts == frozenset()
    assert config.capture.max_size == 1024**3 and config.capture.max_age == 7 * 86400.0
    assert not any(d.capture for d in config.domains.values())


def test_values():
    config = load_config(
        None,
        {
            "submission_listen": ["127.0.0.1:2587"],
            "domains": {"dev.example": {"capture": True, "mailboxes": ["bob"]}},
            "capture": {
                "listeners": ["127.0.0.1:2587"],
                "accounts": ["Team-A@example.test"],
                "max_size": "20MB",
                "max_age": 3600,
                "sweep_interval": 5,
            },
        },
    )
    cap = config.capture
    assert cap.listeners == (ListenAddress("127.0.0.1", 2587),)
    assert cap.accounts == frozenset({"team-a@example.test"})
    assert (cap.max_size, cap.max_age, cap.sweep_interval) == (20 * 1024**2, 3600.0, 5.0)
    domain = config.domains["dev.example"]
    assert domain.capture and domain.mailboxes == frozenset({"bob"})


@pytest.mark.parametrize(
    ("overrides", "key", "text"),
    [
        ({"capture": {"max_size": 10}}, "capture.max_size", "at least 1024"),
        ({"capture": {"max_age": 0}}, "capture.max_age", "positive"),
        ({"capture": {"accounts": "ci"}}, "capture.accounts", "list of strings"),
        ({"capture": {"listeners": ["127.0.0.1:9"]}}, "capture.listeners", "is not one of"),
        ({"capture": {"colour": 1}}, "capture.colour", "unknown"),
        ({"domains": {"dev.example": {"capture": "yes"}}}, 'domains."dev.example".capture', "true"),
    ],
)
def test_errors_name_the_key(overrides, key, text):
    with pytest.raises(ConfigError) as caught:
        load_config(None, overrides)
    message = str(caught.value)
    assert key in message and text in message.lower(), message

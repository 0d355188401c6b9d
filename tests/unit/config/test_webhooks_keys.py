"""[[webhooks]] (config/_webhooks.py): defaults, values, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pigeon.config import ConfigError, load_config
from pigeon.config.webhooks import WEBHOOK_EVENTS
from pigeon.webhooks.service import endpoints


def _load(*tables):
    return load_config(None, {"webhooks": list(tables)})


def test_none_by_default():
    assert load_config(None).webhooks == ()


def test_defaults_and_values():
    first, second = _load(
        {"url": "https://hooks.example.test/p?x=1", "secret": "k"},
        {
            "url": "http://127.0.0.1:8080/",
            "secret_file": "/etc/pigeon/hook.secret",
            "ca_file": "/etc/pigeon/ca.pem",
            "events": ["bounced", "expired"],
            "timeout": 3,
            "max_age": 60,
            "max_pending": 5,
        },
    ).webhooks
    assert first.events == WEBHOOK_EVENTS
    assert (first.secret, first.timeout, first.max_age, first.max_pending) == (
        "k",
        10.0,
        259200.0,
        10000,
    )
    assert second.events == ("bounced", "expired")
    assert second.secret_file == Path("/etc/pigeon/hook.secret")
    assert (first.ca_file, second.ca_file) == (None, Path("/etc/pigeon/ca.pem"))
    assert (second.timeout, second.max_age, second.max_pending) == (3.0, 60.0, 5)


@pytest.mark.parametrize(
    "table, message",
    [
        (
            {"url": "ftp://x.test/", "secret": "k"},
            'webhooks[0].url: "ftp://x.test/": must begin with',
        ),
        ({"url": "https:///p", "secret": "k"}, 'webhooks[0].url: "https:///p": needs a host'),
        (
            {"url": "http://u:pw@x.test/", "secret": "k"},
            'webhooks[0].url: "http://u:pw@x.test/": no user',
        ),
        (
            {"url": "http://x.test:99999/", "secret": "k"},
            'webhooks[0].url: "http://x.test:99999/": bad port',
        ),
        ({"secret": "k"}, "webhooks[0].url: is required"),
        (
            {"url": "http://x.test/"},
            "webhooks[0].secret: one of secret and secret_file is required",
        ),
        (
            {"url": "http://x.test/", "secret": "k", "secret_file": "/k"},
            "webhooks[0].secret: one of secret and secret_file",
        ),
        (
            {"url": "http://x.test/", "secret_file": "k"},
            'webhooks[0].secret_file: "k": must be an absolute path',
        ),
        (
            {"url": "http://x.test/", "secret": "k", "events": ["sent"]},
            'webhooks[0].events: unknown event "sent"',
        ),
        (
            {"url": "http://x.test/", "secret": "k", "events": []},
            "webhooks[0].events: must be a non-empty list",
        ),
        (
            {"url": "http://x.test/", "secret": "k", "timeout": 0},
            "webhooks[0].timeout: must be a positive",
        ),
        (
            {"url": "http://x.test/", "secret": "k", "max_pending": 0},
            "webhooks[0].max_pending: must be a positive",
        ),
        (
            {"url": "http://x.test/", "secret": "k", "evnts": []},
            'webhooks[0].evnts: unknown key (did you mean "events"?)',
        ),
    ],
)
def test_errors_name_the_key(table, message):
    with pytest.raises(ConfigError) as info:
        _load(table)
    assert message in str(info.value)


def test_a_url_twice_and_every_entry_reported():
    with pytest.raises(ConfigError) as info:
        _load(
            {"url": "http://x.test/", "secret": "k"},
            {"url": "http://x.test/", "secret": "k"},
            {"url": "gopher://y.test/", "secret": "k"},
        )
    text = str(info.value)
    assert 'webhooks[1].url: "http://x.test/" is listed twice' in text
    assert "webhooks[2].url" in text


def test_secret_file_read_at_start(tmp_path):
    key = tmp_path / "hook.secret"
    key.write_text("s3cret\nignored\n")
    config = _load({"url": "http://x.test/", "secret_file": str(key)})
    assert endpoints(config)[0].secret == "s3cret"
    key.write_text("")
    with pytest.raises(ConfigError, match=r"webhooks\[0\].secret_file: .* is empty"):
        endpoints(config)
    key.unlink()
    with pytest.raises(ConfigError, match=r"webhooks\[0\].secret_file: cannot read"):
        endpoints(config)

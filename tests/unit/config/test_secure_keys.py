"""[tls], [auth] and the listener role keys (config/_secure.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pigeon.config import ConfigError, load_config
from pigeon.config.schema import ListenAddress


def test_defaults():
    c = load_config()
    assert c.submission_listen == (ListenAddress("127.0.0.1", 2587),)
    assert c.submissions_listen == (ListenAddress("127.0.0.1", 2465),)
    assert c.tls.cert_file is None and c.tls.min_version == "TLSv1.2" and c.tls.starttls
    assert c.auth.mechanisms == ("PLAIN", "LOGIN", "SCRAM-SHA-256") and not c.auth.smtp_listener


def test_values_and_empty_role_lists():
    c = load_config(
        None,
        {
            "submission_listen": [],
            "submissions_listen": ["[::1]:465"],
            "tls": {"cert_file": "/c.pem", "key_file": "/k.pem", "min_version": "TLSv1.3"},
            "auth": {"mechanisms": ["scram-sha-256"], "lockout": 10},
        },
    )
    assert c.submission_listen == () and c.submissions_listen == (ListenAddress("::1", 465),)
    assert c.tls.cert_file == Path("/c.pem") and c.tls.min_version == "TLSv1.3"
    assert c.auth.mechanisms == ("SCRAM-SHA-256",) and c.auth.lockout == 10.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"tls": {"key_file": "/k.pem"}},
            "tls.cert_file: tls.cert_file and tls.key_file must be set together",
        ),
        ({"auth": {"mechanisms": ["PLAIN", "plain"]}}, 'auth.mechanisms: "plain" is listed twice'),
        ({"auth": {"mechanisms": ["GSSAPI"]}}, 'unknown mechanism "GSSAPI"'),
        ({"auth": {"max_failures": 0}}, "auth.max_failures: must be a positive integer"),
        ({"tls": {"ciphers": "A B"}}, "tls.ciphers: must be an OpenSSL cipher list without spaces"),
        ({"tls": {"handshake_timeout": 0}}, "tls.handshake_timeout: must be a positive number"),
        (
            {"submissions_listen": ["127.0.0.1:2525"]},
            'submissions_listen: "127.0.0.1:2525" is also in listen',
        ),
        ({"submission_listen": "127.0.0.1:587"}, "submission_listen: must be a list of strings"),
    ],
)
def test_errors(overrides, message):
    with pytest.raises(ConfigError) as exc:
        load_config(None, overrides)
    assert message in str(exc.value)

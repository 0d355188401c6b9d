"""[tls_policy]: defaults, values, and errors that name the key."""

from __future__ import annotations

import pytest

from pigeon.config import ConfigError, load_config


def load(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text(text)
    return load_config(path)


def test_defaults(tmp_path):
    t = load(tmp_path, "").tls_policy
    assert (t.mta_sts, t.dane, t.ca_file, t.fetch_timeout) == (True, True, None, 10.0)
    assert (t.own_mode, t.own_mx, t.own_max_age) == ("testing", (), 604800)


def test_values(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    t = load(
        tmp_path,
        f'[tls_policy]\nmta_sts = false\nca_file = "{ca}"\nown_mx = ["MX.Example.org.", "*.b.example.org"]\n'
        'own_mode = "enforce"\nown_max_age = 86400\n',
    ).tls_policy
    assert (t.mta_sts, t.ca_file, t.own_mx) == (False, ca, ("mx.example.org", "*.b.example.org"))


@pytest.mark.parametrize(
    "text,key,message",
    [
        ('own_mode = "strict"', "tls_policy.own_mode", "must be one of"),
        ("own_max_age = 31557601", "tls_policy.own_max_age", "at most 31557600"),
        ('own_mx = ["bad_name"]', "tls_policy.own_mx[0]", "host name or *.domain"),
        ('ca_file = "/nonexistent/ca.pem"', "tls_policy.ca_file", "no such file"),
        ("fetch_timeout = 0", "tls_policy.fetch_timeout", ""),
    ],
)
def test_errors_name_the_key(tmp_path, text, key, message):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"[tls_policy]\n{text}\n")
    (problem,) = info.value.problems
    assert problem.key == key and message in problem.message, str(problem)

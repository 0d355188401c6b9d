"""[reports] (config/_reports.py): defaults, values, and errors that name the key."""

from __future__ import annotations

import pytest

from pigeon.config import ConfigError, load_config


def test_defaults():
    r = load_config(None, {"hostname": "mx.example.test"}).reports
    assert (r.dmarc, r.tls, r.enabled) == (False, False, False)
    assert r.from_address("mx.example.test") == "noreply-reports@mx.example.test"
    assert (r.org_name, r.contact, r.interval) == ("", "", 86400.0)


def test_values(tmp_path):
    path = tmp_path / "pigeon.toml"
    path.write_text(
        "[reports]\ndmarc = true\ntls = false\n"
        'from = "dmarc-reports@example.test"\norg_name = "Example"\n'
        'contact = "https://example.test/abuse"\ninterval = 3600\n'
    )
    r = load_config(path).reports
    assert (r.dmarc, r.tls, r.enabled) == (True, False, True)
    assert r.from_address("ignored.test") == "dmarc-reports@example.test"
    assert (r.org_name, r.contact, r.interval) == ("Example", "https://example.test/abuse", 3600.0)


@pytest.mark.parametrize(
    "table, message",
    [
        ({"dmarc": "yes"}, "reports.dmarc: must be true or false"),
        ({"from": "not an address"}, "reports.from: "),
        ({"from": "postmaster"}, 'reports.from: "postmaster" needs a domain'),
        ({"interval": 0}, "reports.interval: must be a positive number of seconds"),
        ({"interval": 0.5}, "reports.interval: must be at least 1 second"),
        ({"org_name": "two\nlines"}, "reports.org_name: must be one line of text"),
        ({"dmrac": True}, 'reports.dmrac: unknown key (did you mean "dmarc"?)'),
    ],
)
def test_errors(table, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, {"reports": table})
    assert message in str(info.value)


def test_every_problem_is_reported_with_its_line(tmp_path):
    path = tmp_path / "pigeon.toml"
    path.write_text('[reports]\ndmarc = 1\ntls = true\nfrom = "x y"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert f"{path}:2: reports.dmarc" in text and f"{path}:4: reports.from" in text


def test_not_a_table():
    with pytest.raises(ConfigError) as info:
        load_config(None, {"reports": True})
    assert "reports: must be a table" in str(info.value)

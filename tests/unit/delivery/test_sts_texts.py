"""delivery/tlspolicy/sts.py: the _mta-sts TXT record, the policy file, MX patterns (RFC 8461)."""

from __future__ import annotations

import pytest

from pigeon.delivery.tlspolicy.sts import StsError, mx_matches, parse_policy, policy_id

# RFC 8461 §3.2's example policy, with CRLF as served.
RFC_POLICY = (
    "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
    "mx: backupmx.example.com\r\nmax_age: 604800\r\n"
)


@pytest.mark.parametrize(
    "records,expected",
    [
        (["v=STSv1; id=20160831085700Z;"], "20160831085700Z"),  # RFC 8461 §3.1 example
        (["v=STSv1;id=abc"], "abc"),
        (["v=spf1 -all", "v=STSv1; id=1"], "1"),  # other records are discarded
        (["v=STSv1; id=1", "v=STSv1; id=2"], None),  # not exactly one
        ([], None),
        (["id=1; v=STSv1"], None),  # v must come first
        (["v=STSv1; id=not-alnum"], None),
        (["v=STSv1; id=" + "a" * 33], None),  # at most 32
        (["v=STSv1"], None),  # no id
    ],
)
def test_policy_id(records, expected):
    assert policy_id(records) == expected


def test_the_rfc_example_policy_parses():
    p = parse_policy(RFC_POLICY)
    assert (p.mode, p.max_age) == ("enforce", 604800)
    assert p.mx == ("mail.example.com", "*.example.net", "backupmx.example.com")
    assert p.lines()[0] == "version: STSv1" and len(p.lines()) == 6


def test_unknown_keys_are_ignored_and_lf_works():
    p = parse_policy("version: STSv1\nmode: testing\nmx: MX.Example.ORG.\nmax_age: 0\nextra: 1\n")
    assert (p.mode, p.max_age, p.mx) == ("testing", 0, ("mx.example.org",))


def test_mode_none_needs_no_mx():
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 86400\n").mx == ()


@pytest.mark.parametrize(
    "text,why",
    [
        ("mode: enforce\nmx: a.test\nmax_age: 1\n", "version"),
        ("version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n", "version"),
        ("version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n", "mode"),
        ("version: STSv1\nmode: enforce\nmx: a.test\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n", "at most"),
        ("version: STSv1\nmode: enforce\nmax_age: 1\n", "mx"),
        ("version: STSv1\nmode enforce\nmx: a.test\nmax_age: 1\n", "line 2"),
        ("<html>not a policy</html>\n", "line 1"),
    ],
)
def test_invalid_policies_are_refused_with_the_reason(text, why):
    with pytest.raises(StsError, match=why):
        parse_policy(text)


@pytest.mark.parametrize(
    "pattern,host,matches",
    [
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "MAIL.example.com.", True),
        ("mail.example.com", "mail2.example.com", False),
        # RFC 8461 §4.1: a wildcard matches exactly one leftmost label.
        ("*.example.net", "mx1.example.net", True),
        ("*.example.net", "example.net", False),
        ("*.example.net", "a.mx1.example.net", False),
        ("*.example.net", "mx1.example.network", False),
    ],
)
def test_mx_patterns(pattern, host, matches):
    assert mx_matches(pattern, host) is matches

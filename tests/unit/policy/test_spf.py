"""The SPF evaluator (policy/spf) against RFC 7208, on zones in memory (FakeResolver).

Each group cites the section it checks; the Appendix A examples use the
RFC's own zone (A, "Extended Examples").
"""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from pigeon.config.schema import DeliveryConfig, Nameserver
from pigeon.dns.stub import StubResolver
from pigeon.policy.spf import SpfVerdict, check_helo, check_host, check_mail_from
from pigeon.policy.spf.macros import MacroContext, SpfSyntaxError, check_macro_string, expand
from pigeon.policy.spf.record import parse_record, select_record
from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.fakedns import FakeResolver

NOW = 1_700_000_000.0

# RFC 7208 Appendix A: the zone every example uses.
EXAMPLE_COM = """
@        MX 10 mail-a
@        MX 20 mail-b
@        A 192.0.2.10
@        A 192.0.2.11
amy      A 192.0.2.65
bob      A 192.0.2.66
mail-a   A 192.0.2.129
mail-b   A 192.0.2.130
www      CNAME example.com.
"""
EXAMPLE_ORG = """
@        MX 10 mail-c
mail-c   A 192.0.2.140
"""
REVERSE_192 = """
10   PTR example.com.
11   PTR example.com.
65   PTR amy.example.com.
66   PTR bob.example.com.
129  PTR mail-a.example.com.
130  PTR mail-b.example.com.
140  PTR mail-c.example.org.
"""
REVERSE_10 = "22.0.2 PTR mail.example.net.\n"


def _zones(record: str | None = None, **extra: str) -> dict[str, str]:
    """Appendix A's zones, `record` as example.com's SPF record, `extra` zones or overrides."""
    com = EXAMPLE_COM + (f'@ TXT "{record}"\n' if record is not None else "")
    zones = {
        "example.com": com,
        "example.org": EXAMPLE_ORG,
        "2.0.192.in-addr.arpa": REVERSE_192,
        "10.in-addr.arpa": REVERSE_10,
    }
    zones.update({name.replace("_", "."): text for name, text in extra.items()})
    return zones


def _check(
    zones: dict[str, str],
    ip: str,
    domain: str = "example.com",
    sender: str | None = None,
    helo: str = "mx.example.net",
    queries: list[tuple[str, str]] | None = None,
    **resolver: object,
):
    """check_host() on `zones`; the look-ups made are appended to `queries` if given."""
    fake = FakeResolver(zones, **resolver)
    result = asyncio.run(
        check_host(ip, domain, sender or f"user@{domain}", helo, fake, now=NOW, receiver="mx.test")
    )
    if queries is not None:
        queries.extend(fake.queries)
    return result


def _result(record: str, ip: str, **zones: str) -> SpfVerdict:
    return _check(_zones(record, **zones), ip).result


# --- §7.4: the RFC's macro examples ---------------------------------------------------------

CONTEXT4 = MacroContext(
    sender="strong-bad@email.example.com",
    domain="email.example.com",
    ip=ipaddress.ip_address("192.0.2.3"),
    helo="mx.example.org",
    receiver="mx.test",
    now=NOW,
)


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [
        ("%{s}", "strong-bad@email.example.com"),
        ("%{o}", "email.example.com"),
        ("%{d}", "email.example.com"),
        ("%{d4}", "email.example.com"),
        ("%{d3}", "email.example.com"),
        ("%{d2}", "example.com"),
        ("%{d1}", "com"),
        ("%{dr}", "com.example.email"),
        ("%{d2r}", "example.email"),
        ("%{l}", "strong-bad"),
        ("%{l-}", "strong.bad"),
        ("%{lr}", "strong-bad"),
        ("%{lr-}", "bad.strong"),
        ("%{l1r-}", "strong"),
        ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
        ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
        ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
        ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
        ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
    ],
)
def test_rfc_7208_7_4_macro_examples(macro, expanded):
    assert expand(macro, CONTEXT4) == expanded


def test_rfc_7208_7_4_ipv6_example():
    context = MacroContext(
        "strong-bad@email.example.com",
        "email.example.com",
        ipaddress.ip_address("2001:db8::cb01"),
        "h",
    )
    assert expand("%{ir}.%{v}._spf.%{d2}", context) == (
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
    )


# --- §7.1 to §7.3: macro syntax and the other letters ---------------------------------------


def test_macro_escapes_upper_case_and_other_delimiters():
    assert expand("%%%_%-", CONTEXT4) == "% %20"
    assert expand("%{S}", CONTEXT4) == "strong-bad%40email.example.com"  # §7.3: URL-escaped
    assert expand("%{h}|%{v}", CONTEXT4) == "mx.example.org|in-addr"
    assert expand("%{d1-}", CONTEXT4) == "email.example.com"  # split on "-" only, not "."
    assert expand("%{o1r}", CONTEXT4) == "email"
    assert expand("%{i99}", CONTEXT4) == "192.0.2.3"  # more parts asked for than there are


def test_explanation_only_letters():
    assert expand("%{c} %{r} %{t}", CONTEXT4, explanation=True) == "192.0.2.3 mx.test 1700000000"
    for letter in "crt":
        with pytest.raises(SpfSyntaxError):  # §7.2: c, r, t only in exp
            check_macro_string(f"%{{{letter}}}.example.com")
    with pytest.raises(SpfSyntaxError):  # a space is only allowed in an explain-string
        check_macro_string("a b")


@pytest.mark.parametrize(
    "bad", ["%", "%{", "%{d", "%{x}", "%{d0}", "%{dR/}x%", "%a", "%{d2 }", "é.example.com", "%{}"]
)
def test_macro_syntax_errors(bad):
    with pytest.raises(SpfSyntaxError):
        check_macro_string(bad)


# --- §4.5: selecting the record --------------------------------------------------------------


def test_record_selection():
    assert select_record(["google-site-verification=x", "v=spf1 -all"]) == "v=spf1 -all"
    assert select_record(["v=spf1"]) == "v=spf1"
    assert select_record(["V=SPF1 -all"]) == "V=SPF1 -all"  # case-insensitive
    assert select_record(["v=spf10 -all", "v=spf1-all", "spf2.0/pra -all"]) is None
    with pytest.raises(SpfSyntaxError):
        select_record(["v=spf1 -all", "v=spf1 +all"])


def test_no_record_is_none_and_two_are_permerror():
    assert _check(_zones(None), "192.0.2.10").result is SpfVerdict.NONE
    zones = _zones("v=spf1 -all")
    zones["example.com"] += '@ TXT "v=spf1 +all"\n'
    assert _check(zones, "192.0.2.10").result is SpfVerdict.PERMERROR


def test_a_record_split_into_strings_is_joined():
    zones = _zones(None)
    zones["example.com"] += '@ TXT "v=spf1 ip4:192.0.2.0/24" " -all"\n@ TXT "other"\n'
    assert _check(zones, "192.0.2.1").result is SpfVerdict.PASS
    assert _check(zones, "198.51.100.1").result is SpfVerdict.FAIL


# --- §4.3, §4.4: initial processing, DNS errors on the record --------------------------------


@pytest.mark.parametrize(
    "domain", ["com", "[192.0.2.1]", "192.0.2.1", "a..example.com", "x" * 64 + ".example.com"]
)
def test_a_domain_that_cannot_have_a_record_is_none_without_a_look_up(domain):
    queries: list[tuple[str, str]] = []
    result = _check(_zones("v=spf1 -all"), "192.0.2.10", domain, "u@example.com", queries=queries)
    assert result.result is SpfVerdict.NONE
    assert queries == []


def test_nxdomain_is_none_and_servfail_is_temperror():
    assert _check(_zones(), "192.0.2.1", domain="nowhere.example.com").result is SpfVerdict.NONE
    result = _check(_zones("v=spf1 -all"), "192.0.2.1", servfail={"example.com"})
    assert result.result is SpfVerdict.TEMPERROR
    assert "SERVFAIL" in result.problem
    assert _check(_zones(), "192.0.2.1", timeout={"example.com"}).result is SpfVerdict.TEMPERROR


def test_empty_local_part_is_postmaster():
    # §4.3: the sender without a local-part is postmaster@domain
    zones = _zones("v=spf1 exists:%{l}.ok.example.com -all")
    zones["example.com"] += "postmaster.ok A 127.0.0.2\n"
    assert _check(zones, "192.0.2.1", sender="@example.com").result is SpfVerdict.PASS
    assert _check(zones, "192.0.2.1", sender="bob@example.com").result is SpfVerdict.FAIL


# --- §4.6, §5, §6, §12: syntax errors are permerror, wherever they are -----------------------


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 +all foo:bar",  # §4.6: an unknown mechanism after a match still counts
        "v=spf1 +all -ip4:192.0.2.1/33",  # §5.6: CIDR out of range
        "v=spf1 ip4:192.0.2.1/024 +all",  # §12: no leading zeros in a CIDR length
        "v=spf1 ip4:192.0.02.1 +all",  # §12: qnum has no leading zeros
        "v=spf1 ip4:2001:db8::1 +all",
        "v=spf1 ip6:192.0.2.1 +all",
        "v=spf1 ip6:2001:db8::/129 +all",
        "v=spf1 ip4 +all",
        "v=spf1 a:foo.1 +all",  # §7.1: the domain must end in a top label
        "v=spf1 a:example +all",
        "v=spf1 a:example.com/33 +all",
        "v=spf1 mx//129 +all",
        "v=spf1 a: +all",
        "v=spf1 include +all",  # §5.2: include needs a domain
        "v=spf1 exists +all",
        "v=spf1 ptr/24 +all",  # §5.5: ptr has no CIDR length
        "v=spf1 all:example.com",
        "v=spf1 -all/8",
        "v=spf1 redirect=example.org redirect=example.net",  # §6: once each
        "v=spf1 exp=a.example.com exp=b.example.com -all",
        "v=spf1 redirect=example +all",
        "v=spf1 +all foo=%{x}",  # §6: unknown modifiers ignored, but must be macro-strings
        "v=spf1 include:%{c}.example.com +all",  # §7.2: c outside exp
        "v=spf1 +all\t-all",  # §12: terms are separated by SP only
        "v=spf1 ++all",
        "v=spf1 a:%{d0}.example.com +all",
    ],
)
def test_syntax_errors_are_permerror(record):
    with pytest.raises(SpfSyntaxError):
        parse_record(record)
    result = _check(_zones(record), "192.0.2.10")
    assert result.result is SpfVerdict.PERMERROR
    assert result.problem


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 foo=bar +all",  # §6: unknown modifiers are ignored
        "v=spf1    +all   ",  # several spaces, trailing spaces
        "v=spf1 A:Example.COM +ALL",  # names are case-insensitive
        "v=spf1 a:%{d} +all",  # ends in a macro
        "v=spf1 a:example.com. +all",  # a final dot
        "v=spf1 ip4:192.0.2.0/0 ip6:::/0 a//0 mx/0//0 +all",
        "v=spf1 ip6:::ffff:192.0.2.1 +all",
    ],
)
def test_valid_records(record):
    parse_record(record)
    assert _check(_zones(record), "198.51.100.1").result is SpfVerdict.PASS


# --- §4.6.2, §4.7: qualifiers, the default result ----------------------------------------------


@pytest.mark.parametrize(
    ("record", "verdict"),
    [
        ("v=spf1 all", SpfVerdict.PASS),
        ("v=spf1 +all", SpfVerdict.PASS),
        ("v=spf1 -all", SpfVerdict.FAIL),
        ("v=spf1 ~all", SpfVerdict.SOFTFAIL),
        ("v=spf1 ?all", SpfVerdict.NEUTRAL),
        ("v=spf1", SpfVerdict.NEUTRAL),  # §4.7: nothing matched, no redirect
        ("v=spf1 ip4:198.51.100.0/24", SpfVerdict.NEUTRAL),
    ],
)
def test_qualifiers_and_default(record, verdict):
    result = _check(_zones(record), "192.0.2.10")
    assert result.result is verdict
    assert result.mechanism == (record.split()[-1] if record.endswith("all") else None)


# --- Appendix A.1: simple examples ---------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "passing", "failing"),
    [
        ("v=spf1 +all", ["192.0.2.10", "10.0.0.4"], []),
        ("v=spf1 a -all", ["192.0.2.10", "192.0.2.11"], ["192.0.2.65", "192.0.2.129"]),
        ("v=spf1 a:example.org -all", [], ["192.0.2.10", "192.0.2.140"]),
        ("v=spf1 mx -all", ["192.0.2.129", "192.0.2.130"], ["192.0.2.10", "192.0.2.140"]),
        ("v=spf1 mx:example.org -all", ["192.0.2.140"], ["192.0.2.129"]),
        (
            "v=spf1 mx mx:example.org -all",
            ["192.0.2.129", "192.0.2.130", "192.0.2.140"],
            ["192.0.2.10"],
        ),
        (
            "v=spf1 mx/30 mx:example.org/30 -all",
            ["192.0.2.128", "192.0.2.131", "192.0.2.141", "192.0.2.143"],
            ["192.0.2.132", "192.0.2.139", "192.0.2.144"],
        ),
        (
            "v=spf1 ptr -all",
            ["192.0.2.65", "192.0.2.10", "192.0.2.129"],
            ["192.0.2.140", "10.0.0.4"],
        ),
        ("v=spf1 ip4:192.0.2.128/28 -all", ["192.0.2.129"], ["192.0.2.65"]),
    ],
)
def test_appendix_a_1_simple_examples(record, passing, failing):
    for ip in passing:
        assert _result(record, ip) is SpfVerdict.PASS, ip
    for ip in failing:
        assert _result(record, ip) is SpfVerdict.FAIL, ip


def test_appendix_a_1_ptr_without_forward_confirmation_does_not_match():
    # §5.5: 10.0.2.22 names mail.example.net, whose A records are not in our zones
    assert _result("v=spf1 ptr:example.net -all", "10.0.2.22") is SpfVerdict.FAIL


# --- Appendix A.2: multiple domains (include, redirect) ---------------------------------------


def test_appendix_a_2_multiple_domain_example():
    zones = _zones(
        "v=spf1 mx -all",
        example_net='@ TXT "v=spf1 ip4:198.51.100.0/24 -all"\n',
    )
    zones["example.org"] += (
        '@ TXT "v=spf1 include:example.com include:example.net -all"\n'
        'la TXT "v=spf1 redirect=example.org"\n'
        'ny TXT "v=spf1 redirect=example.org"\n'
    )
    for domain in ("example.org", "la.example.org", "ny.example.org"):
        passed = _check(zones, "192.0.2.129", domain=domain)
        assert passed.result is SpfVerdict.PASS
        assert passed.mechanism == "include:example.com"
        assert passed.domain == "example.org"  # the record that decided, after the redirect
        assert _check(zones, "198.51.100.7", domain=domain).result is SpfVerdict.PASS
        assert _check(zones, "192.0.2.140", domain=domain).result is SpfVerdict.FAIL


# --- Appendix A.3: DNSBL-style lists through exists and macros -------------------------------


def test_appendix_a_3_dnsbl_style_example():
    record = "v=spf1 mx include:mobile-users._spf.%{d} include:remote-users._spf.%{d} -all"
    zones = _zones(record)
    zones["example.com"] += (
        'mobile-users._spf TXT "v=spf1 exists:%{l1r+}.%{d}"\n'
        'remote-users._spf TXT "v=spf1 exists:%{ir}.%{l1r+}.%{d}"\n'
        "mary.mobile-users._spf A 127.0.0.2\n"
        "fred.mobile-users._spf A 127.0.0.2\n"
        "15.15.168.192.joel.remote-users._spf A 127.0.0.2\n"
        "16.15.168.192.joel.remote-users._spf A 127.0.0.2\n"
    )

    def verdict(ip: str, local: str) -> SpfVerdict:
        return _check(zones, ip, sender=f"{local}@example.com").result

    assert verdict("203.0.113.9", "mary") is SpfVerdict.PASS  # anywhere
    assert verdict("203.0.113.9", "fred+lists") is SpfVerdict.PASS  # %{l1r+}: "fred"
    assert verdict("192.168.15.15", "joel") is SpfVerdict.PASS
    assert verdict("192.168.15.16", "joel") is SpfVerdict.PASS
    assert verdict("192.168.15.17", "joel") is SpfVerdict.FAIL
    assert verdict("203.0.113.9", "joel") is SpfVerdict.FAIL
    assert verdict("192.0.2.129", "anyone") is SpfVerdict.PASS  # mx


# --- Appendix A.4: multiple requirements (-include, De Morgan) -------------------------------


def test_appendix_a_4_multiple_requirements_example():
    record = "v=spf1 -include:ip4._spf.%{d} -include:ptr._spf.%{d} +all"
    zones = _zones(record)
    zones["example.com"] += 'ip4._spf TXT "v=spf1 -ip4:192.0.2.0/24 +all"\n'
    # As printed, ptr._spf holds "v=spf1 -ptr +all"; a bare "ptr" there names
    # ptr._spf.example.com itself (§5.5: the default is <domain>), so no client
    # could pass: the intent (reverse DNS in example.com) needs "ptr:example.com".
    literal = dict(
        zones, **{"example.com": zones["example.com"] + 'ptr._spf TXT "v=spf1 -ptr +all"\n'}
    )
    assert _check(literal, "192.0.2.65").result is SpfVerdict.FAIL
    zones["example.com"] += 'ptr._spf TXT "v=spf1 -ptr:example.com +all"\n'
    assert _check(zones, "192.0.2.65").result is SpfVerdict.PASS  # in range, amy.example.com
    assert _check(zones, "192.0.2.140").result is SpfVerdict.FAIL  # in range, mail-c.example.org
    assert _check(zones, "10.0.2.22").result is SpfVerdict.FAIL  # out of range


# --- §5.3, §5.4, §5.6: IPv6 clients, dual CIDR lengths, IPv4-mapped addresses ------------------

V6 = """
@      AAAA 2001:db8::10
@      A 192.0.2.10
@      MX 10 mx
mx     AAAA 2001:db8:1::25
"""


@pytest.mark.parametrize(
    ("record", "ip", "verdict"),
    [
        ("v=spf1 ip6:2001:db8::/32 -all", "2001:db8:ffff::1", SpfVerdict.PASS),
        ("v=spf1 ip6:2001:db8::/32 -all", "2001:db9::1", SpfVerdict.FAIL),
        ("v=spf1 ip6:2001:db8::1 -all", "2001:db8::1", SpfVerdict.PASS),  # /128 by default
        ("v=spf1 ip6:2001:db8::1 -all", "2001:db8::2", SpfVerdict.FAIL),
        ("v=spf1 ip4:0.0.0.0/0 -all", "2001:db8::1", SpfVerdict.FAIL),  # ip4 never matches v6
        ("v=spf1 ip6:::/0 -all", "192.0.2.1", SpfVerdict.FAIL),
        ("v=spf1 a -all", "2001:db8::10", SpfVerdict.PASS),  # AAAA for an IPv6 client
        ("v=spf1 a -all", "2001:db8::11", SpfVerdict.FAIL),
        ("v=spf1 a//64 -all", "2001:db8::ffff", SpfVerdict.PASS),
        ("v=spf1 a/32//64 -all", "2001:db8:0:1::1", SpfVerdict.FAIL),
        ("v=spf1 a/24 -all", "192.0.2.200", SpfVerdict.PASS),  # A for an IPv4 client
        ("v=spf1 a/24//128 -all", "192.0.3.1", SpfVerdict.FAIL),
        ("v=spf1 mx -all", "2001:db8:1::25", SpfVerdict.PASS),
        ("v=spf1 mx//48 -all", "2001:db8:1:2::1", SpfVerdict.PASS),
        ("v=spf1 mx -all", "2001:db8::10", SpfVerdict.FAIL),
        ("v=spf1 ip4:192.0.2.10 -all", "::ffff:192.0.2.10", SpfVerdict.PASS),  # §5: mapped = IPv4
        ("v=spf1 a -all", "::ffff:192.0.2.10", SpfVerdict.PASS),
    ],
)
def test_ipv6_and_cidr(record, ip, verdict):
    zones = {"v6.example": V6 + f'@ TXT "{record}"\n'}
    assert _check(zones, ip, domain="v6.example").result is verdict


# --- §5.2: include ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("included", "verdict"),
    [
        ("v=spf1 +all", SpfVerdict.PASS),  # pass: the include matches
        ("v=spf1 -all", SpfVerdict.SOFTFAIL),  # fail, softfail, neutral: it does not
        ("v=spf1 ~all", SpfVerdict.SOFTFAIL),
        ("v=spf1 ?all", SpfVerdict.SOFTFAIL),
        ("v=spf1", SpfVerdict.SOFTFAIL),
        ("v=spf1 foo:bar", SpfVerdict.PERMERROR),  # permerror ends the evaluation
        ("v=spf1 include:nowhere.example.org", SpfVerdict.PERMERROR),  # none inside
        (None, SpfVerdict.PERMERROR),  # none: permerror
    ],
)
def test_include_results(included, verdict):
    record = "v=spf1 include:inc.example.org ~all"
    zones = _zones(record)
    if included is not None:
        zones["example.org"] += f'inc TXT "{included}"\n'
    result = _check(zones, "192.0.2.99")
    assert result.result is verdict
    if verdict is SpfVerdict.PASS:
        assert result.mechanism == "include:inc.example.org"


def test_include_of_a_missing_domain_and_temperror():
    assert _result("v=spf1 include:nowhere.example.org +all", "192.0.2.1") is SpfVerdict.PERMERROR
    zones = _zones("v=spf1 include:example.org +all")
    result = _check(zones, "192.0.2.1", servfail={"example.org"})
    assert result.result is SpfVerdict.TEMPERROR


def test_include_sees_its_own_domain_in_macros():
    # §5.2: the included check_host() runs with <domain> = the target; <sender> stays
    zones = _zones("v=spf1 include:example.org -all")
    zones["example.org"] += '@ TXT "v=spf1 exists:%{d}.%{o}.x.example.org"\n'
    zones["example.org"] += "example.org.example.com.x A 127.0.0.2\n"
    assert _check(zones, "192.0.2.1").result is SpfVerdict.PASS


# --- §6.1: redirect ----------------------------------------------------------------------------


def test_redirect():
    zones = _zones("v=spf1 ip4:198.51.100.1 redirect=example.org")
    zones["example.org"] += '@ TXT "v=spf1 mx -all"\n'
    assert _check(zones, "198.51.100.1").result is SpfVerdict.PASS  # a mechanism matched first
    redirected = _check(zones, "192.0.2.140")
    assert (redirected.result, redirected.domain, redirected.mechanism) == (
        SpfVerdict.PASS,
        "example.org",
        "mx",
    )
    assert _check(zones, "192.0.2.10").result is SpfVerdict.FAIL


def test_redirect_to_a_domain_without_record_is_permerror():
    assert _result("v=spf1 redirect=example.org", "192.0.2.1") is SpfVerdict.PERMERROR
    assert _result("v=spf1 redirect=nowhere.example.org", "192.0.2.1") is SpfVerdict.PERMERROR
    assert _result("v=spf1 redirect=%{l}", "192.0.2.1") is SpfVerdict.PERMERROR  # not a domain


def test_redirect_is_ignored_when_all_is_present():
    queries: list[tuple[str, str]] = []
    zones = _zones("v=spf1 -all redirect=example.org")
    assert _check(zones, "192.0.2.1", queries=queries).result is SpfVerdict.FAIL
    assert queries == [("example.com", "TXT")]


def test_redirect_position_does_not_matter():
    zones = _zones("v=spf1 redirect=example.org ip4:192.0.2.1")
    zones["example.org"] += '@ TXT "v=spf1 -all"\n'
    assert _check(zones, "192.0.2.1").result is SpfVerdict.PASS
    assert _check(zones, "192.0.2.2").result is SpfVerdict.FAIL


# --- §6.2: exp ---------------------------------------------------------------------------------


def _exp_zones(
    record: str, explanation: str = "%{i} is not one of %{d}'s designated mail servers."
) -> dict[str, str]:
    zones = _zones(record)
    zones["example.com"] += f'why TXT "{explanation}"\n'
    return zones


def test_exp_explains_a_fail():
    result = _check(_exp_zones("v=spf1 mx -all exp=why.%{d}"), "192.0.2.1")
    assert result.result is SpfVerdict.FAIL
    assert result.explanation == "192.0.2.1 is not one of example.com's designated mail servers."


def test_exp_text_may_use_c_r_t_and_uppercase():
    zones = _exp_zones("v=spf1 -all exp=why.example.com", "%{c} via %{r} at %{t}: %{L} %%")
    result = _check(zones, "192.0.2.1", sender="a b@example.com")
    assert result.explanation == "192.0.2.1 via mx.test at 1700000000: a%20b %"


@pytest.mark.parametrize(
    ("record", "extra"),
    [
        ("v=spf1 -all exp=nothere.example.com", ""),  # NXDOMAIN
        ("v=spf1 -all exp=why.example.com", 'why TXT "second"\n'),  # two TXT records
        ("v=spf1 -all exp=bad.example.com", 'bad TXT "%{x}"\n'),  # a syntax error in the text
        ("v=spf1 -all exp=%{p}.example.com", ""),
    ],
)
def test_a_broken_exp_only_means_no_explanation(record, extra):
    zones = _exp_zones(record)
    zones["example.com"] += extra
    result = _check(zones, "192.0.2.1")
    assert (result.result, result.explanation) == (SpfVerdict.FAIL, None)


def test_exp_servfail_is_still_fail():
    zones = _exp_zones("v=spf1 -all exp=why.example.org")
    result = _check(zones, "192.0.2.1", servfail={"why.example.org"})
    assert (result.result, result.explanation) == (SpfVerdict.FAIL, None)


def test_exp_only_for_fail():
    queries: list[tuple[str, str]] = []
    result = _check(_exp_zones("v=spf1 ~all exp=why.example.com"), "192.0.2.1", queries=queries)
    assert (result.result, result.explanation) == (SpfVerdict.SOFTFAIL, None)
    assert ("why.example.com", "TXT") not in queries


def test_exp_of_an_included_record_is_not_used_and_redirect_takes_the_targets():
    zones = _exp_zones("v=spf1 -include:example.org -all exp=why.example.com")
    zones["example.org"] += '@ TXT "v=spf1 +all exp=other.example.org"\nother TXT "from org"\n'
    assert _check(zones, "192.0.2.1").explanation.startswith("192.0.2.1 is not")
    zones = _exp_zones("v=spf1 exp=why.example.com redirect=example.org")
    zones["example.org"] += '@ TXT "v=spf1 -all exp=other.example.org"\nother TXT "from org"\n'
    assert _check(zones, "192.0.2.1").explanation == "from org"
    zones = _exp_zones("v=spf1 exp=why.example.com redirect=example.org")
    zones["example.org"] += '@ TXT "v=spf1 -all"\n'
    assert _check(zones, "192.0.2.1").explanation is None  # §6.2: not the original's exp


# --- §4.6.4: the DNS look-up limits ------------------------------------------------------------


def _chain(count: int) -> dict[str, str]:
    """example.com includes i1 ... i`count` in turn; the last one passes everything."""
    zones = _zones("v=spf1 include:i1.example.com -all" if count else "v=spf1 +all")
    for n in range(1, count + 1):
        last = n == count
        body = "v=spf1 +all" if last else f"v=spf1 include:i{n + 1}.example.com -all"
        zones["example.com"] += f'i{n} TXT "{body}"\n'
    return zones


def test_ten_dns_terms_are_allowed_the_eleventh_is_permerror():
    assert _check(_chain(10), "192.0.2.1").result is SpfVerdict.PASS
    result = _check(_chain(11), "192.0.2.1")
    assert result.result is SpfVerdict.PERMERROR
    assert "more than 10" in result.problem


def test_each_dns_mechanism_and_redirect_counts_but_ip_and_all_do_not():
    # 192.0.2.140 (mail-c.example.org) matches none of these and none is void
    nine = "a mx ptr a:amy.example.com a mx ptr a mx"
    zones = _zones(f"v=spf1 ip4:198.51.100.0/24 {nine} ip6:::1 redirect=example.org")
    zones["example.org"] += '@ TXT "v=spf1 +all"\n'
    assert _check(zones, "192.0.2.140").result is SpfVerdict.PASS  # 9 + the redirect
    zones = _zones(f"v=spf1 {nine} a redirect=example.org")
    zones["example.org"] += '@ TXT "v=spf1 +all"\n'
    result = _check(zones, "192.0.2.140")
    assert result.result is SpfVerdict.PERMERROR  # 10 + the redirect
    assert result.problem.startswith("redirect=example.org: more than 10")
    # §4.6.4: only terms evaluated count; a match before the limit decides
    zones = _zones(f"v=spf1 {nine} a ip4:192.0.2.140 a a")
    assert _check(zones, "192.0.2.140").result is SpfVerdict.PASS


def test_an_include_loop_ends_in_permerror():
    zones = _zones("v=spf1 include:example.com -all")
    assert _check(zones, "192.0.2.1").result is SpfVerdict.PERMERROR
    zones = _zones("v=spf1 redirect=example.com")
    assert _check(zones, "192.0.2.1").result is SpfVerdict.PERMERROR


def test_the_third_void_look_up_is_permerror():
    two = "v=spf1 a:n1.example.com mx:n2.example.com ip4:192.0.2.1 -all"
    assert _result(two, "192.0.2.1") is SpfVerdict.PASS
    assert _result(two, "192.0.2.2") is SpfVerdict.FAIL
    three = "v=spf1 a:n1.example.com mx:n2.example.com exists:n3.example.com ip4:192.0.2.1 -all"
    result = _check(_zones(three), "192.0.2.1")
    assert result.result is SpfVerdict.PERMERROR
    assert "void" in result.problem
    # NoData (the name exists, no records of the type) is void as well as NXDOMAIN
    nodata = (
        "v=spf1 a:amy.example.com/0//0 a:www.example.com mx:amy.example.com a:bob.example.com -all"
    )
    zones = _zones(nodata)
    assert _check(zones, "2001:db8::1").result is SpfVerdict.PERMERROR
    assert _check(zones, "192.0.2.1").result is SpfVerdict.PASS


def test_mx_with_more_than_ten_records_is_permerror():
    def zones(count: int) -> dict[str, str]:
        text = "".join(f"@ MX {n} m{n}\nm{n} A 192.0.2.{n}\n" for n in range(1, count + 1))
        return {"many.example": text + '@ TXT "v=spf1 mx -all"\n'}

    assert _check(zones(10), "192.0.2.10", domain="many.example").result is SpfVerdict.PASS
    eleven = _check(zones(11), "192.0.2.1", domain="many.example")
    assert eleven.result is SpfVerdict.PERMERROR
    assert "11 MX records" in eleven.problem


def test_mx_has_no_implicit_mx():
    # §5.4: a name without MX records does not stand for its own A records here
    assert _result("v=spf1 mx:amy.example.com -all", "192.0.2.65") is SpfVerdict.FAIL
    assert _result("v=spf1 a:amy.example.com -all", "192.0.2.65") is SpfVerdict.PASS


def test_mx_targets_without_addresses_are_skipped_not_void():
    zones = {"mxs.example": "@ MX 1 gone\n@ MX 2 gone2\n@ MX 3 gone3\n@ MX 4 ok\nok A 192.0.2.4\n"}
    zones["mxs.example"] += '@ TXT "v=spf1 mx -all"\n'
    assert _check(zones, "192.0.2.4", domain="mxs.example").result is SpfVerdict.PASS


def test_ptr_validates_only_the_first_ten_names():
    reverse = "".join(f"5 PTR h{n}.ptr.example.\n" for n in range(1, 12))
    names = "".join(f"h{n} A {'192.0.2.5' if n == 11 else '198.51.100.1'}\n" for n in range(1, 12))

    def verdict(record: str) -> SpfVerdict:
        zones = {"2.0.192.in-addr.arpa": reverse, "ptr.example": names + f'@ TXT "{record}"\n'}
        return _check(zones, "192.0.2.5", domain="ptr.example").result

    # only h11 (after the tenth) has the address; its name is never validated
    assert verdict("v=spf1 ptr -all") is SpfVerdict.FAIL
    assert verdict("v=spf1 ptr:h11.ptr.example -all") is SpfVerdict.FAIL


# --- §2.6.6, §5: DNS errors in mechanisms --------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 a:down.example.net -all",
        "v=spf1 mx:down.example.net -all",
        "v=spf1 exists:down.example.net -all",
        "v=spf1 include:down.example.net -all",
        "v=spf1 redirect=down.example.net",
    ],
)
def test_temporary_dns_failures_are_temperror(record):
    result = _check(_zones(record), "192.0.2.1", servfail={"down.example.net"})
    assert result.result is SpfVerdict.TEMPERROR
    assert "down.example.net" in result.problem
    result = _check(_zones(record), "192.0.2.1", timeout={"down.example.net"})
    assert result.result is SpfVerdict.TEMPERROR


def test_temporary_failure_on_an_mx_target_is_temperror():
    zones = _zones("v=spf1 mx:example.org -all")
    zones["example.org"] = "@ MX 10 mx.down.example.net.\n"
    assert _check(zones, "192.0.2.1", servfail={"down.example.net"}).result is SpfVerdict.TEMPERROR


def test_ptr_dns_errors_only_mean_no_match():
    # §5.5: a failed PTR look-up is no match; a failed address look-up skips the name
    zones = _zones("v=spf1 ptr ip4:192.0.2.65 -all")
    assert (
        _check(zones, "192.0.2.65", servfail={"2.0.192.in-addr.arpa"}).mechanism == "ip4:192.0.2.65"
    )
    assert _check(zones, "192.0.2.65", servfail={"amy.example.com"}).mechanism == "ip4:192.0.2.65"
    assert _check(zones, "192.0.2.65").mechanism == "ptr"


# --- §5.7: exists ----------------------------------------------------------------------------


def test_exists_looks_up_a_records_even_for_ipv6_clients():
    zones = _zones("v=spf1 exists:%{ir}.%{v}.list.example.com -all")
    nibbles = ipaddress.ip_address("2001:db8::1").reverse_pointer.removesuffix(".ip6.arpa")
    zones["example.com"] += f"{nibbles}.ip6.list A 127.0.0.2\n"
    assert _check(zones, "2001:db8::1").result is SpfVerdict.PASS
    queries: list[tuple[str, str]] = []
    assert _check(zones, "2001:db8::2", queries=queries).result is SpfVerdict.FAIL
    assert queries[-1][1] == "A"


# --- §2.3, §2.4: the HELO identity, the null reverse-path ------------------------------------


def test_helo_and_null_sender():
    zones = _zones(None)
    zones["example.com"] += 'mx TXT "v=spf1 exists:%{l}.%{o}.%{h}.ok.example.com -all"\n'
    zones["example.com"] += "mx A 192.0.2.25\n"
    zones["example.com"] += "postmaster.mx.example.com.mx.example.com.ok A 127.0.0.2\n"
    resolver = FakeResolver(zones)
    helo = asyncio.run(check_helo("192.0.2.25", "mx.example.com", resolver, now=NOW))
    assert helo.result is SpfVerdict.PASS  # <sender> is postmaster@HELO
    null = asyncio.run(check_mail_from("192.0.2.25", "", "mx.example.com", resolver, now=NOW))
    assert (null.result, null.domain) == (SpfVerdict.PASS, "mx.example.com")
    other = asyncio.run(
        check_mail_from("192.0.2.25", "a@mx.example.com", "mx.example.com", resolver, now=NOW)
    )
    assert other.result is SpfVerdict.FAIL  # %{l} is "a" now
    literal = asyncio.run(check_helo("192.0.2.25", "[192.0.2.25]", resolver, now=NOW))
    assert literal.result is SpfVerdict.NONE  # an address literal is not a domain


# --- §7.2 "p", §7.3 the 253-octet rule ------------------------------------------------------------


def test_p_macro_is_a_validated_name_preferably_in_domain():
    zones = _zones("v=spf1 exists:%{p}.names.example.com -all")
    zones["example.com"] += "amy.example.com.names A 127.0.0.2\nunknown.names A 127.0.0.2\n"
    passed = _check(zones, "192.0.2.65")
    assert passed.result is SpfVerdict.PASS
    queries: list[tuple[str, str]] = []
    assert _check(zones, "10.0.2.22", queries=queries).result is SpfVerdict.PASS  # "unknown"
    assert ("unknown.names.example.com", "A") in queries


def test_an_expanded_name_over_253_octets_loses_labels_on_the_left():
    zones = _zones("v=spf1 exists:%{l}.x.example.com -all")
    local = ".".join(["abcdefghi"] * 30)  # 299 octets
    queries: list[tuple[str, str]] = []
    _check(zones, "192.0.2.1", sender=f"{local}@example.com", queries=queries)
    looked_up = queries[-1][0]
    assert len(looked_up) <= 253
    assert looked_up.endswith("abcdefghi.x.example.com")
    assert len(looked_up) > 253 - 10


# --- §4.6.1, §3.1: terms, modifier names, 7-bit records ----------------------------------------


def test_modifier_names_and_terms_that_only_look_like_modifiers():
    # §4.6.1: a modifier's "=" comes right after its name, before any ":" or "/"
    parse_record("v=spf1 x-y_z.w=anything:at/all ip4:192.0.2.1 -all")  # an unknown modifier
    for record in (
        "v=spf1 x/y=z -all",
        "v=spf1 x:y=z -all",
        "v=spf1 redirect:example.org",  # redirect is a modifier, not a mechanism
        "v=spf1 =x -all",
    ):
        with pytest.raises(SpfSyntaxError):
            parse_record(record)


def test_records_are_seven_bit():
    for record in ("v=spf1 a:\u00e9.example.com -all", "v=spf1 \u0080a -all", "v=spf1 -all\u0096"):
        with pytest.raises(SpfSyntaxError):
            parse_record(record)
    # other TXT records are none of SPF's business (§4.5)
    assert select_record(["\u0096", "v=spf1 -all"]) == "v=spf1 -all"


def test_names_are_followed_through_cnames():
    # Appendix A's www is a CNAME of example.com; the resolver follows it (pigeon.dns.api)
    assert _result("v=spf1 a:www.example.com -all", "192.0.2.10") is SpfVerdict.PASS
    assert _result("v=spf1 mx:www.example.com -all", "192.0.2.129") is SpfVerdict.PASS


def test_the_checked_domain_itself_is_never_macro_expanded():
    # §4.3, §5.3: <domain> comes from the client; only domain-specs in records are expanded
    zones = _zones(None)
    zones["example.com"] += '%{i} TXT "v=spf1 a -all"\n192.0.2.99 A 192.0.2.99\n'
    queries: list[tuple[str, str]] = []
    result = _check(zones, "192.0.2.99", domain="%{i}.example.com", queries=queries)
    assert result.result is SpfVerdict.FAIL
    assert queries == [("%{i}.example.com", "TXT"), ("%{i}.example.com", "A")]


# --- the same zones through a real DNS server on loopback (StubResolver, dnspython) ------------


def test_appendix_a_through_a_real_dns_server_on_loopback():
    record = "v=spf1 mx include:mobile-users._spf.%{d} ptr:example.org -all exp=why.%{d}"
    zones = _zones(None)
    zones["example.com"] += (
        f'@ TXT "{record[:30]}" "{record[30:]}"\n'  # two character-strings, joined (§3.3)
        'mobile-users._spf TXT "v=spf1 exists:%{l1r+}.%{d}"\n'
        "mary.mobile-users._spf A 127.0.0.2\n"
        'why TXT "%{i} may not send for %{d}"\n'
        'broken TXT "v=spf1 a:down.example.net -all"\n'
    )
    with DnsServer(zones=zones, servfail={"down.example.net"}) as server:
        config = DeliveryConfig(
            dns_servers=(Nameserver("127.0.0.1", server.port),), dns_timeout=2.0
        )
        resolver = StubResolver.from_config(config)

        def check(ip: str, sender: str, domain: str = "example.com"):
            return asyncio.run(check_host(ip, domain, sender, "h.example.net", resolver, now=NOW))

        assert check("192.0.2.129", "x@example.com").mechanism == "mx"
        assert (
            check("203.0.113.5", "mary@example.com").mechanism == "include:mobile-users._spf.%{d}"
        )
        assert check("192.0.2.140", "x@example.com").mechanism == "ptr:example.org"
        refused = check("192.0.2.65", "x@example.com")
        assert (refused.result, refused.explanation) == (
            SpfVerdict.FAIL,
            "192.0.2.65 may not send for example.com",
        )
        broken = check("192.0.2.65", "x@broken.example.com", domain="broken.example.com")
        assert broken.result is SpfVerdict.TEMPERROR


def test_the_p_macro_is_looked_up_once_per_check():
    zones = _zones("v=spf1 a:%{p}.one.example.com a:%{p}.two.example.com redirect=%{p}")
    zones["example.com"] += 'amy TXT "v=spf1 exists:%{p}.three.example.com -all"\n'
    zones["example.com"] += "amy.example.com.three A 127.0.0.2\n"
    queries: list[tuple[str, str]] = []
    assert _check(zones, "192.0.2.65", queries=queries).result is SpfVerdict.PASS
    assert queries.count(("65.2.0.192.in-addr.arpa", "PTR")) == 1

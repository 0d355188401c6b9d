"""The pure parts of the inbound checks: the From domain, DMARC records and
alignment (RFC 7489), the organizational domain, the Authentication-Results
field (RFC 8601), and the [mail_auth] keys."""

from __future__ import annotations

import pytest

from pigeon.config import load_config
from pigeon.config._checks import ConfigError
from pigeon.policy.mailauth.authres import Resinfo, claims, format_results
from pigeon.policy.mailauth.dmarc import DmarcPolicy, _parse, author_domain, evaluate
from pigeon.policy.mailauth.orgdomain import OrgDomains

ORGS = OrgDomains()


@pytest.mark.parametrize(
    ("headers", "domain", "problem"),
    [
        ([("From", "Alice <alice@Example.ORG>")], "example.org", ""),
        ([("From", "a@example.org, b@example.org")], "example.org", ""),
        ([("From", "a@example.org, b@other.example")], "", "different domains"),
        ([("From", "a@example.org"), ("from", "b@example.org")], "", "more than one"),
        ([("To", "a@example.org")], "", "no From"),
        ([("From", "undisclosed")], "", "no address"),
    ],
)
def test_the_one_from_domain(headers, domain, problem):
    found = author_domain(headers)
    assert found.domain == domain and problem in found.problem
    assert found.ambiguous == (problem in ("different domains", "more than one"))


def test_dmarc_records_parse_as_rfc_7489_section_6_3_says():
    full = _parse("example.org", "v=DMARC1; p=Reject; sp=none; pct=20; adkim=s; aspf=s")
    assert (full.p, full.sp, full.pct, full.adkim, full.aspf) == ("reject", "none", 20, "s", "s")
    plain = _parse("example.org", "v=DMARC1; p=quarantine")
    assert (plain.sp, plain.pct, plain.adkim) == ("quarantine", 100, "r")
    assert _parse("example.org", "v=DMARC1; p=bogus") is None  # §6.6.3 step 6
    assert _parse("example.org", "v=DMARC1; rua=mailto:d@example.org").p == "none"
    assert _parse("example.org", "v=spf1 -all") is None


def _policy(**kw) -> DmarcPolicy:
    values = {"domain": "example.org", "p": "reject", "sp": "reject"} | kw
    return DmarcPolicy(**values)


def test_alignment_relaxed_and_strict():
    relaxed = evaluate(_policy(), "example.org", ("pass", "mail.example.org"), [], ORGS, sample=0)
    assert relaxed.result == "pass" and relaxed.spf_aligned
    strict = evaluate(
        _policy(aspf="s"), "example.org", ("pass", "mail.example.org"), [], ORGS, sample=0
    )
    assert strict.result == "fail" and strict.policy == "reject"
    dkim = evaluate(
        _policy(adkim="s"), "example.org", ("none", ""), [("pass", "example.org")], ORGS, sample=0
    )
    assert dkim.result == "pass" and dkim.dkim_aligned and not dkim.spf_aligned
    public = evaluate(_policy(), "example.co.uk", ("pass", "other.co.uk"), [], ORGS, sample=0)
    assert public.result == "fail"  # co.uk is a public suffix, not an organisation


def test_subdomain_policy_pct_and_temperror():
    sub = evaluate(
        _policy(sp="quarantine"), "a.example.org", ("fail", "x.test"), [], ORGS, sample=0
    )
    assert sub.policy == "quarantine"  # found at the organizational domain: sp=
    own = evaluate(_policy(sp="none"), "example.org", ("fail", "x.test"), [], ORGS, sample=0)
    assert own.policy == "reject"
    sampled = evaluate(_policy(pct=50), "example.org", ("none", ""), [], ORGS, sample=50)
    assert (sampled.policy, sampled.sampled_out) == ("quarantine", True)
    kept = evaluate(_policy(pct=50), "example.org", ("none", ""), [], ORGS, sample=49.9)
    assert (kept.policy, kept.sampled_out) == ("reject", False)
    temp = evaluate(
        _policy(), "example.org", ("none", ""), [("temperror", "example.org")], ORGS, sample=0
    )
    assert temp.result == "temperror"
    unrelated = evaluate(
        _policy(), "example.org", ("none", ""), [("temperror", "x.test")], ORGS, sample=0
    )
    assert unrelated.result == "fail"  # that key could not have made it pass


def test_the_organizational_domain_from_a_list_file(tmp_path):
    assert ORGS.org("a.b.example.co.uk") == "example.co.uk"
    listed = tmp_path / "psl.dat"
    listed.write_text("// a local list\nexample.org\n")
    assert OrgDomains(listed).org("a.b.example.org") == "b.example.org"


def test_the_authentication_results_value():
    value = format_results(
        "mx.example.test",
        [
            Resinfo("spf", "pass", "ok", (("smtp.mailfrom", "alice@example.org"),)),
            Resinfo("dkim", "fail", props=(("header.d", "example.org"),), reason='bad "sig"'),
            Resinfo("dmarc", "none", "x (y) z", (("header.from", "a b"),)),
        ],
    )
    assert value == (
        "mx.example.test;\r\n\tspf=pass (ok) smtp.mailfrom=alice@example.org;"
        '\r\n\tdkim=fail reason="bad \\"sig\\"" header.d=example.org;'
        '\r\n\tdmarc=none (x  y  z) header.from="a b"'
    )
    assert format_results("mx.example.test", []) == "mx.example.test; none"


def test_which_fields_claim_our_authserv_id():
    assert claims("mx.example.test; spf=pass", "MX.example.test")
    assert claims("(forged) mx.example.test 1; spf=pass", "mx.example.test")
    assert not claims("mx.example.test.evil; spf=pass", "mx.example.test")
    assert not claims("", "mx.example.test")


@pytest.mark.parametrize(
    ("mail_auth", "key", "says"),
    [
        ({"spf": "reject"}, "mail_auth.spf", '"off", "annotate", "enforce"'),
        ({"quarantine_folder": "Junk"}, "mail_auth.quarantine_folder", "Maildir++"),
        ({"quarantine_folder": ".a/../b"}, "mail_auth.quarantine_folder", "Maildir++"),
        ({"max_key_bits": 1000}, "mail_auth.max_key_bits", "min_key_bits"),
        (
            {"public_suffix_list": "/nonexistent/psl.dat"},
            "mail_auth.public_suffix_list",
            "no such file",
        ),
        ({"domains": {"example.org": {"spff": "off"}}}, "spff", "unknown key"),
        (
            {"trusted_arc_sealers": ["not a domain"]},
            "mail_auth.trusted_arc_sealers",
            "not a domain",
        ),
        ({"dns_failure": "pass"}, "mail_auth.dns_failure", "tempfail"),
    ],
)
def test_bad_mail_auth_keys_are_refused_naming_the_key(mail_auth, key, says):
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"mail_auth": mail_auth})
    assert key in str(caught.value) and says in str(caught.value)


def test_defaults_and_domain_overrides():
    config = load_config(overrides={"mail_auth": {"domains": {"Example.ORG": {"dmarc": "off"}}}})
    auth = config.mail_auth
    assert (auth.spf, auth.dkim, auth.dmarc, auth.arc) == (
        "annotate",
        "annotate",
        "enforce",
        "annotate",
    )
    assert (auth.dns_failure, auth.quarantine_folder, auth.authserv_id) == ("tempfail", ".Junk", "")
    assert auth.policies_for("example.org").dmarc == "off"
    assert auth.policies_for("example.org").spf == "annotate"  # not given: the server's
    assert auth.policies_for("other.test") == auth.policies


def test_the_stage_is_composed_when_a_check_is_on_and_dns_can_be_asked():
    from pigeon.policy.build import PolicyDeps, build_pipeline
    from pigeon.routing.resolve import Router
    from pigeon.testing.fakedns import FakeResolver

    config = load_config(overrides={"mail_auth": {"domains": {"example.org": {"spf": "enforce"}}}})
    with_dns = PolicyDeps(Router(config), resolver=FakeResolver({}))
    pipeline = build_pipeline(config, with_dns)
    assert pipeline.stage_checks("end_of_data")[0] == "MailAuth"
    rcpt = pipeline.stage_checks("rcpt")
    assert rcpt.index("MailAuth") > rcpt.index("LocalRecipients")  # 550s before our 452
    assert "MailAuth" not in build_pipeline(config, PolicyDeps(Router(config))).stage_checks(
        "end_of_data"
    )
    off = load_config(
        overrides={"mail_auth": {"spf": "off", "dkim": "off", "dmarc": "off", "arc": "off"}}
    )
    assert "MailAuth" not in build_pipeline(
        off, PolicyDeps(Router(off), resolver=FakeResolver({}))
    ).stage_checks("end_of_data")

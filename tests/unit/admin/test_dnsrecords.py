"""pigeon.admin.dnsrecords: the records a domain needs, judged against zones in memory."""

from __future__ import annotations

import asyncio

import pytest

from pigeon.admin.dnsrecords import check, our_addresses, wanted, zone_line
from pigeon.config.dkim import DkimConfig
from pigeon.config.schema import Config, DeliveryConfig, ListenAddress
from pigeon.signing.keys import generate
from pigeon.testing.fakedns import FakeResolver


@pytest.fixture
def config(tmp_path):
    generate(tmp_path / "dkim", "example.test", "s1")
    return Config(
        hostname="mail.example.test",
        data_dir=tmp_path,
        dkim=DkimConfig(key_dir=tmp_path / "dkim"),
        delivery=DeliveryConfig(own_addresses=("192.0.2.25",)),
    )


def _zone(config, records) -> dict[str, str]:
    lines = [zone_line(r.name, r.rtype, r.value) for r in records if not r.value.startswith("<")]
    lines.append("mta-sts.example.test. IN A 192.0.2.80")
    forward = [line for line in lines if "in-addr.arpa" not in line]
    reverse = [line for line in lines if "in-addr.arpa" in line]
    return {"example.test": "\n".join(forward), "2.0.192.in-addr.arpa": "\n".join(reverse)}


def _findings(config, records, zones):
    return asyncio.run(check(records, FakeResolver(zones)))


def test_every_kind_is_wanted(config):
    records = wanted(config, "example.test", our_addresses(config))
    kinds = [r.kind for r in records]
    for kind in ("MX", "A", "SPF", "DKIM", "DMARC", "MTA-STS", "TLS-RPT", "PTR"):
        assert kind in kinds
    spf = next(r for r in records if r.kind == "SPF")
    assert spf.value == "v=spf1 mx ip4:192.0.2.25 -all"
    dmarc = next(r for r in records if r.kind == "DMARC")
    assert dmarc.value == "v=DMARC1; p=none; rua=mailto:dmarc-reports@example.test"


def test_without_an_address_spf_is_mx_and_no_ptr(config):
    records = wanted(config, "example.test", [])
    assert next(r for r in records if r.kind == "SPF").value == "v=spf1 mx -all"
    assert not [r for r in records if r.kind in ("PTR", "A")]


def test_the_helo_name_gets_its_own_spf_record(config):
    # RFC 7208 §2.3: receivers check the HELO identity too; ours is `hostname`.
    records = wanted(config, "example.test", our_addresses(config))
    helo = [r for r in records if r.kind == "SPF" and r.name == "mail.example.test"]
    assert [r.value for r in helo] == ["v=spf1 ip4:192.0.2.25 -all"]
    without = wanted(config, "example.test", [])
    assert [r.value for r in without if r.name == "mail.example.test" and r.kind == "SPF"] == [
        "v=spf1 a -all"
    ]
    # A domain whose name is the host itself needs no second record.
    same = wanted(config, "mail.example.test", our_addresses(config))
    assert len([r for r in same if r.kind == "SPF"]) == 1


def test_loopback_and_wildcard_listen_addresses_are_not_ours(tmp_path):
    config = Config(
        listen=(ListenAddress("0.0.0.0", 25), ListenAddress("127.0.0.1", 25)),
        submission_listen=(ListenAddress("198.51.100.7", 587),),
    )
    assert our_addresses(config) == ["198.51.100.7"]


def test_all_published_is_all_ok(config):
    records = wanted(config, "example.test", our_addresses(config))
    findings = _findings(config, records, _zone(config, records))
    assert [(f.wanted.kind, f.status) for f in findings if f.status != "ok"] == []


def test_each_missing_record_is_named(config):
    records = wanted(config, "example.test", our_addresses(config))
    zones = _zone(config, records)
    zones["example.test"] = "\n".join(
        line for line in zones["example.test"].splitlines() if "_dmarc" not in line
    )
    del zones["2.0.192.in-addr.arpa"]
    findings = {(f.wanted.kind, f.status) for f in _findings(config, records, zones)}
    assert ("DMARC", "missing") in findings and ("PTR", "missing") in findings
    assert ("MX", "ok") in findings


def test_spf_that_does_not_pass_our_address_is_wrong(config):
    records = wanted(config, "example.test", our_addresses(config))
    zones = _zone(config, records)
    zones["example.test"] = zones["example.test"].replace(
        "v=spf1 mx ip4:192.0.2.25 -all", "v=spf1 ip4:203.0.113.1 -all"
    )
    spf = next(f for f in _findings(config, records, zones) if f.wanted.kind == "SPF")
    assert spf.status == "wrong" and "fail for 192.0.2.25" in spf.detail


def test_ptr_not_forward_confirmed_is_wrong(config):
    records = wanted(config, "example.test", our_addresses(config))
    zones = _zone(config, records)
    zones["example.test"] = zones["example.test"].replace(
        "mail.example.test. IN A 192.0.2.25", "mail.example.test. IN A 192.0.2.99"
    )
    ptr = next(f for f in _findings(config, records, zones) if f.wanted.kind == "PTR")
    assert ptr.status == "wrong" and "forward-confirmed" in ptr.detail


def test_a_dns_timeout_is_unknown_never_ok(config):
    records = wanted(config, "example.test", our_addresses(config))
    resolver = FakeResolver(_zone(config, records), timeout={"example.test"})
    findings = asyncio.run(check(records, resolver))
    assert {f.status for f in findings if f.wanted.name.endswith("example.test")} == {"unknown"}


def test_long_txt_values_are_cut_into_255_octet_strings():
    line = zone_line("s._domainkey.example.test", "TXT", "x" * 600)
    assert line.count('"') == 6 and '"' + "x" * 255 + '"' in line

"""`pigeon dns DOMAIN [--check]` against a real DNS server on loopback.

The records `pigeon dkim keygen` and `pigeon dns` print are published as
printed (plus the MTA-STS web host, which the operator fills in); `--check`,
asking through pigeon's own resolver (delivery.dns_servers), then finds them
all; with records taken out of the zone it names each missing one and exits 1.
"""

from __future__ import annotations

import pytest
from dkim_helpers import zone_records

from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.live import PigeonProcess

pytestmark = pytest.mark.e2e

PTR_ZONE = "127.in-addr.arpa"


def _operator(tmp_path, dns_port: int) -> PigeonProcess:
    """A configuration for mail.example.test at 127.0.0.1, asking our DNS server."""
    return PigeonProcess(
        tmp_path / "p",
        '[domains."example.test"]\n'
        f'[dkim]\nkey_dir = "{tmp_path / "dkim"}"\n'
        f'[delivery]\ndns_servers = ["127.0.0.1:{dns_port}"]\nown_addresses = ["127.0.0.1"]\n',
        hostname="mail.example.test",
    )


def _zones(lines: list[str]) -> dict[str, str]:
    """Published records split into the example.test and reverse zones."""
    forward = [line for line in lines if not line.split()[0].endswith(PTR_ZONE + ".")]
    reverse = [line for line in lines if line.split()[0].endswith(PTR_ZONE + ".")]
    return {"example.test": "\n".join(forward) + "\n", PTR_ZONE: "\n".join(reverse) + "\n"}


def _published(tmp_path) -> tuple[PigeonProcess, list[str]]:
    """keygen, then every record `pigeon dns` prints, as the operator publishes them."""
    with DnsServer() as placeholder:  # only for a configuration to print from
        proc = _operator(tmp_path, placeholder.port)
        made = proc.command("dkim", "keygen", "example.test", text=True)
        assert made.returncode == 0, made.stderr
        printed = proc.command("dns", "example.test", text=True)
    assert printed.returncode == 0, printed.stderr
    records = zone_records(printed.stdout).splitlines()
    # The one value the operator fills in: the web server of mta-sts.example.test.
    records.append("mta-sts.example.test. IN A 127.0.0.1")
    # The keygen output and the dns output agree on the DKIM records.
    assert set(zone_records(made.stdout).splitlines()) <= set(records)
    return proc, records


def _check(tmp_path, lines: list[str]):
    with DnsServer(zones=_zones(lines)) as server:
        proc = _operator(tmp_path, server.port)  # same files, this server's port
        return proc.command("dns", "example.test", "--check", text=True)


def test_dns_check_reports_every_record_present_when_all_are_published(tmp_path):
    _, records = _published(tmp_path)
    kinds = {line.split(" IN ")[1].split()[0] for line in records}
    assert kinds == {"MX", "A", "TXT", "PTR"}, records
    done = _check(tmp_path, records)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(line.startswith("ok ") for line in lines), done.stdout
    for kind in ("MX", "A", "SPF", "DKIM", "DMARC", "MTA-STS", "TLS-RPT", "PTR"):
        assert any(line.split()[1] == kind for line in lines), (kind, done.stdout)
    assert sum(line.split()[1] == "DKIM" for line in lines) == 2  # rsa and ed25519


def test_dns_check_names_each_missing_record(tmp_path):
    _, records = _published(tmp_path)
    removed = ("_dmarc.", "-ed25519._domainkey.", "_mta-sts.", "_smtp._tls.", "in-addr.arpa.")
    kept = [line for line in records if not any(part in line.split()[0] for part in removed)]
    kept = [line for line in kept if "v=spf1" not in line]
    done = _check(tmp_path, kept)
    assert done.returncode == 1, done.stdout + done.stderr
    missing = {
        (line.split()[1], line.split()[2])
        for line in done.stdout.splitlines()
        if line.startswith("missing")
    }
    assert ("SPF", "example.test") in missing
    assert ("DMARC", "_dmarc.example.test") in missing
    assert ("MTA-STS", "_mta-sts.example.test") in missing
    assert ("TLS-RPT", "_smtp._tls.example.test") in missing
    assert any(kind == "DKIM" and "-ed25519." in name for kind, name in missing), done.stdout
    # The PTR zone is empty: the address has no name.
    assert any(
        line.split()[1] == "PTR" and not line.startswith("ok") for line in done.stdout.splitlines()
    )
    # What is still there is still found.
    oks = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("ok")}
    assert {"MX", "A", "DKIM"} <= oks, done.stdout


def test_dns_check_says_a_different_dkim_key_is_wrong(tmp_path):
    _, records = _published(tmp_path)
    other = [
        line.replace("p=MIIB", "p=MIIC", 1) if "-rsa._domainkey." in line else line
        for line in records
    ]
    done = _check(tmp_path, other)
    assert done.returncode == 1
    assert any(
        line.startswith("wrong")
        and "-rsa._domainkey.example.test" in line
        and "not the one" in line
        for line in done.stdout.splitlines()
    ), done.stdout


def test_dns_check_of_an_unanswering_server_exits_75(tmp_path):
    _, records = _published(tmp_path)
    with DnsServer(zones=_zones(records), timeout={"example.test", PTR_ZONE}) as server:
        proc = _operator(tmp_path, server.port)
        config = proc.config_path.read_text()
        proc.config_path.write_text(
            config.replace("[delivery]\n", "[delivery]\ndns_timeout = 0.5\n")
        )
        done = proc.command("dns", "example.test", "--check", text=True)
    assert done.returncode == 75, done.stdout + done.stderr
    assert all(line.startswith("unknown") for line in done.stdout.splitlines()), done.stdout


def test_dns_check_without_dkim_keys_says_dkim_is_missing(tmp_path):
    done = _check(tmp_path, ["example.test. IN MX 10 mail.example.test."])
    assert done.returncode == 1
    assert "missing DKIM    example.test: no keys (pigeon dkim keygen example.test)" in done.stdout

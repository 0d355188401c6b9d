"""`pigeon dns DOMAIN [--check]` against a real DNS server on loopback.

The records `pigeon dkim keygen` and `pigeon dns` print are published as
printed (plus the MTA-STS web host, which the operator fills in), and the
MTA-STS policy file it prints is served over HTTPS by mta-sts.example.test
(WEB:443, a certificate from a test CA the configuration trusts through
`[tls_policy] ca_file`); `--check`, asking through pigeon's own resolver
(delivery.dns_servers), then finds them all; with records taken out of the
zone, or a policy file that is not served or names another MX host, it names
each missing or wrong one and exits 1.
"""

from __future__ import annotations

import re

import pytest
from dkim_helpers import zone_records
from secure_helpers import https_on_443

from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.httpsserver import Answer, HttpsServer
from pigeon.testing.live import PigeonProcess
from pigeon.testing.testca import TestCa

pytestmark = pytest.mark.e2e

PTR_ZONE = "127.in-addr.arpa"
WEB = "127.0.14.1"  # mta-sts.example.test, port 443
POLICY_URL = "https://mta-sts.example.test/.well-known/mta-sts.txt"


def _operator(tmp_path, dns_port: int) -> PigeonProcess:
    """A configuration for mail.example.test at 127.0.0.1, asking our DNS server."""
    return PigeonProcess(
        tmp_path / "p",
        '[domains."example.test"]\n'
        f'[dkim]\nkey_dir = "{tmp_path / "dkim"}"\n'
        f'[delivery]\ndns_servers = ["127.0.0.1:{dns_port}"]\nown_addresses = ["127.0.0.1"]\n'
        f'[tls_policy]\nca_file = "{_ca(tmp_path).ca_file}"\nfetch_timeout = 5.0\n',
        hostname="mail.example.test",
    )


_CAS: dict = {}  # tmp_path -> its test's CA
_POLICIES: dict = {}  # tmp_path -> the policy file `pigeon dns` printed in its test


def _ca(tmp_path) -> TestCa:
    """This test's CA: it signs the policy host's certificate; ca_file trusts it."""
    if tmp_path not in _CAS:
        _CAS[tmp_path] = TestCa(tmp_path / "ca")
    return _CAS[tmp_path]


def _policy_host(tmp_path, policy: bytes | None) -> HttpsServer:
    """mta-sts.example.test on WEB:443 serving `policy` (None: nothing, 404)."""
    cert, key = _ca(tmp_path).issue("mta-sts.example.test")
    answers = {} if policy is None else {"mta-sts.example.test": Answer(policy)}
    return https_on_443(WEB, cert, key, answers)


def _printed_policy(printed: str) -> bytes:
    """The policy file `pigeon dns` prints as comments after its records."""
    after = printed.split("; MTA-STS policy file", 1)[1].splitlines()[1:]
    lines = [re.sub(r"^;   ", "", line) for line in after if line.startswith(";   ")]
    return ("\r\n".join(lines) + "\r\n").encode()


def _zones(lines: list[str]) -> dict[str, str]:
    """Published records split into the example.test and reverse zones."""
    forward = [line for line in lines if not line.split()[0].endswith(PTR_ZONE + ".")]
    reverse = [line for line in lines if line.split()[0].endswith(PTR_ZONE + ".")]
    return {"example.test": "\n".join(forward) + "\n", PTR_ZONE: "\n".join(reverse) + "\n"}


def _published(tmp_path) -> tuple[PigeonProcess, list[str]]:
    """keygen, then every record `pigeon dns` prints, as the operator publishes
    them (the policy file it prints: in `_POLICIES[tmp_path]`)."""
    with DnsServer() as placeholder:  # only for a configuration to print from
        proc = _operator(tmp_path, placeholder.port)
        made = proc.command("dkim", "keygen", "example.test", text=True)
        assert made.returncode == 0, made.stderr
        printed = proc.command("dns", "example.test", text=True)
    assert printed.returncode == 0, printed.stderr
    records = zone_records(printed.stdout).splitlines()
    # The one value the operator fills in: the web server of mta-sts.example.test.
    records.append(f"mta-sts.example.test. IN A {WEB}")
    # The keygen output and the dns output agree on the DKIM records.
    assert set(zone_records(made.stdout).splitlines()) <= set(records)
    _POLICIES[tmp_path] = _printed_policy(printed.stdout)
    return proc, records


def _check(tmp_path, lines: list[str], policy: bytes | None | str = "printed"):
    """`pigeon dns --check` with `lines` published and `policy` served
    ("printed": the file `pigeon dns` printed; None: no file)."""
    served = _POLICIES.get(tmp_path) if policy == "printed" else policy
    with DnsServer(zones=_zones(lines)) as server, _policy_host(tmp_path, served):
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
    # The policy file pigeon printed, served over HTTPS, is valid and names our MX.
    assert f"ok      MTA-STS {POLICY_URL} policy: mode testing, max_age 604800" in lines


def test_dns_check_says_an_unserved_or_wrong_policy_file_is_missing_or_wrong(tmp_path):
    _, records = _published(tmp_path)
    unserved = _check(tmp_path, records, policy=None)
    assert unserved.returncode == 1, unserved.stdout + unserved.stderr
    assert f"missing MTA-STS {POLICY_URL} policy: not served:" in unserved.stdout
    other = b"version: STSv1\r\nmode: enforce\r\nmx: mx.elsewhere.test\r\nmax_age: 86400\r\n"
    wrong = _check(tmp_path, records, policy=other)
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert (
        f"wrong   MTA-STS {POLICY_URL} policy: mx: mx.elsewhere.test does not cover"
        " our MX host mail.example.test"
    ) in wrong.stdout
    broken = _check(tmp_path, records, policy=b"version: STSv1\r\nmode: enforce\r\n")
    assert "wrong   MTA-STS" in broken.stdout and "not a valid policy" in broken.stdout
    # Every other record is still ok: only the policy line is not.
    assert all(
        line.startswith("ok") for line in wrong.stdout.splitlines() if "policy" not in line
    ), wrong.stdout


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

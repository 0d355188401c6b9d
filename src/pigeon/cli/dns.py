"""`pigeon dns DOMAIN [--check]`: the DNS records a mail domain needs, and whether they are there.

Contract:
  * Without --check: prints every record DOMAIN needs for mail sent and
    received by this pigeon (pigeon.admin.dnsrecords: MX, the MX host's
    A/AAAA, SPF, DKIM for the keys pigeon signs with, DMARC, MTA-STS,
    TLS-RPT, PTR), in zone-file form with a comment per kind, and the
    suggested MTA-STS policy file. Nothing is asked of DNS.
  * With --check: asks DNS for each, through pigeon's own resolver
    (`delivery.dns_servers`, else /etc/resolv.conf; `delivery.dns_timeout`
    per look-up), and prints one line per record:
    "ok|missing|wrong|unknown KIND NAME TYPE[: detail]"; then fetches the
    MTA-STS policy file over HTTPS (`[tls_policy] ca_file` and
    `fetch_timeout`, as delivery does) and says whether it is served, valid
    and names our MX host (one more line, "MTA-STS https://... policy").
  * DKIM: the keys pigeon signs with, or those of `--selector S` (a
    rotation: the new records are checked before the switch).
  * Our addresses (for A/AAAA, SPF and PTR): `--address` (repeatable),
    else `delivery.own_addresses` and the listen addresses that are neither
    wildcard nor loopback.
  * A domain without DKIM keys has its DKIM "missing" (--check) or a
    comment saying how to make them.
  * Exit statuses: 0 printed, or (--check) every record found and right;
    1 (--check) a record is missing or wrong; 75 (--check) nothing missing
    or wrong but a look-up failed temporarily (try again); 64 usage;
    73 a DKIM key file cannot be read; 78 configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress

from pigeon.cli._common import EX_CANTCREAT, EX_CONFIG, EX_USAGE, fail
from pigeon.cli._control import add_config_arguments, load
from pigeon.config.load import ConfigError
from pigeon.config.schema import Config

EX_MISSING = 1
EX_TEMPFAIL = 75

HELP = "print the DNS records a mail domain needs; --check asks DNS for them"

DESCRIPTION = """\
Print every DNS record DOMAIN needs to send and receive mail through this
pigeon: MX, the MX host's address, SPF, DKIM (the keys pigeon signs with,
see "pigeon dkim keygen"), DMARC, MTA-STS, TLS-RPT, and the PTR record of
each of our addresses. With --check, look each one up (through pigeon's
resolver: delivery.dns_servers), fetch the MTA-STS policy file over HTTPS,
and say which are missing or wrong.
"""

EPILOG = """\
examples:
  pigeon dns example.org                          the records, in zone-file form
  pigeon dns example.org --check                  one line per record: ok, missing, wrong
  pigeon dns example.org --address 192.0.2.25     our public address (behind NAT)
  pigeon dns example.org --check --selector 202706  the new keys of a rotation

exit status: 0 records printed, or all present and right (--check);
1 a record is missing or wrong; 75 a DNS look-up failed temporarily;
64 usage; 73 a DKIM key cannot be read; 78 configuration error.
See docs/mail-auth.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("domain", metavar="DOMAIN", help="the mail domain")
    parser.add_argument("--check", action="store_true", help="look the records up in DNS")
    parser.add_argument(
        "--selector",
        metavar="S",
        default="",
        help="the DKIM keys of selector S (default: those pigeon signs with)",
    )
    parser.add_argument(
        "--address",
        action="append",
        default=None,
        metavar="IP",
        help="our public address (repeatable; default: from the configuration)",
    )


def config_and_domain(args: argparse.Namespace) -> tuple[Config, str] | int:
    """The configuration and `args.domain` lowercased, or the exit status (error printed)."""
    from pigeon.config._checks import domain_problem

    try:
        config = load(args, need_data_dir=False)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    domain = args.domain.lower().rstrip(".")
    if (problem := domain_problem(domain)) is not None:
        return fail(f"{args.domain!r} is not a domain name ({problem})", EX_USAGE)
    return config, domain


def run(args: argparse.Namespace) -> int:
    from pigeon.admin import dnsrecords as D
    from pigeon.signing.keys import KeyProblem

    loaded = config_and_domain(args)
    if isinstance(loaded, int):
        return loaded
    config, domain = loaded
    try:
        addresses = [str(ipaddress.ip_address(a)) for a in args.address or ()]
    except ValueError as exc:
        return fail(str(exc), EX_USAGE)
    addresses = addresses or D.our_addresses(config)
    try:
        records = D.wanted(config, domain, addresses, args.selector)
    except KeyProblem as exc:
        return fail(str(exc), EX_CANTCREAT)
    if not args.check:
        _print_records(config, domain, records, D)
        return 0
    findings = asyncio.run(_check(config, domain, records))
    for finding in findings:
        record = finding.wanted
        detail = f": {finding.detail}" if finding.detail else ""
        print(f"{finding.status:<8}{record.kind:<8}{record.name} {record.rtype}{detail}")
    statuses = {f.status for f in findings}
    if not any(r.kind == "DKIM" for r in records):  # no keys: no record can be right
        print(f"{'missing':<8}{'DKIM':<8}{domain}: no keys (pigeon dkim keygen {domain})")
        statuses.add("missing")
    if statuses & {"missing", "wrong"}:
        return EX_MISSING
    return EX_TEMPFAIL if "unknown" in statuses else 0


async def _check(config: Config, domain: str, records: list) -> list:
    """Every record looked up, then the MTA-STS policy file fetched over
    HTTPS (trusting `[tls_policy] ca_file`, within `fetch_timeout`)."""
    from pigeon.admin import dnsrecords as D
    from pigeon.delivery.tlspolicy.fetch import fetch_policy
    from pigeon.dns.stub import StubResolver

    resolver = StubResolver.from_config(config.delivery)
    sts = config.tls_policy

    def fetch(name: str):
        return fetch_policy(name, resolver, ca_file=sts.ca_file, timeout=sts.fetch_timeout)

    findings = await D.check(records, resolver)
    findings.append(await D.check_policy(domain, config.hostname, resolver, fetch))
    return findings


def _print_records(config, domain: str, records, D) -> None:
    kind = None
    for record in records:
        if record.kind != kind:
            kind = record.kind
            print(f"\n; {kind}")
        note = f"  ; {record.note}" if record.note else ""
        line = D.zone_line(record.name, record.rtype, record.value)
        # A value to fill in (the web server's address) is a comment until it is.
        print(("; " if record.value.startswith("<") else "") + line + note)
    if not any(r.kind == "DKIM" for r in records):
        print(f"\n; DKIM: no keys for {domain}: make them with pigeon dkim keygen {domain}")
    if not any(r.kind == "PTR" for r in records):
        print("\n; PTR: our public address is unknown: give it with --address IP")
    print(f"\n; MTA-STS policy file, https://mta-sts.{domain}/.well-known/mta-sts.txt:")
    for line in D.mta_sts_policy(config).splitlines():
        print(f";   {line}")

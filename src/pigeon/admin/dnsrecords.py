"""The DNS records a domain that pigeon sends and receives for needs, and their check.

Contract:
  * `wanted(config, domain, addresses)` lists the `Wanted` records, in the
    order `pigeon dns` prints them (docs/mail-auth.md):
      MX      DOMAIN MX 10 <hostname>                      (RFC 5321 §5.1)
      A/AAAA  <hostname> -> each of our addresses           (the MX target)
      SPF     DOMAIN TXT "v=spf1 mx [ip4:A] [ip6:B] -all"    (RFC 7208; `mx -all`
              alone when no address is known), and <hostname> TXT
              "v=spf1 ip4:A -all" (`a -all` without addresses) for the HELO
              identity (RFC 7208 §2.3) when hostname is not DOMAIN itself
      DKIM    <selector>-rsa._domainkey.DOMAIN and <selector>-ed25519._domainkey.DOMAIN
              TXT, from the keys pigeon signs with (pigeon.signing.keys), or
              those of the selector asked for
      DMARC   _dmarc.DOMAIN TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@DOMAIN"
              (RFC 7489 §6.3; p=none first, then quarantine, then reject)
      MTA-STS _mta-sts.DOMAIN TXT "v=STSv1; id=..." (RFC 8461 §3.1; the id is
              a digest of the suggested policy, `mta_sts_policy`), and the
              host mta-sts.DOMAIN that serves https://mta-sts.DOMAIN/.well-known/mta-sts.txt
      TLS-RPT _smtp._tls.DOMAIN TXT "v=TLSRPTv1; rua=mailto:tls-reports@DOMAIN" (RFC 8460 §3)
      PTR     each of our addresses -> <hostname>, forward-confirmed (the
              name's A/AAAA holds the address; RFC 8601 §3 "iprev")
    Our addresses: those given (`pigeon dns --address`), else the IP
    addresses of `delivery.own_addresses` and the listen addresses that
    are neither wildcard nor loopback. No address: no A/AAAA or PTR
    record, and SPF is `mx -all`.
  * `check(wanted, resolver)` asks DNS for each (through the given
    `pigeon.dns.api.Resolver`) and returns one `Finding` per record: "ok",
    "missing", "wrong" (present with another value: the reason says which)
    or "unknown" (DNS failed temporarily). SPF is judged by evaluating it
    (pigeon.policy.spf.check_host) for each of our addresses: it must pass.
  * `check_policy(domain, host, resolver, fetch)`: the MTA-STS policy file
    itself (RFC 8461 §3.3), one `Finding` of kind MTA-STS named by its URL:
    "unknown" when the look-up of mta-sts.DOMAIN failed temporarily,
    "missing" when that host has no address or `fetch(domain)` (an HTTPS
    GET, delivery/tlspolicy/fetch.py: a valid certificate, a 200 answer of
    type text/plain) raises FetchError, "wrong" when the file is not a valid
    policy (§3.2) or its mx: patterns do not cover our MX host `host` (§4.1:
    senders would then refuse to deliver to it in enforce mode), else "ok"
    with its mode and max_age.
  * `zone_line(name, rtype, value)`: a record in zone-file form (RFC 1035
    §5.1), a TXT value cut into character-strings of at most 255 octets
    (RFC 1035 §3.3.14; RSA keys are longer).
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pigeon.config.schema import Config
from pigeon.delivery.tlspolicy.fetch import FetchError, policy_url
from pigeon.delivery.tlspolicy.sts import StsError, parse_policy
from pigeon.dns.api import DnsError, NoData, NoSuchDomain, Resolver, TemporaryFailure
from pigeon.policy.spf import SpfVerdict, check_host
from pigeon.signing.keys import read_pair, selectors

__all__ = [
    "Finding",
    "Wanted",
    "check",
    "check_policy",
    "mta_sts_policy",
    "our_addresses",
    "wanted",
    "zone_line",
]

_WILDCARDS = {"0.0.0.0", "::"}


@dataclass(frozen=True)
class Wanted:
    """One record the domain needs."""

    kind: str  # MX, A, AAAA, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, PTR
    name: str  # owner name, no final dot (an address for PTR)
    rtype: str  # MX, A, AAAA, TXT, PTR
    value: str  # what to publish
    note: str = ""  # printed as a comment after the record


@dataclass(frozen=True)
class Finding:
    wanted: Wanted
    status: str  # ok, missing, wrong, unknown
    detail: str = ""


def our_addresses(config: Config) -> list[str]:
    """Our public addresses as the configuration knows them (module contract)."""
    found: list[str] = []
    candidates = [a.host for a in (*config.listen, *config.submission_listen)]
    candidates += list(config.delivery.own_addresses)
    for text in candidates:
        try:
            ip = ipaddress.ip_address(text.strip("[]"))
        except ValueError:
            continue  # a name in own_addresses
        if str(ip) in _WILDCARDS or (ip.is_loopback and text not in config.delivery.own_addresses):
            continue
        if str(ip) not in found:
            found.append(str(ip))
    return found


def mta_sts_policy(config: Config, mode: str = "testing") -> str:
    """The suggested MTA-STS policy file (RFC 8461 §3.2), CRLF lines."""
    lines = ["version: STSv1", f"mode: {mode}", f"mx: {config.hostname}", "max_age: 604800"]
    return "\r\n".join(lines) + "\r\n"


def wanted(
    config: Config, domain: str, addresses: Sequence[str] = (), selector: str = ""
) -> list[Wanted]:
    """Every record `domain` needs (module contract); `selector`: the DKIM
    keys of that selector instead of those pigeon signs with (a rotation)."""
    domain = domain.lower().rstrip(".")
    host = config.hostname
    out = [Wanted("MX", domain, "MX", f"10 {host}")]
    for ip in addresses:
        rtype = "A" if ipaddress.ip_address(ip).version == 4 else "AAAA"
        out.append(Wanted(rtype, host, rtype, ip, "the MX host's address"))
    mechanisms = ["mx"] + [f"ip{ipaddress.ip_address(ip).version}:{ip}" for ip in addresses]
    out.append(Wanted("SPF", domain, "TXT", f"v=spf1 {' '.join(mechanisms)} -all"))
    if host != domain:  # RFC 7208 §2.3: receivers check the HELO name too (our EHLO is `hostname`)
        helo = [f"ip{ipaddress.ip_address(ip).version}:{ip}" for ip in addresses] or ["a"]
        out.append(Wanted("SPF", host, "TXT", f"v=spf1 {' '.join(helo)} -all", "the HELO name's"))
    out += _dkim(config, domain, selector)
    out.append(
        Wanted(
            "DMARC",
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}",
            "then p=quarantine, then p=reject (docs/mail-auth.md)",
        )
    )
    policy = mta_sts_policy(config)
    digest = hashlib.sha256(policy.encode()).hexdigest()[:20]
    out.append(
        Wanted(
            "MTA-STS",
            f"_mta-sts.{domain}",
            "TXT",
            f"v=STSv1; id={digest}",
            f"policy at https://mta-sts.{domain}/.well-known/mta-sts.txt",
        )
    )
    out.append(
        Wanted(
            "MTA-STS",
            f"mta-sts.{domain}",
            "A",
            "<your web server>",
            "serves the policy file over HTTPS (a CNAME does too)",
        )
    )
    out.append(
        Wanted(
            "TLS-RPT",
            f"_smtp._tls.{domain}",
            "TXT",
            f"v=TLSRPTv1; rua=mailto:tls-reports@{domain}",
        )
    )
    for ip in addresses:
        out.append(Wanted("PTR", ip, "PTR", host, "set by whoever owns the address"))
    return out


def _dkim(config: Config, domain: str, selector: str) -> list[Wanted]:
    """The TXT records of `selector`, else of the pair `domain` signs with (none without keys)."""
    directory = config.dkim_key_dir / domain
    configured = config.dkim.domains.get(domain)
    if not selector and configured is not None:
        selector = configured.selector
    if not selector:
        found = selectors(directory) if directory.is_dir() else []
        if not found:
            return []
        selector = found[0]
    pair = read_pair(directory, domain, selector)  # KeyProblem: the caller says which file
    return [Wanted("DKIM", name, "TXT", value) for name, value in pair.dns_records()]


def zone_line(name: str, rtype: str, value: str) -> str:
    """`name. IN TYPE value` (module contract); PTR owner names are made from the address."""
    owner = ipaddress.ip_address(name).reverse_pointer if rtype == "PTR" else name
    if rtype == "TXT":
        data = value.encode()
        chunks = [data[i : i + 255].decode() for i in range(0, len(data), 255)] or [""]
        rdata = " ".join(f'"{c}"' for c in chunks)
    elif rtype in ("MX", "PTR") and not value.startswith("<"):
        rdata = value + "."
    else:
        rdata = value
    return f"{owner}. IN {rtype} {rdata}"


async def check(records: Sequence[Wanted], resolver: Resolver) -> list[Finding]:
    """Ask DNS for each record (module contract)."""
    findings = []
    for record in records:
        web_host = record.kind == "MTA-STS" and record.rtype == "A"
        judge = _judge_web_host if web_host else _JUDGES.get(record.kind, _judge_txt)
        try:
            findings.append(await judge(record, resolver))
        except (NoSuchDomain, NoData):
            findings.append(Finding(record, "missing"))
        except TemporaryFailure as exc:
            findings.append(Finding(record, "unknown", f"DNS: {exc}"))
        except DnsError as exc:  # any other DnsError: treat as temporary
            findings.append(Finding(record, "unknown", f"DNS: {exc}"))
    return findings


async def check_policy(
    domain: str, host: str, resolver: Resolver, fetch: Callable[[str], Awaitable[str]]
) -> Finding:
    """The MTA-STS policy file of `domain`, fetched and judged (module contract)."""
    record = Wanted("MTA-STS", policy_url(domain), "policy", f"mx: {host}")
    web = f"mta-sts.{domain}"
    try:
        try:
            await resolver.a(web)
        except (NoSuchDomain, NoData):
            await resolver.aaaa(web)
    except (NoSuchDomain, NoData):
        return Finding(record, "missing", f"{web} has no address")
    except DnsError as exc:  # TemporaryFailure and any other: try again later
        return Finding(record, "unknown", f"DNS: {exc}")
    try:
        policy = parse_policy(await fetch(domain))
    except FetchError as exc:
        return Finding(record, "missing", f"not served: {exc}")
    except StsError as exc:
        return Finding(record, "wrong", f"not a valid policy (RFC 8461 §3.2): {exc}")
    if policy.mode != "none" and not policy.allows(host):
        patterns = ", ".join(policy.mx)
        return Finding(record, "wrong", f"mx: {patterns} does not cover our MX host {host}")
    return Finding(record, "ok", f"mode {policy.mode}, max_age {policy.max_age}")


async def _judge_mx(record: Wanted, resolver: Resolver) -> Finding:
    host = record.value.split()[-1]
    exchanges = [mx.exchange for mx in await resolver.mx(record.name)]
    if host in exchanges:
        return Finding(record, "ok")
    return Finding(record, "wrong", f"MX is {', '.join(exchanges)}, not {host}")


async def _judge_address(record: Wanted, resolver: Resolver) -> Finding:
    lookup = resolver.a if record.rtype == "A" else resolver.aaaa
    found = await lookup(record.name)
    if record.value.startswith("<"):  # any address will do (the web server's)
        return Finding(record, "ok")
    if record.value in found:
        return Finding(record, "ok")
    return Finding(record, "wrong", f"{record.rtype} is {', '.join(found)}, not {record.value}")


def _starting(texts: list[str], prefix: str) -> list[str]:
    return [t for t in texts if t.lower().replace(" ", "").startswith(prefix.lower())]


async def _judge_spf(record: Wanted, resolver: Resolver) -> Finding:
    spf = _starting(await resolver.txt(record.name), "v=spf1")
    if not spf:
        return Finding(record, "missing")
    if len(spf) > 1:  # RFC 7208 §4.5: then permerror
        return Finding(record, "wrong", f"{len(spf)} SPF records (RFC 7208 §4.5 allows one)")
    ips = [m.split(":", 1)[1] for m in record.value.split() if m.startswith(("ip4:", "ip6:"))]
    for ip in ips:
        result = await check_host(
            ip, record.name, f"postmaster@{record.name}", record.name, resolver, now=time.time()
        )
        if result.result is not SpfVerdict.PASS:
            return Finding(record, "wrong", f"SPF gives {result.result} for {ip}: {spf[0]}")
    return Finding(record, "ok")


async def _judge_ptr(record: Wanted, resolver: Resolver) -> Finding:
    names = await resolver.ptr(record.name)
    host = record.value
    if host not in names:
        return Finding(record, "wrong", f"PTR is {', '.join(names) or 'empty'}, not {host}")
    ip = ipaddress.ip_address(record.name)
    try:
        forward = await (resolver.a(host) if ip.version == 4 else resolver.aaaa(host))
    except (NoSuchDomain, NoData):
        forward = []
    if str(ip) not in forward:
        return Finding(
            record, "wrong", f"{host} does not resolve back to {ip} (not forward-confirmed)"
        )
    return Finding(record, "ok")


#: The tag each TXT record must start with, by kind.
_TXT_PREFIX = {
    "DKIM": "v=DKIM1",
    "DMARC": "v=DMARC1",
    "MTA-STS": "v=STSv1",
    "TLS-RPT": "v=TLSRPTv1",
}


async def _judge_txt(record: Wanted, resolver: Resolver) -> Finding:
    found = _starting(await resolver.txt(record.name), _TXT_PREFIX[record.kind])
    if not found:
        return Finding(record, "missing")
    if len(found) > 1:
        return Finding(record, "wrong", f"{len(found)} {record.kind} records, one is wanted")
    text = found[0]
    if record.kind == "DKIM" and _tags(text).get("p") != _tags(record.value).get("p"):
        return Finding(record, "wrong", "the published key is not the one pigeon signs with")
    if record.kind == "DMARC" and "p" not in _tags(text):
        return Finding(record, "wrong", "no p= tag (RFC 7489 §6.3)")
    if record.kind == "MTA-STS" and "id" not in _tags(text):
        return Finding(record, "wrong", "no id= tag (RFC 8461 §3.1)")
    if record.kind == "TLS-RPT" and "rua" not in _tags(text):
        return Finding(record, "wrong", "no rua= tag (RFC 8460 §3)")
    return Finding(record, "ok")


async def _judge_web_host(record: Wanted, resolver: Resolver) -> Finding:
    """mta-sts.DOMAIN: an address of either family (or a CNAME to one)."""
    try:
        await resolver.a(record.name)
    except (NoSuchDomain, NoData):
        await resolver.aaaa(record.name)  # NoData/NoSuchDomain: missing
    return Finding(record, "ok")


def _tags(text: str) -> dict[str, str]:
    """tag=value; pairs (RFC 6376 §3.2 syntax, shared by DMARC, MTA-STS and TLS-RPT)."""
    tags = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            tags[name.strip().lower()] = "".join(value.split())
    return tags


_JUDGES: dict[str, Callable[[Wanted, Resolver], Awaitable[Finding]]] = {
    "MX": _judge_mx,
    "A": _judge_address,
    "AAAA": _judge_address,
    "SPF": _judge_spf,
    "PTR": _judge_ptr,
}

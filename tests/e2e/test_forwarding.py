"""Forwarding end to end: SRS and ARC (docs/mail-auth.md, "Forwarding: SRS and ARC").

A real DNS server on loopback holds the SPF records and the ARC key; two
pigeons run as subprocesses:

  first   mx.fwd.test: alias fwd@fwd.test -> bob@dest.test, [srs] and [arc] on,
          dest.test and origin.test routed to second
  second  mx.dest.test: local domains dest.test and origin.test

  fwd.test     SPF "v=spf1 ip4:127.0.0.1 -all", the ARC key at arc1-rsa._domainkey
               (the domain's DKIM RSA key, made by `pigeon dkim keygen`)
  origin.test  SPF "v=spf1 ip4:192.0.2.1 -all" (its own servers only)

A message from alice@origin.test to fwd@fwd.test arrives at bob with an SRS
sender for which SPF passes from 127.0.0.1 (the original would fail) and an
ARC set that dkimpy's arc_verify accepts against the loopback DNS; a bounce
to that SRS address reaches alice; a forged or expired one is refused.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import stat
import subprocess
import sys
import time

import dkim
import dns.resolver
import pytest

from pigeon.dns.stub import StubResolver
from pigeon.forwarding.srs import SrsCodec
from pigeon.policy.spf import SpfVerdict, check_mail_from
from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.live import maildir_messages, wait_for

pytestmark = pytest.mark.e2e

DAY = 86400


def _arc_key(tmp_path):
    """The domain's DKIM keys as a user makes them (`pigeon dkim keygen`): the
    RSA one seals (selector "arc1-rsa"); its printed record goes in the zone."""
    keys = tmp_path / "keys"
    (keys / "data").mkdir(parents=True)
    config = keys / "keygen.toml"
    config.write_text(f'data_dir = "{keys / "data"}"\nhostname = "mx.fwd.test"\n')
    done = subprocess.run(
        [sys.executable, "-m", "pigeon", "dkim", "keygen", "fwd.test", "--selector", "arc1"]
        + ["-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    record = next(
        line
        for line in done.stdout.splitlines()
        if line.startswith("arc1-rsa._domainkey.fwd.test.")
    )
    return keys / "data" / "dkim" / "fwd.test" / "arc1-rsa.key", record


@pytest.fixture
def world(tmp_path, pigeon_factory):
    key_file, key_record = _arc_key(tmp_path)
    zones = {
        "fwd.test": (f'@ TXT "v=spf1 ip4:127.0.0.1 -all"\n{key_record}\nmx A 127.0.0.1\n'),
        "origin.test": '@ TXT "v=spf1 ip4:192.0.2.1 -all"\n',
    }
    with DnsServer(zones=zones) as dns_server:
        second = pigeon_factory(
            '[domains."dest.test"]\n[domains."origin.test"]\n', hostname="mx.dest.test"
        )
        hop = f"smtp:[127.0.0.1]:{second.port}"
        first = pigeon_factory(
            f"""[domains."fwd.test"]
[aliases]
"fwd@fwd.test" = ["bob@dest.test"]
"keep@fwd.test" = ["keep@fwd.test", "bob@dest.test"]
[transports]
"dest.test" = "{hop}"
"origin.test" = "{hop}"
[delivery]
dns_servers = ["127.0.0.1:{dns_server.port}"]
[queue]
run_interval = 1.0
[srs]
enabled = true
domain = "fwd.test"
[arc]
enabled = true
selector = "arc1-rsa"
key_file = "{key_file}"
""",
            hostname="mx.fwd.test",
        )
        yield first, second, dns_server


def _send(server, sender, rcpts, subject="forwarded"):
    body = (
        f"From: Alice <alice@origin.test>\r\nTo: fwd@fwd.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}.{time.time()}@origin.test>\r\n\r\nHello Bob,\r\nforwarded.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.sendmail(sender, rcpts, body)


def _arrived(server, address, count=1):
    return wait_for(
        lambda: (found := maildir_messages(server.data_dir, address)) and len(found) >= count,
        timeout=30,
    ) and [p.read_bytes() for p in maildir_messages(server.data_dir, address)]


def _return_path(message: bytes) -> str:
    first = message.split(b"\n", 1)[0].decode()
    assert first.startswith("Return-Path: <"), first
    return first[len("Return-Path: <") : -1]


def _dnsfunc(port: int):
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port

    def lookup(name, timeout=5):
        text = name.decode() if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(text, "TXT", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)

    return lookup


def _spf(port: int, sender: str) -> SpfVerdict:
    resolver = StubResolver([("127.0.0.1", port)], timeout=5)
    result = asyncio.run(
        check_mail_from("127.0.0.1", sender, "mx.fwd.test", resolver, now=time.time())
    )
    return result.result


def test_forwarded_copy_has_srs_sender_spf_pass_and_valid_arc(world):
    first, second, dns_server = world
    _send(first, "alice@origin.test", ["fwd@fwd.test"])
    (message,) = _arrived(second, "bob@dest.test")
    sender = _return_path(message)
    assert sender.startswith("SRS0=") and sender.endswith("=origin.test=alice@fwd.test"), sender
    # SPF as the next hop sees it: the SRS sender passes, the original would not.
    assert _spf(dns_server.port, sender) == SpfVerdict.PASS
    assert _spf(dns_server.port, "alice@origin.test") == SpfVerdict.FAIL
    # The ARC set, verified by dkimpy against the loopback DNS.
    assert b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=fwd.test; s=arc1-rsa;" in message
    assert b"ARC-Authentication-Results: i=1; mx.fwd.test;" in message
    cv, sets, reason = dkim.arc_verify(message, dnsfunc=_dnsfunc(dns_server.port))
    assert cv == dkim.CV_Pass, reason
    assert len(sets) == 1
    # The secret was made at first start, readable by its owner only.
    secret = first.data_dir / "srs.secret"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600


def test_copy_for_a_local_mailbox_is_neither_rewritten_nor_sealed(world):
    first, second, _ = world
    _send(first, "alice@origin.test", ["keep@fwd.test"], "split")
    (remote,) = _arrived(second, "bob@dest.test")
    (local,) = _arrived(first, "keep@fwd.test")
    assert _return_path(remote).startswith("SRS0=")
    assert _return_path(local) == "alice@origin.test"
    assert b"ARC-Seal:" in remote and b"ARC-Seal:" not in local


def test_own_domain_and_null_senders_are_not_rewritten(world):
    first, second, dns_server = world
    _send(first, "carol@fwd.test", ["fwd@fwd.test"], "own")
    (own,) = _arrived(second, "bob@dest.test")
    assert _return_path(own) == "carol@fwd.test"
    _send(first, "", ["fwd@fwd.test"], "null")
    messages = _arrived(second, "bob@dest.test", count=2)
    assert sorted(_return_path(m) for m in messages) == ["", "carol@fwd.test"]
    for m in messages:  # sealed all the same: they are forwarded copies
        cv, _, reason = dkim.arc_verify(m, dnsfunc=_dnsfunc(dns_server.port))
        assert cv == dkim.CV_Pass, reason


def test_bounce_to_srs_address_reaches_the_original_sender(world):
    first, second, _ = world
    _send(first, "alice@origin.test", ["fwd@fwd.test"])
    (message,) = _arrived(second, "bob@dest.test")
    srs = _return_path(message)
    # What bob's server would do with a bounce: send it to the envelope sender.
    with smtplib.SMTP("127.0.0.1", first.port, timeout=10) as s:
        s.sendmail("", [srs], "From: MAILER-DAEMON@dest.test\r\nSubject: bounce\r\n\r\nfailed\r\n")
    (bounce,) = _arrived(second, "alice@origin.test")
    assert b"Subject: bounce" in bounce
    assert _return_path(bounce) == ""


def _refused(server, rcpt):
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.ehlo("dest.test")
        s.mail("")
        code, text = s.rcpt(rcpt)
    return code, text.decode()


def test_forged_and_expired_srs_addresses_are_refused(world):
    first, _, _ = world
    codec = SrsCodec([(first.data_dir / "srs.secret").read_bytes().strip()], "fwd.test")
    good = codec.forward("alice@origin.test", time.time())
    forged = good.replace("=alice@", "=mallory@")
    code, text = _refused(first, forged)
    assert (code, text[:5]) == (550, "5.7.1"), text
    expired = codec.forward("alice@origin.test", time.time() - 30 * DAY)
    code, text = _refused(first, expired)
    assert (code, text[:5]) == (550, "5.1.1"), text
    assert "expired" in text
    with smtplib.SMTP("127.0.0.1", first.port, timeout=10) as s:
        s.ehlo("dest.test")
        s.mail("")
        assert s.rcpt(good)[0] == 250

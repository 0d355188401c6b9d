"""Shared by the DKIM signing tests: the keys' records as a zone, OpenDKIM as verifier."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dns.resolver
from dns.nameserver import Do53Nameserver

from pigeon.testing.live import require_tool


def zone_records(output: str) -> str:
    """The records printed by `pigeon dkim keygen` / `pigeon dns`: its zone-file
    lines (absolute names), without the comments, as zone text."""
    lines = [line for line in output.splitlines() if line and not line.startswith((";", "wrote"))]
    assert lines, output
    return "\n".join(lines) + "\n"


def published_txt(port: int, names: list[str]) -> dict[str, str]:
    """name -> TXT value as the loopback DNS server serves it (strings joined)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [Do53Nameserver("127.0.0.1", port)]
    found = {}
    for name in names:
        answer = resolver.resolve(name, "TXT", lifetime=10)
        found[name] = b"".join(b"".join(r.strings) for r in answer).decode()
    return found


def opendkim_verify(workdir: Path, message: bytes, keys: dict[str, str]) -> str:
    """OpenDKIM (Debian's, a separate process: `opendkim -t`) verifies `message`
    with the key records `keys` (name -> TXT value, as published); returns the
    Authentication-Results it would add."""
    require_tool("opendkim")
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "testdns"
    data.write_text("".join(f"{name} {value}\n" for name, value in keys.items()))
    conf = workdir / "opendkim.conf"
    conf.write_text(f"Syslog no\nMode v\nTestDNSData file:{data}\n")
    path = workdir / "message.eml"
    path.write_bytes(message)
    done = subprocess.run(
        ["opendkim", "-x", str(conf), "-vv", "-t", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def opendkim_verifier(workdir: Path, keys: dict[str, str], authserv_id: str):
    """OpenDKIM as a verifying milter (Mode v) on a Unix socket, with the key
    records `keys` as its DNS (TestDNSData); a MilterDaemon to use in `with`."""
    from pigeon.testing.milters import MilterDaemon

    require_tool("opendkim")
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "testdns"
    data.write_text("".join(f"{name} {value}\n" for name, value in keys.items()))
    sock = workdir / "opendkim.sock"
    conf = workdir / "opendkim.conf"
    conf.write_text(
        "Syslog no\nLogWhy yes\nMode v\n"
        f"Socket local:{sock}\nPidFile {workdir / 'opendkim.pid'}\n"
        f"TestDNSData file:{data}\nAuthservID {authserv_id}\n"
        # Loopback is OpenDKIM's default "internal" network, whose mail it
        # would sign rather than verify: here the sender is an outside host.
        "InternalHosts csl:192.0.2.1\n"
    )
    argv = ["opendkim", "-f", "-x", str(conf)]
    return MilterDaemon(argv, f"unix:{sock}", workdir, "opendkim").wait_ready()

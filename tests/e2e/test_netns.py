"""Deliver between real hosts: network namespaces on one bridge, nothing faked.

test_relay.py runs every peer on 127.0.0.x and points pigeon at its DNS
server and port with `[delivery] dns_servers` / `remote_port`. Here pigeon
runs with neither: it reads `/etc/resolv.conf` and connects to port 25, as
in production, because it runs in a namespace of its own where that is
what the resolver file and the network say (pigeon.testing.netns):

  host     address       runs
  dns      10.253.0.53   python -m pigeon.testing.dnsserver --port 53
  mx1      10.253.0.11   smtp-sink on :25
  mx2      10.253.0.12   smtp-sink on :25
  pigeon   10.253.0.10   pigeon serve, listening on :25; the client too
  (hub: br0 joining them; every host's /etc/resolv.conf names 10.253.0.53)

  example.test  MX 10 mx1.example.test, MX 20 mx2.example.test

Mail to example.test lands at mx1; with mx1's SMTP server stopped (the host
still up, so connections are refused) the next message lands at mx2 (RFC
5321 §5.1: try the MX hosts in order of preference).

Needs root and `ip` (iproute2). Skipped without them, and when the kernel
or container refuses to create namespaces, veths or bridges; under CI=true a
missing `ip` (or smtp-sink) fails instead, since CI installs them.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pigeon.testing.live import require_tool, wait_for
from pigeon.testing.netns import Lan, NetnsUnavailable

pytestmark = pytest.mark.e2e

HOSTS = {"dns": "10.253.0.53", "mx1": "10.253.0.11", "mx2": "10.253.0.12", "pigeon": "10.253.0.10"}
ZONE = """@ MX 10 mx1
@ MX 20 mx2
mx1 A 10.253.0.11
mx2 A 10.253.0.12
"""

# Deliberately no dns_servers and no remote_port: the namespace's
# /etc/resolv.conf and port 25 are what is under test. Short timeouts and
# backoff so that a failure shows up as a bounded wait, not a hang.
PIGEON_CONFIG = """hostname = "pigeon.lan.test"
data_dir = "{data_dir}"
listen = ["10.253.0.10:25"]
relay_networks = ["10.253.0.0/24", "127.0.0.0/8"]
[domains."localhost"]
[timeouts]
shutdown_grace = 2
[delivery]
connect_timeout = 5
dns_timeout = 5
[queue]
run_interval = 1.0
min_backoff = 1.0
max_backoff = 2.0
"""

# Runs inside the pigeon namespace; argv: subject.
SEND = """import smtplib, sys
subject = sys.argv[1]
with smtplib.SMTP("10.253.0.10", 25, timeout=20) as s:
    s.sendmail("sender@localhost", ["user@example.test"],
               f"From: sender@localhost\\r\\nTo: user@example.test\\r\\nSubject: {subject}\\r\\n"
               f"\\r\\nbody of {subject}\\r\\n")
"""

# Runs inside the pigeon namespace: what its resolver sees, with pigeon's own
# resolver set-up (Resolver(configure=True) reads /etc/resolv.conf).
RESOLVE = """import dns.resolver
r = dns.resolver.Resolver(configure=True)
print(",".join(r.nameservers))
mx = sorted((x.preference, x.exchange.to_text()) for x in r.resolve("example.test", "MX"))
print(" ".join(f"{p}:{h}" for p, h in mx))
print(r.resolve("mx2.example.test", "A")[0].address)
"""


def dumps(d: Path) -> list[bytes]:
    """The transactions smtp-sink finished dumping into `d`, oldest first.

    smtp-sink creates a dump file before it writes it, so an empty file (or
    one that does not yet end in a newline) is a transaction still being
    written: reading it then raced the sink once in CI."""
    files = sorted((p for p in d.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime)
    contents = (p.read_bytes() for p in files)
    return [c for c in contents if c.endswith(b"\n")]


@pytest.fixture
def lan():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    require_tool("ip")  # skip, or fail under CI=true
    net = Lan(HOSTS, nameserver=HOSTS["dns"])
    try:
        net.start()  # cleans up after itself when it fails
    except NetnsUnavailable as exc:
        # The kernel/container refuses namespaces: nothing CI could install, so skip even there.
        pytest.skip(f"network namespaces unavailable here: {exc}")
    try:
        yield net
    finally:
        net.close()
    assert not net.cleanup_errors, net.cleanup_errors


@pytest.fixture
def workdir():
    # smtp-sink runs as nobody: its dump dirs must be reachable, unlike pytest's tmp_path.
    d = Path(tempfile.mkdtemp(prefix="pigeon-netns-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def logs(*paths: Path) -> str:
    out = []
    for p in paths:
        text = p.read_text(errors="replace") if p.exists() else "(missing)"
        out.append(f"--- {p.name}\n{text[-3000:]}")
    return "\n".join(out)


def test_delivers_to_mx1_then_falls_back_to_mx2(lan, workdir):
    sink = require_tool("smtp-sink")
    (workdir / "example.test.zone").write_text(ZONE)
    mx_dirs = {}
    for mx in ("mx1", "mx2"):
        d = workdir / mx
        d.mkdir()
        d.chmod(0o777)
        mx_dirs[mx] = d
    data_dir = workdir / "pigeon-data"
    config = workdir / "pigeon.toml"
    config.write_text(PIGEON_CONFIG.format(data_dir=data_dir))
    pigeon_log, dns_log = workdir / "pigeon.log", workdir / "dns.log"
    sink_logs = {mx: workdir / f"{mx}-sink.log" for mx in mx_dirs}
    all_logs = (pigeon_log, dns_log, *sink_logs.values())

    lan.popen(
        "dns",
        sys.executable,
        "-m",
        "pigeon.testing.dnsserver",
        "--zone",
        f"example.test={workdir / 'example.test.zone'}",
        "--host",
        HOSTS["dns"],
        "--port",
        "53",
        log=dns_log,
    )
    sinks = {
        mx: lan.popen(
            mx,
            sink,
            "-u",
            "nobody",
            "-d",
            f"{mx_dirs[mx]}/%M.",
            f"{HOSTS[mx]}:25",
            "64",
            log=sink_logs[mx],
        )
        for mx in mx_dirs
    }
    pigeon = lan.popen(
        "pigeon",
        sys.executable,
        "-m",
        "pigeon",
        "serve",
        "--config",
        str(config),
        log=pigeon_log,
        cwd=workdir,
    )

    # Every probe runs from pigeon's namespace: it checks the servers and the LAN at once.
    for mx in mx_dirs:
        assert lan.wait_tcp("pigeon", HOSTS[mx], 25, banner=b"220", timeout=15), logs(*all_logs)
    assert lan.wait_tcp("pigeon", HOSTS["pigeon"], 25, banner=b"220", timeout=30), logs(*all_logs)
    assert pigeon.poll() is None, logs(pigeon_log)

    # The harness, not pigeon: the namespace's resolv.conf is the one the
    # resolver reads, and the DNS server answers through it (bounded retries
    # while it binds port 53).
    deadline = time.monotonic() + 15
    while True:
        seen = lan.python("pigeon", RESOLVE, timeout=20)
        if seen.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert seen.returncode == 0, seen.stderr + logs(dns_log)
    assert seen.stdout.split() == [
        "10.253.0.53",
        "10:mx1.example.test.",
        "20:mx2.example.test.",
        "10.253.0.12",
    ]

    # 1. Both MX hosts up: the preferred one gets the mail.
    sent = lan.python("pigeon", SEND, "first", timeout=40)
    assert sent.returncode == 0, sent.stderr + logs(pigeon_log)
    got = wait_for(lambda: dumps(mx_dirs["mx1"]), timeout=30)
    assert len(got) == 1, logs(*all_logs)
    assert b"Subject: first" in got[0]
    assert b"X-Rcpt-Args: <user@example.test>" in got[0]
    assert b"by pigeon.lan.test (pigeon) with ESMTP" in got[0]
    assert dumps(mx_dirs["mx2"]) == []
    assert wait_for(
        lambda: "relay=mx1.example.test" in pigeon_log.read_text(errors="replace"), timeout=10
    ), logs(pigeon_log)

    # 2. mx1's server stops (its host stays up: connections are refused);
    #    the next message goes to mx2, the next MX by preference.
    lan.stop(sinks["mx1"])
    assert not lan.wait_tcp("pigeon", HOSTS["mx1"], 25, timeout=1)
    sent = lan.python("pigeon", SEND, "second", timeout=40)
    assert sent.returncode == 0, sent.stderr + logs(pigeon_log)
    got2 = wait_for(lambda: dumps(mx_dirs["mx2"]), timeout=30)
    assert len(got2) == 1, logs(*all_logs)
    assert b"Subject: second" in got2[0]
    assert b"X-Rcpt-Args: <user@example.test>" in got2[0]
    assert len(dumps(mx_dirs["mx1"])) == 1  # nothing more reached mx1
    assert wait_for(
        lambda: "relay=mx2.example.test" in pigeon_log.read_text(errors="replace"), timeout=10
    ), logs(pigeon_log)
    log = pigeon_log.read_text(errors="replace")
    # One delivery attempt walked on from the refused MX to the next; it was not deferred.
    assert "connect to mx1.example.test[10.253.0.11]:25" in log, log
    assert "status=deferred" not in log, log

    assert lan.stop(pigeon, timeout=15) == 0, logs(pigeon_log)

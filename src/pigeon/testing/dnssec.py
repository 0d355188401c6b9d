"""A validating DNS resolver on loopback for tests: zones signed with ldns (ldnsutils)
and served by Debian's unbound, which validates them against their trust anchors.

    with ValidatingResolver(
        signed={"example.test": ZONE},            # answers carry the AD bit
        unsigned={"plain.test": ZONE},            # answers without AD (insecure)
        bogus={"bogus.test": ZONE},               # signed, then signatures spoilt
        bogus_names={"_25._tcp.mx.bogus.test"},   # ...at these names only
    ) as resolver:
        StubResolver([("127.0.0.1", resolver.port)])

Contract:
  * Zones are zone-file text as `pigeon.testing.dnsserver.DnsServer` takes
    it (names relative to the origin, TTL 300 by default); an SOA and an NS
    record are added when the text has none.
  * Signed and bogus zones get a KSK and a ZSK (ECDSA P-256, RFC 6605) from
    `ldns-keygen` and are signed by `ldns-signzone` (NSEC, RFC 4034 §4);
    the KSK's DS record is unbound's trust anchor for the zone, so unbound
    validates their answers (RFC 4035 §5) and sets AD on the good ones.
  * A bogus zone's RRSIGs at the `bogus_names` (every name of the zone
    when `bogus_names` names none of it) have one bit of their signature
    flipped after signing: unbound finds them bogus and answers SERVFAIL
    (RFC 4035 §5.5), as it would for forged data.
  * Unsigned zones have no trust anchor (declared `domain-insecure`): their
    answers are "insecure", without AD.
  * unbound serves every zone from its own `auth-zone` (for-upstream: its
    validator checks that data as it checks answers from the network) on
    127.0.0.1:`port`; it asks nothing outside: the root is a stub on a
    closed loopback port, and unbound's RFC 6761 "test." refusal is off.
  * `start()` returns once unbound answers (bounded wait); `close()` stops
    it (SIGTERM, then SIGKILL) and waits for it. Files live in a temporary
    directory removed at `close()`. Needs `unbound`, `ldns-keygen` and
    `ldns-signzone` (tests call `pigeon.testing.live.require_tool`). Where
    AppArmor enforces Debian's profile for /usr/sbin/unbound, unbound cannot
    read that directory: the start fails with unbound's own message.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone

from pigeon.testing.dnsserver import load_zone
from pigeon.testing.live import free_port

__all__ = ["ValidatingResolver"]

START_TIMEOUT = 20.0  # seconds for unbound to answer its first query


class ValidatingResolver:
    """See the module contract. Use as a context manager or call start()/close()."""

    def __init__(
        self,
        signed: Mapping[str, str] | None = None,
        unsigned: Mapping[str, str] | None = None,
        bogus: Mapping[str, str] | None = None,
        bogus_names: Iterable[str] = (),
        *,
        unbound: str = "unbound",
        ldns_keygen: str = "ldns-keygen",
        ldns_signzone: str = "ldns-signzone",
    ) -> None:
        self.signed = dict(signed or {})
        self.unsigned = dict(unsigned or {})
        self.bogus = dict(bogus or {})
        self.bogus_names = {dns.name.from_text(n) for n in bogus_names}
        self.tools = {"unbound": unbound, "keygen": ldns_keygen, "signzone": ldns_signzone}
        self.port = 0
        self.directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ValidatingResolver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def log(self) -> str:
        """unbound's log so far (validation failures are logged there)."""
        path = self.directory and self.directory / "unbound.log"
        return path.read_text(errors="replace") if path and path.exists() else ""

    def start(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="pigeon-dnssec-"))
        anchors: list[Path] = []
        zones: list[tuple[str, Path]] = []
        try:
            for origin, text in {**self.signed, **self.bogus}.items():
                anchor, path = self._sign(origin, text, bogus=origin in self.bogus)
                anchors.append(anchor)
                zones.append((origin, path))
            for origin, text in self.unsigned.items():
                zones.append((origin, self._write_zone(origin, text)))
            self.port = free_port()
            config = self.directory / "unbound.conf"
            config.write_text(self._config(anchors, zones))
            self._process = subprocess.Popen(
                [self.tools["unbound"], "-d", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=(self.directory / "unbound.stderr").open("wb"),
            )
            self._wait_ready(next(iter({**self.signed, **self.unsigned, **self.bogus}), "."))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
            self._process = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    # --- zones ---------------------------------------------------------------------------

    def _write_zone(self, origin: str, text: str) -> Path:
        assert self.directory is not None
        zone = load_zone(origin, text)
        apex = zone.origin
        assert apex is not None
        node = zone.find_node(apex, create=True)
        if node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.SOA) is None:
            soa = f"ns.{apex} hostmaster.{apex} 1 3600 600 86400 300"
            _add(zone, apex, dns.rdatatype.SOA, soa)
        if node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS) is None:
            _add(zone, apex, dns.rdatatype.NS, f"ns.{apex}")
            _add(zone, dns.name.from_text("ns", apex), dns.rdatatype.A, "127.0.0.1")
        path = self.directory / f"{origin}.zone"
        zone.to_file(str(path), relativize=False, want_origin=True)
        return path

    def _sign(self, origin: str, text: str, *, bogus: bool) -> tuple[Path, Path]:
        """The zone signed (and spoilt when `bogus`), and its trust anchor (the KSK's DS)."""
        assert self.directory is not None
        plain = self._write_zone(origin, text)
        keys = []
        for ksk in (True, False):
            args = [self.tools["keygen"], "-a", "ECDSAP256SHA256", *(["-k"] if ksk else [])]
            base = _run([*args, origin], self.directory).strip()
            keys.append(base)
        signed = self.directory / f"{origin}.signed"
        # -n would be NSEC3; NSEC keeps the zone simple to read when a test fails.
        _run(
            [self.tools["signzone"], "-o", origin, "-f", str(signed), str(plain), *keys[::-1]],
            self.directory,
        )
        if bogus:
            self._spoil(origin, signed)
        return self.directory / f"{keys[0]}.ds", signed

    def _spoil(self, origin: str, path: Path) -> None:
        zone = dns.zone.from_file(str(path), origin=origin, relativize=False)
        targets = {n for n in zone.nodes if n in self.bogus_names} or set(zone.nodes)
        for name in targets:
            # One rdataset per covered type (dnspython keeps RRSIGs by what they cover).
            for rdataset in zone.nodes[name].rdatasets:
                if rdataset.rdtype != dns.rdatatype.RRSIG:
                    continue
                spoilt = [r.replace(signature=_flip(r.signature)) for r in rdataset]
                rdataset.clear()
                for rdata in spoilt:
                    rdataset.add(rdata)
        zone.to_file(str(path), relativize=False, want_origin=True)

    # --- unbound -------------------------------------------------------------------------

    def _config(self, anchors: list[Path], zones: list[tuple[str, Path]]) -> str:
        assert self.directory is not None
        dead_port = free_port()  # nothing listens there: the root is unreachable
        lines = [
            "server:",
            "  interface: 127.0.0.1",
            f"  port: {self.port}",
            "  do-ip6: no",
            "  do-daemonize: no",
            '  username: ""',
            '  chroot: ""',
            f'  directory: "{self.directory}"',
            '  pidfile: ""',
            "  use-syslog: no",
            f'  logfile: "{self.directory / "unbound.log"}"',
            "  verbosity: 1",
            "  val-log-level: 2",
            "  num-threads: 1",
            "  access-control: 127.0.0.0/8 allow",
            '  module-config: "validator iterator"',
            "  do-not-query-localhost: no",
            '  local-zone: "test." nodefault',
            *(f'  trust-anchor-file: "{anchor}"' for anchor in anchors),
            *(f'  domain-insecure: "{origin}"' for origin in self.unsigned),
            "remote-control:",
            "  control-enable: no",
            "stub-zone:",
            '  name: "."',
            f"  stub-addr: 127.0.0.1@{dead_port}",
        ]
        for origin, path in zones:
            lines += [
                "auth-zone:",
                f'  name: "{origin}"',
                f'  zonefile: "{path}"',
                "  for-upstream: yes",
                "  for-downstream: no",
                "  fallback-enabled: no",
            ]
        return "\n".join(lines) + "\n"

    def _wait_ready(self, origin: str) -> None:
        query = dns.message.make_query(origin, dns.rdatatype.SOA)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:  # bounded in time
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"unbound exited: {self._stderr()}")
            try:
                dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.5)
                return
            except (dns.exception.Timeout, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"unbound did not answer within {START_TIMEOUT:g}s: {self._stderr()}")

    def _stderr(self) -> str:
        assert self.directory is not None
        path = self.directory / "unbound.stderr"
        return (path.read_text(errors="replace") if path.exists() else "") + self.log


def _add(
    zone: dns.zone.Zone, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, text: str
) -> None:
    rdataset = zone.find_rdataset(name, rdtype, create=True)
    rdataset.update_ttl(300)
    rdataset.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, text, origin=zone.origin))


def _flip(signature: bytes) -> bytes:
    return bytes([signature[0] ^ 0x01]) + signature[1:]


def _run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout

"""A throw-away LAN of network namespaces, for multi-host end-to-end tests.

    with Lan({"dns": "10.253.0.53", "mx1": "10.253.0.11", "pigeon": "10.253.0.10"},
             nameserver="10.253.0.53") as lan:
        lan.popen("dns", sys.executable, "-m", "pigeon.testing.dnsserver", ...)
        lan.wait_tcp("pigeon", "10.253.0.11", 25, timeout=10)
        lan.python("pigeon", "import smtplib; ...", timeout=30)

Topology:

    ns <prefix>-dns     ns <prefix>-mx1    ns <prefix>-pigeon   (one per host)
      eth0 10.253.0.53    eth0 10.253.0.11   eth0 10.253.0.10
          |                   |                  |
      v-dns ------------- v-mx1 ------------- v-pigeon
                 br0 in ns <prefix>-hub (a plain L2 switch, no address)

  * Every host is a namespace of its own with `lo` and one `eth0`, a veth
    whose other end is a port of the bridge `br0` in the "hub" namespace.
    Both ends are created directly inside their namespaces (`ip -n HUB link
    add ... peer ... netns HOST`), so the root namespace never sees an
    interface, a route or an address: nothing here can reach the outside,
    and the outside cannot reach in. The only route a host has is the
    connected 10.253.0.0/24; there is no default route.
  * Addresses must lie in 10.253.0.0/24 (`ValueError` otherwise): a private
    range kept for these test hosts only.
  * With `nameserver`, each host gets `/etc/netns/<ns>/resolv.conf` naming
    it. `ip netns exec` bind-mounts the files of `/etc/netns/<ns>/` over
    `/etc/` in a private mount namespace, so a program started through
    `run`/`popen`/`python` reads that file as `/etc/resolv.conf`, exactly as
    on a real host (dnspython's `Resolver(configure=True)` included).
  * Names are `pigeon-<pid>-<role>` so parallel runs do not collide; a
    stale namespace of the same name (a crashed run whose pid came back) is
    deleted first.
  * `close()` (also on leaving the `with` block, and when `start()` fails
    half-way) ends what was started: every process from `popen` (SIGTERM,
    then SIGKILL after a bounded wait), then any process still inside one
    of our namespaces (`ip netns pids`, by pid: they can only be children of
    ours), deletes the namespaces (the veths and the bridge go with them)
    and removes `/etc/netns/<ns>/` (and `/etc/netns` if we created it and it
    is empty). It never raises; problems are collected in `.cleanup_errors`.
  * Needs root and `ip` (Debian iproute2). When the kernel or the container
    refuses (no CAP_SYS_ADMIN, no veth/bridge support...), `start()` raises
    `NetnsUnavailable` with `ip`'s message, for callers to skip on.
  * Every wait is bounded: `run`/`python` take a timeout, `wait_tcp` has a
    deadline, process stops wait at most a few seconds.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["SUBNET", "Lan", "NetnsUnavailable", "find_ip"]

SUBNET = ipaddress.ip_network("10.253.0.0/24")
NETNS_ETC = Path("/etc/netns")


class NetnsUnavailable(Exception):
    """Network namespaces cannot be set up here; the message says why."""


def find_ip() -> str | None:
    """Path of the iproute2 `ip` tool, or None."""
    found = shutil.which("ip")
    if found:
        return found
    for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"):
        if os.access(p, os.X_OK):
            return p
    return None


class Lan:
    """Hosts (namespaces) on one bridge; see the module contract."""

    def __init__(
        self, hosts: Mapping[str, str], *, nameserver: str | None = None, prefix: str | None = None
    ) -> None:
        for role, address in hosts.items():
            if ipaddress.ip_address(address) not in SUBNET:
                raise ValueError(f"{role}: {address} is outside {SUBNET}, the test LAN")
            if not role.isalnum() or len(role) > 12:
                # the hub-side veth is "v-<role>": interface names are at most 15 octets
                raise ValueError(f"role {role!r}: use at most 12 letters and digits")
        if len(set(hosts.values())) != len(hosts):
            raise ValueError("two hosts with the same address")
        if nameserver is not None and ipaddress.ip_address(nameserver) not in SUBNET:
            raise ValueError(f"nameserver {nameserver} is outside {SUBNET}")
        self.hosts = dict(hosts)
        self.nameserver = nameserver
        self.prefix = prefix or f"pigeon-{os.getpid()}"
        self.hub = f"{self.prefix}-hub"
        self.ip = ""
        self._created: list[str] = []  # namespaces that exist and are ours
        self._etc_dirs: list[Path] = []
        self._made_netns_etc = False
        self._procs: list[subprocess.Popen] = []
        self.cleanup_errors: list[str] = []

    def ns(self, role: str) -> str:
        """The namespace name of a host (KeyError for an unknown role)."""
        if role not in self.hosts:
            raise KeyError(role)
        return f"{self.prefix}-{role}"

    # --- set-up ---------------------------------------------------------------------------

    def _ip(self, *args: str) -> None:
        """One `ip` command of the set-up; a refusal means netns is unusable here."""
        try:
            p = subprocess.run(
                [self.ip, *args],
                capture_output=True,
                text=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise NetnsUnavailable(f"`ip {' '.join(args)}` did not finish in 30 s") from None
        if p.returncode != 0:
            raise NetnsUnavailable(
                f"`ip {' '.join(args)}` failed: {p.stderr.strip() or p.returncode}"
            )

    def _add_netns(self, name: str) -> None:
        if Path("/run/netns", name).exists():
            # Left over by a crashed run whose pid has come back: never ours to keep.
            subprocess.run([self.ip, "netns", "del", name], capture_output=True, timeout=30)
        self._ip("netns", "add", name)
        self._created.append(name)
        self._ip("-n", name, "link", "set", "lo", "up")

    def start(self) -> Lan:
        ip = find_ip()
        if ip is None:
            raise NetnsUnavailable("`ip` not found (Debian package iproute2)")
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        self.ip = ip
        try:
            self._add_netns(self.hub)
            self._ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            self._ip("-n", self.hub, "link", "set", "br0", "up")
            for role, address in self.hosts.items():
                ns = self.ns(role)
                self._add_netns(ns)
                # Both ends are born inside their namespaces: nothing appears in ours.
                self._ip(
                    "-n",
                    self.hub,
                    "link",
                    "add",
                    f"v-{role}",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    ns,
                )
                self._ip("-n", self.hub, "link", "set", f"v-{role}", "master", "br0", "up")
                self._ip("-n", ns, "addr", "add", f"{address}/{SUBNET.prefixlen}", "dev", "eth0")
                self._ip("-n", ns, "link", "set", "eth0", "up")
                if self.nameserver is not None:
                    self._write_resolv_conf(ns)
        except BaseException:
            self.close()
            raise
        return self

    def _write_resolv_conf(self, ns: str) -> None:
        if not NETNS_ETC.exists():
            NETNS_ETC.mkdir(mode=0o755)
            self._made_netns_etc = True
        d = NETNS_ETC / ns
        d.mkdir(mode=0o755, exist_ok=True)
        self._etc_dirs.append(d)
        # Short timeouts: a DNS server that is not up yet should fail fast and be retried.
        (d / "resolv.conf").write_text(
            f"# {ns}: pigeon.testing.netns (deleted after the test)\n"
            f"nameserver {self.nameserver}\n"
            "options timeout:2 attempts:2\n"
        )

    # --- running things inside a host -----------------------------------------------------

    def argv(self, role: str, *cmd: str) -> list[str]:
        """The command line that runs `cmd` inside the host `role`."""
        return [self.ip, "netns", "exec", self.ns(role), *cmd]

    def run(self, role: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run `cmd` in `role` to completion (text output captured, no check)."""
        return subprocess.run(
            self.argv(role, *cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def python(
        self, role: str, code: str, *args: str, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        """Run Python `code` (this interpreter, so pigeon and dnspython import) in `role`."""
        return self.run(role, sys.executable, "-c", code, *args, timeout=timeout)

    def popen(self, role: str, *cmd: str, log: Path | None = None, **kwargs) -> subprocess.Popen:
        """Start `cmd` in `role` in the background; stopped by `close()` or `stop()`.

        `ip netns exec` execs the command in place, so the Popen's pid is the
        command's own pid and signals reach it directly. With `log`, stdout
        and stderr go to that file."""
        if log is not None:
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    self.argv(role, *cmd),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    **kwargs,
                )
        else:
            proc = subprocess.Popen(self.argv(role, *cmd), stdin=subprocess.DEVNULL, **kwargs)
        self._procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen, timeout: float = 10) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        return proc.returncode

    def wait_tcp(
        self, role: str, address: str, port: int, *, timeout: float = 15, banner: bytes = b""
    ) -> bool:
        """True once `address:port` accepts a connection from inside `role` (and,
        with `banner`, its first bytes start with it) within `timeout` seconds.

        The probe runs inside the namespace, so it also proves that the two
        hosts reach each other over the bridge."""
        code = (
            "import socket, sys, time\n"
            "addr, port, banner, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), float(sys.argv[4])\n"
            "deadline = time.monotonic() + timeout\n"
            "while time.monotonic() < deadline:\n"
            "    try:\n"
            "        with socket.create_connection((addr, port), timeout=1) as s:\n"
            "            if not banner:\n"
            "                sys.exit(0)\n"
            "            s.settimeout(3)\n"
            "            if s.recv(512).startswith(banner):\n"
            "                s.sendall(b'QUIT\\r\\n')\n"
            "                sys.exit(0)\n"
            "    except OSError:\n"
            "        pass\n"
            "    time.sleep(0.05)\n"
            "sys.exit(1)\n"
        )
        try:
            p = self.python(
                role, code, address, str(port), banner.decode(), str(timeout), timeout=timeout + 15
            )
        except subprocess.TimeoutExpired:
            return False
        return p.returncode == 0

    # --- tear-down ------------------------------------------------------------------------

    def _leftover_pids(self, ns: str) -> list[int]:
        try:
            p = subprocess.run(
                [self.ip, "netns", "pids", ns], capture_output=True, text=True, timeout=10
            )
        except subprocess.TimeoutExpired:
            return []
        return [int(x) for x in p.stdout.split() if x.isdigit()]

    def close(self) -> None:
        for proc in self._procs:
            try:
                self.stop(proc, timeout=5)
            except Exception as exc:  # keep cleaning up
                self.cleanup_errors.append(f"stopping pid {proc.pid}: {exc!r}")
        self._procs.clear()
        for ns in list(reversed(self._created)):
            # A process still in the namespace would keep it (and its veth)
            # alive after `ip netns del`; only our own children can be in it.
            for pid in self._leftover_pids(ns):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                except OSError as exc:
                    self.cleanup_errors.append(f"kill {pid} in {ns}: {exc!r}")
            deadline = time.monotonic() + 5
            while self._leftover_pids(ns) and time.monotonic() < deadline:
                time.sleep(0.05)
            p = subprocess.run(
                [self.ip, "netns", "del", ns], capture_output=True, text=True, timeout=30
            )
            if p.returncode != 0:
                self.cleanup_errors.append(f"ip netns del {ns}: {p.stderr.strip()}")
            self._created.remove(ns)
        for d in self._etc_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self._etc_dirs.clear()
        if self._made_netns_etc:
            try:
                NETNS_ETC.rmdir()  # only if empty: others may use it now
            except OSError:
                pass
            self._made_netns_etc = False

    def __enter__(self) -> Lan:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

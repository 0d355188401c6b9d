"""Real milters for tests: private OpenDKIM and rspamd instances, and libmilter scripts.

Contract:
  * Each function starts one daemon from Debian's packages in the
    foreground, with a private configuration in `workdir`, listening only
    on a Unix socket in `workdir` or on 127.0.0.1 (a free port), and
    returns a `MilterDaemon` once its socket accepts connections (bounded
    wait; the daemon's output is in `daemon.log()` on failure). Leaving
    the `with` block (or `stop()`) sends SIGTERM, then SIGKILL after 10 s.
  * `opendkim(workdir, domain, selector)`: OpenDKIM in signing mode for
    `domain` (a fresh 1024-bit key from opendkim-genkey; `dns_txt` is the
    TXT record to publish at `<selector>._domainkey.<domain>`). It signs
    what comes from 127.0.0.1 (its default InternalHosts).
  * `rspamd(workdir)`: rspamd with the proxy worker in milter mode
    (`socket` "inet:127.0.0.1:PORT") in front of a normal worker on
    another loopback port; no controller, no redis, no network look-ups
    (DNS goes to a closed loopback port). It rejects the GTUBE pattern
    and adds its X-Spamd-Result/X-Rspamd-* header fields.
  * `libmilter(workdir, script)`: a Python milter on Debian's libmilter
    (python3-milter), `script` run by /usr/bin/python3 with the socket
    spec as its argument, for the modification actions neither daemon
    takes (tests/e2e/milters/).
  * Tests call `pigeon.testing.live.require_tool` for the daemons first,
    `require_libmilter()` for python3-milter (both skip when it is
    missing, and fail under CI=true).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from pigeon.testing.live import free_port, wait_for

__all__ = ["MilterDaemon", "accepts", "libmilter", "opendkim", "require_libmilter", "rspamd"]


class MilterDaemon:
    def __init__(self, argv: list[str], socket_spec: str, workdir: Path, name: str) -> None:
        self.name = name
        self.socket = socket_spec  # as pigeon's [[milters]] socket key takes it
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.dns_txt = ""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                start_new_session=True,
            )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = 30.0) -> MilterDaemon:
        ready = wait_for(lambda: self.proc.poll() is not None or accepts(self.socket), timeout)
        if not ready or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"milter {self.name} did not start:\n{self.log()}")
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def __enter__(self) -> MilterDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def accepts(socket_spec: str) -> bool:
    """Does the socket ("unix:/path" or "inet:host:port") take a connection?"""
    kind, _, rest = socket_spec.partition(":")
    try:
        if kind == "unix":
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(rest)
        else:
            host, _, port = rest.rpartition(":")
            socket.create_connection((host, int(port)), timeout=1.0).close()
    except OSError:
        return False
    return True


def opendkim(workdir: Path, domain: str, selector: str) -> MilterDaemon:
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["opendkim-genkey", "-D", str(workdir), "-d", domain, "-s", selector, "-b", "1024"],
        check=True,
        capture_output=True,
    )
    sock = workdir / "opendkim.sock"
    conf = workdir / "opendkim.conf"
    conf.write_text(
        "Syslog no\n"
        "LogWhy yes\n"
        f"Socket local:{sock}\n"
        "Mode s\n"
        f"Domain {domain}\n"
        f"Selector {selector}\n"
        f"KeyFile {workdir / (selector + '.private')}\n"
        f"PidFile {workdir / 'opendkim.pid'}\n"
        # The key lives under the test's tmp directory (world-writable /tmp).
        "RequireSafeKeys false\n"
    )
    daemon = MilterDaemon(
        ["opendkim", "-f", "-v", "-x", str(conf)], f"unix:{sock}", workdir, "opendkim"
    )
    # sel1.txt: `sel1._domainkey IN TXT ( "v=DKIM1; h=sha256; k=rsa; " "p=..." )`
    record = (workdir / f"{selector}.txt").read_text()
    daemon.dns_txt = "".join(part for part in record.split('"')[1::2])
    return daemon.wait_ready()


# Debian's /etc/rspamd/rspamd.conf with a private $LOCAL_CONFDIR: these
# files override its sockets, directories, DNS (a closed loopback port: no
# look-ups leave the machine), actions and headers.
_RSPAMD_FILES = {
    "override.d/options.inc": (
        'pidfile = "{dir}/rspamd.pid";\n'
        'dns {{ nameserver = ["127.0.0.1:{dead}"]; timeout = 0.2s; retransmits = 1; }}\n'
        "local_addrs = [];\n"
    ),
    "override.d/logging.inc": 'type = "file";\nfilename = "{dir}/rspamd-log.txt";\nlevel = "info";\n',
    "override.d/worker-normal.inc": 'bind_socket = "127.0.0.1:{normal}";\ncount = 1;\n',
    "override.d/worker-controller.inc": 'bind_socket = "127.0.0.1:{controller}";\ncount = 1;\n',
    "override.d/worker-proxy.inc": (
        'bind_socket = "127.0.0.1:{proxy}";\nmilter = yes;\ntimeout = 60s;\ncount = 1;\n'
        'upstream "local" {{ default = yes; hosts = "127.0.0.1:{normal}"; }}\n'
    ),
    # A score of 4 (e.g. no To:, Date: or Message-ID:) is spam: "X-Spam: Yes".
    "override.d/actions.conf": "reject = 15;\nadd_header = 4;\ngreylist = null;\n",
    # X-Spam-Status on every message scanned, even from loopback.
    "local.d/milter_headers.conf": (
        'use = ["x-spam-status", "x-spamd-result"];\n'
        "skip_local = false;\nskip_authenticated = false;\n"
    ),
}


def rspamd(workdir: Path) -> MilterDaemon:
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {
        "proxy": free_port(),
        "normal": free_port(),
        "controller": free_port(),
        "dead": free_port(),
    }
    for name, text in _RSPAMD_FILES.items():
        path = workdir / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text.format(dir=workdir, **ports))
    argv = [
        "rspamd",
        "-f",
        "-u",
        "root",
        "-g",
        "root",
        "-c",
        "/etc/rspamd/rspamd.conf",
        "--insecure",
        f"--var=LOCAL_CONFDIR={workdir}",
        f"--var=DBDIR={workdir}",
        f"--var=RUNDIR={workdir}",
        f"--var=LOGDIR={workdir}",
    ]
    daemon = MilterDaemon(argv, f"inet:127.0.0.1:{ports['proxy']}", workdir, "rspamd")
    daemon.wait_ready(90.0)
    # The proxy may listen before the worker it asks: wait for both.
    if not wait_for(lambda: accepts(f"inet:127.0.0.1:{ports['normal']}"), 60.0):
        daemon.stop()
        raise RuntimeError(f"rspamd's normal worker did not start:\n{daemon.log()}")
    return daemon


def require_libmilter() -> None:
    """Skip (fail under CI=true) when Debian's python3-milter is missing."""
    import pytest

    found = (
        subprocess.run(["/usr/bin/python3", "-c", "import Milter"], capture_output=True).returncode
        == 0
        if os.access("/usr/bin/python3", os.X_OK)
        else False
    )
    if found:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("python3-milter is required in CI (install it in .ci/run)")
    pytest.skip("python3-milter is not installed")


def libmilter(workdir: Path, script: Path) -> MilterDaemon:
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / f"{script.stem}.sock"
    argv = ["/usr/bin/python3", str(script), f"unix:{sock}"]
    return MilterDaemon(argv, f"unix:{sock}", workdir, script.stem).wait_ready()

"""A private Exim for end-to-end tests: submit mail to it, it relays to pigeon.

Debian's exim4-daemon-light cannot be installed beside Postfix (both are the
system's mail-transport-agent), so CI (`.ci/run`) unpacks its binary with
`apt-get download` + `dpkg -x` into `.cache/exim/` of the repository.

Contract:
  * `require_exim()` returns the path of an `exim4` binary: $PIGEON_EXIM, the
    unpacked `.cache/exim/usr/sbin/exim4`, or an installed /usr/sbin/exim4.
    Like `live.require_tool`, it skips the test when Exim (or the
    "Debian-exim" user its binary is built to run as) is missing, and fails
    under CI=true.
  * `EximRelay(binary, port)` writes its own configuration file (`-C`) and
    spool directory in a new directory under /tmp (Exim writes its spool as
    the Exim user, who cannot enter pytest's private tmp_path; run as root
    the directory is given to that user); `close()` (or leaving the `with`
    block) removes it. One manualroute router sends
    every address to 127.0.0.1:`port`, over STARTTLS when pigeon offers it
    unless `tls=False`. Nothing else on the machine is touched and no DNS is
    used.
  * `submit(sender, recipient, message)` runs `exim -odi`: the message is
    queued and delivered before the command returns (one SMTP connection per
    message, so Exim pipelines the end of data with QUIT). `run_queue()`
    runs `-qff` (every message still queued is tried again: a message whose
    250 Exim did not see is then delivered a second time), `queue_count()`
    is `-bpc`, `mainlog()` Exim's log.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NoReturn

#: Where .ci/run unpacks exim4-daemon-light, relative to the repository root.
UNPACKED = Path(__file__).resolve().parents[3] / ".cache" / "exim" / "usr" / "sbin" / "exim4"
#: The user Debian's binary is compiled to run as (EXIM_USER); it must exist.
EXIM_USER = "Debian-exim"


def _missing(reason: str) -> NoReturn:
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must provide it: see .ci/run)")
    pytest.skip(reason)


def require_exim() -> Path:
    candidates = [os.environ.get("PIGEON_EXIM", ""), str(UNPACKED), "/usr/sbin/exim4"]
    binary = next((Path(c) for c in candidates if c and os.access(c, os.X_OK)), None)
    if binary is None:
        _missing("exim4 is not available (unpack exim4-daemon-light into .cache/exim)")
    try:
        pwd.getpwnam(EXIM_USER)
    except KeyError:
        _missing(f"the user {EXIM_USER} that exim4 runs as does not exist")
    assert binary is not None  # _missing() did not return
    return binary


_CONFIG = """\
exim_path = {binary}
spool_directory = {spool}
log_file_path = {spool}/log/%slog
primary_hostname = exim.test
qualify_domain = exim.test
keep_environment =
# Never listen, never look anything up in DNS.
daemon_smtp_ports =
host_lookup =
rfc1413_hosts =

begin routers

to_pigeon:
  driver = manualroute
  route_list = * 127.0.0.1
  transport = pigeon_smtp
  self = send

begin transports

pigeon_smtp:
  driver = smtp
  port = {port}
  allow_localhost
  hosts_try_fastopen =
  {tls_line}

begin retry

* * F,1h,1m
"""


class EximRelay:
    def __init__(self, binary: Path, port: int, *, tls: bool = True) -> None:
        self.binary = Path(binary)
        self.workdir = Path(tempfile.mkdtemp(prefix="pigeon-exim-"))
        self.spool = self.workdir / "spool"
        self.spool.mkdir()
        self.config = self.workdir / "exim.conf"
        self.config.write_text(
            _CONFIG.format(
                binary=self.binary,
                spool=self.spool,
                port=port,
                tls_line="hosts_require_tls = *" if tls else "hosts_avoid_tls = *",
            )
        )
        # Exim refuses a configuration that others can write.
        self.config.chmod(0o644)
        self.workdir.chmod(0o755)
        if os.geteuid() == 0:
            user = pwd.getpwnam(EXIM_USER)
            os.chown(self.spool, user.pw_uid, user.pw_gid)

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EximRelay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self, *args: str, stdin: bytes | None = None, timeout: float = 60) -> bytes:
        done = subprocess.run(
            [str(self.binary), "-C", str(self.config), *args],
            input=stdin,
            capture_output=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"exim {' '.join(args)} exited with {done.returncode}: "
                f"{done.stderr.decode(errors='replace')}\n{self.mainlog()}"
            )
        return done.stdout

    def submit(self, sender: str, recipient: str, message: bytes) -> None:
        self._run("-odi", "-f", sender, recipient, stdin=message)

    def run_queue(self) -> None:
        self._run("-qff")

    def queue_count(self) -> int:
        return int(self._run("-bpc").strip() or 0)

    def mainlog(self) -> str:
        try:
            return (self.spool / "log" / "mainlog").read_text(errors="replace")
        except FileNotFoundError:
            return ""

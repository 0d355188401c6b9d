"""contrib/pigeon.service and contrib/pigeon.socket are valid units that agree with
docs/install.md and docs/config.md."""

from __future__ import annotations

import configparser
import re
import socket
import subprocess
import sys
from pathlib import Path

from pigeon.config import load_config
from pigeon.config.schema import ListenAddress
from pigeon.net.inherit import InheritedSocket, assign
from pigeon.net.smtp_service import SMTP_ROLES, smtp_listeners
from pigeon.testing.live import require_tool

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "pigeon.service"
SOCKET = ROOT / "contrib" / "pigeon.socket"
INSTALL = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
CONFIG_DOC = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")


def unit(path: Path = UNIT) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def test_systemd_analyze_verify(tmp_path):
    analyze = require_tool("systemd-analyze")
    # The unit names /opt/pigeon/bin/pigeon; verify checks that the binaries
    # exist, so point it at this venv's (same script, same arguments). The
    # socket unit is verified beside it: it activates that service.
    for path in (UNIT, SOCKET):
        text = path.read_text().replace("/opt/pigeon/bin/", f"{Path(sys.prefix) / 'bin'}/")
        (tmp_path / path.name).write_text(text)
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / "pigeon.service"), str(tmp_path / "pigeon.socket")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if "pigeon." in line]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr


def test_the_socket_units_sockets_serve_the_roles_of_the_installed_configuration(tmp_path):
    """Mapped by address (net/inherit.py): each ListenStream= is a listen,
    submission_listen or submissions_listen address of docs/install.md's file."""
    path = tmp_path / "pigeon.toml"
    path.write_text(_install_config())
    config = load_config(path)
    # [::]:25 is IPv6 only, as the configuration's two addresses per port assume.
    assert unit(SOCKET)["Socket"]["BindIPv6Only"] == "ipv6-only"
    lines = [
        line.split("=", 1)[1]
        for line in SOCKET.read_text().splitlines()
        if line.startswith("ListenStream=")
    ]
    assert len(lines) == 6
    inherited = []
    for text in lines:
        host, _, port = text.rpartition(":")
        inherited.append(
            InheritedSocket(
                -1, "pigeon.socket", socket.socket(), ListenAddress(host.strip("[]"), int(port))
            )
        )
    plan = assign(inherited, smtp_listeners(config, tls=True), SMTP_ROLES)
    served = sorted((role.name, addr.host, addr.port) for (addr, role), _ in plan.managed)
    assert served == sorted(
        (role.name, addr.host, addr.port) for addr, role in smtp_listeners(config, tls=True)
    )
    for item in inherited:
        item.sock.close()


def test_serve_finds_the_system_configuration_by_the_rule():
    service = unit()["Service"]
    assert service["ExecStart"].split() == ["/opt/pigeon/bin/pigeon", "serve"]  # no --config
    assert service["ExecReload"].split() == ["/opt/pigeon/bin/pigeon", "reload"]
    assert service["User"] == "pigeon" and "ReadWritePaths" not in service


def _install_config():
    block = re.search(r"<<'EOF'\n(.*?)\nEOF", INSTALL, re.S).group(1)
    return block


def test_the_installed_configuration_lives_where_the_unit_may_write(tmp_path):
    service = unit()["Service"]
    path = tmp_path / "pigeon.toml"
    path.write_text(_install_config())
    config = load_config(path)
    assert config.data_dir == Path("/var/lib") / service["StateDirectory"]
    assert config.log.file.parent == Path("/var/log") / service["LogsDirectory"]
    assert service["StateDirectoryMode"] == "0711"  # local users reach submit.sock
    # docs/config.md's complete example logs where the unit lets it, too.
    assert 'file = "/var/log/pigeon/pigeon.log"' in CONFIG_DOC


def test_install_steps_name_the_unit_and_the_sendmail_link():
    assert "ln -sf /opt/pigeon/bin/sendmail /usr/sbin/sendmail" in INSTALL
    assert "contrib/pigeon.service /etc/systemd/system/" in INSTALL
    assert "/opt/pigeon/bin/pip install /usr/local/src/pigeon" in INSTALL

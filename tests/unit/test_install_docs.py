"""contrib/pigeon.service is a valid unit that agrees with docs/install.md and docs/config.md."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

from pigeon.config import load_config
from pigeon.testing.live import require_tool

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "pigeon.service"
INSTALL = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
CONFIG_DOC = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_systemd_analyze_verify(tmp_path):
    analyze = require_tool("systemd-analyze")
    # The unit names /opt/pigeon/bin/pigeon; verify checks that the binaries
    # exist, so point it at this venv's (same script, same arguments).
    text = UNIT.read_text().replace("/opt/pigeon/bin/", f"{Path(sys.prefix) / 'bin'}/")
    copy = tmp_path / "pigeon.service"
    copy.write_text(text)
    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=120
    )
    complaints = [
        line for line in (done.stdout + done.stderr).splitlines() if "pigeon.service" in line
    ]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr


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

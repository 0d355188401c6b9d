"""`pigeon serve`: flags -> overrides, config errors -> 78, then pigeon.app.run(config)."""

from __future__ import annotations

import argparse
import logging
import os
import stat
from pathlib import Path

import pytest

from pigeon.cli import serve
from pigeon.cli.main import build_parser, main
from pigeon.config.schema import DomainConfig, ListenAddress
from pigeon.obs.logsetup import flush_logs

# Every test here may call setup_logging(): put the loggers back afterwards.
pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture(autouse=True)
def restore_umask():
    """serve.run() tightens the process umask (as the real command must): undo it."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_no_flags_no_overrides():
    assert serve.overrides_from(parse()) == {}


def test_flags_become_overrides():
    args = parse(
        "--listen",
        "0.0.0.0:25",
        "--listen",
        "[::]:25",
        "--domain",
        "a.test",
        "--domain",
        "b.test",
        "--relay-network",
        "10.0.0.0/8",
        "--data-dir",
        "/d",
        "--hostname",
        "h.test",
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "--log-file",
        "/l",
    )
    assert serve.overrides_from(args) == {
        "listen": ["0.0.0.0:25", "[::]:25"],
        "domains": ["a.test", "b.test"],
        "relay_networks": ["10.0.0.0/8"],
        "data_dir": "/d",
        "hostname": "h.test",
        "log": {"format": "json", "level": "debug", "file": "/l"},
    }


def test_every_listener_has_a_flag():
    args = parse(
        "--submission-listen",
        "0.0.0.0:587",
        "--submission-listen",
        "[::]:587",
        "--submissions-listen",
        "",
        "--metrics-listen",
        "",
    )
    assert serve.overrides_from(args) == {
        "submission_listen": ["0.0.0.0:587", "[::]:587"],
        "submissions_listen": [],
        "admin": {"metrics_listen": ""},
    }
    config = serve.build_config(args)
    assert config.submission_listen == (ListenAddress("0.0.0.0", 587), ListenAddress("::", 587))
    assert config.submissions_listen == ()
    assert config.admin.metrics_listen is None
    config = serve.build_config(parse("--metrics-listen", "127.0.0.1:9100"))
    assert config.admin.metrics_listen == ListenAddress("127.0.0.1", 9100)
    assert serve.build_config(parse("--console-listen", "")).console.listen is None
    config = serve.build_config(parse("--console-listen", "127.0.0.1:8026"))
    assert config.console.listen == ListenAddress("127.0.0.1", 8026)


def test_the_imap_roles_have_flags_that_replace_the_file_and_keep_its_other_keys(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[imap]\nlisten = ["127.0.0.1:143"]\nmax_literal = "1MB"\n')
    args = parse("--config", str(path), "--imap-listen", "127.0.0.1:1143", "--imaps-listen", "")
    assert serve.overrides_from(args) == {"imap": {"listen": ["127.0.0.1:1143"], "tls_listen": []}}
    config = serve.build_config(args)
    assert config.imap.listen == (ListenAddress("127.0.0.1", 1143),)
    assert config.imap.tls_listen == ()
    assert config.imap.max_literal == 1024 * 1024


def test_the_pop3_listeners_have_flags_too(tmp_path):
    args = parse("--pop3-listen", "0.0.0.0:110", "--pop3-tls-listen", "")
    assert serve.overrides_from(args) == {"pop3": {"listen": ["0.0.0.0:110"], "tls_listen": []}}
    path = tmp_path / "p.toml"
    path.write_text('[pop3]\ntls_listen = ["127.0.0.1:995"]\nautologout = 900\n')
    config = serve.build_config(parse("--config", str(path), "--pop3-listen", "127.0.0.1:1110"))
    assert config.pop3.listen == (ListenAddress("127.0.0.1", 1110),)
    assert config.pop3.tls_listen == (ListenAddress("127.0.0.1", 995),)  # the file's, kept
    assert config.pop3.autologout == 900


def test_listener_flags_replace_the_file_and_keep_its_other_admin_keys(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        'submission_listen = ["127.0.0.1:587"]\n'
        '[admin]\ncontrol_socket = "/run/pigeon/control.sock"\nmetrics_listen = "127.0.0.1:1"\n'
    )
    config = serve.build_config(
        parse(
            "--config", str(path), "--submission-listen", "127.0.0.1:2587", "--metrics-listen", ""
        )
    )
    assert config.submission_listen == (ListenAddress("127.0.0.1", 2587),)
    assert config.admin.metrics_listen is None
    assert config.admin.control_socket == Path("/run/pigeon/control.sock")


def test_a_bad_listener_flag_names_the_key(capsys):
    assert main(["serve", "--submissions-listen", "nowhere"]) == 78
    assert capsys.readouterr().err == (
        'pigeon: command line: submissions_listen: "nowhere": '
        'expected "host:port" or "[ipv6]:port"\n'
    )


def test_quick_start_defaults():
    config = serve.build_config(parse())
    assert config.listen == (ListenAddress("127.0.0.1", 2525),)
    assert list(config.domains) == ["localhost"]
    assert config.data_dir == Path("pigeon-data")


def test_flags_replace_the_file_lists(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        'listen = ["127.0.0.1:25"]\nrelay_networks = ["192.0.2.0/24"]\n'
        '[domains."a.test"]\nmailboxes = ["alice"]\n[domains."b.test"]\n'
    )
    config = serve.build_config(
        parse(
            "--config",
            str(path),
            "--listen",
            "[::1]:2525",
            "--domain",
            "a.test",
            "--domain",
            "c.test",
        )
    )
    assert config.listen == (ListenAddress("::1", 2525),)
    assert config.domains == {
        "a.test": DomainConfig("a.test", frozenset({"alice"})),
        "c.test": DomainConfig("c.test"),
    }
    assert [str(n) for n in config.relay_networks] == ["192.0.2.0/24"]


def test_run_calls_the_app_with_the_config(tmp_path):
    seen = []
    status = serve.run(
        parse("--domain", "x.test", "--log-file", str(tmp_path / "log")),
        app_run=lambda config: seen.append(config) or 7,
    )
    assert status == 7
    assert list(seen[0].domains) == ["x.test"]
    logging.getLogger("pigeon.test").info("hello")
    flush_logs()  # written by a background thread
    assert "INFO pigeon.test: hello" in (tmp_path / "log").read_text()


def test_run_keyboard_interrupt_is_130():
    def interrupted(config):
        raise KeyboardInterrupt

    assert serve.run(parse(), app_run=interrupted) == 130


def test_config_error_exits_78_before_starting(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_text("[limits]\nmesage_size = 1\n")
    assert main(["serve", "--config", str(path)]) == 78
    assert (
        capsys.readouterr().err
        == f'pigeon: {path}:2: limits.mesage_size: unknown key (did you mean "message_size"?)\n'
    )


def test_bad_flag_value_exits_78(capsys):
    assert main(["serve", "--listen", "localhost"]) == 78
    assert (
        capsys.readouterr().err
        == 'pigeon: command line: listen: "localhost": expected "host:port" or "[ipv6]:port"\n'
    )


def test_unopenable_log_file_exits_78(tmp_path, capsys):
    assert main(["serve", "--log-file", str(tmp_path / "missing-dir" / "log")]) == 78
    assert capsys.readouterr().err.startswith(
        f"pigeon: config error: log.file: cannot open {tmp_path}"
    )


def test_the_umask_is_tight_before_the_log_file_is_created(tmp_path):
    os.umask(0)
    log_file = tmp_path / "mail.log"
    seen = []
    serve.run(
        parse("--log-file", str(log_file)), app_run=lambda config: seen.append(os.umask(0o077)) or 0
    )
    assert seen == [0o077]  # what the server runs with
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600

"""`pigeon admin add|list|remove|passwd` (pigeon.cli.consoleadmin)."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest

from pigeon.cli.main import main
from pigeon.console.admins import AdminStore

PW = "a long enough password"


@pytest.fixture
def cfg(tmp_path):
    """A configuration file whose data directory exists (the command needs one)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "pigeon.toml").write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return tmp_path / "pigeon.toml"


def run(capsys, monkeypatch, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_add_list_passwd_remove(cfg, capsys, monkeypatch):
    c = str(cfg)
    status, out, _ = run(
        capsys, monkeypatch, "admin", "-c", c, "add", "alice", "--password-stdin", stdin=PW + "\n"
    )
    assert (status, out) == (0, "added alice\n")
    store = AdminStore.in_data_dir(cfg.parent / "data")
    assert store.verify("alice", PW)
    path = cfg.parent / "data" / "console-admins.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and PW not in path.read_text()
    assert json.loads(path.read_text())["admins"]["alice"]["hash"].startswith("$argon2id$")
    status, out, _ = run(capsys, monkeypatch, "admin", "list", "-c", c)
    assert status == 0 and out.startswith("alice\t20")
    status, out, _ = run(
        capsys,
        monkeypatch,
        "admin",
        "passwd",
        "alice",
        "-c",
        c,
        "--password-stdin",
        stdin="another long one\n",
    )
    assert (status, out) == (0, "password changed for alice\n")
    assert store.verify("alice", "another long one") and not store.verify("alice", PW)
    assert run(capsys, monkeypatch, "admin", "remove", "alice", "-c", c)[:2] == (
        0,
        "removed alice\n",
    )
    assert run(capsys, monkeypatch, "admin", "list", "-c", c)[:2] == (0, "")


def test_generate_prints_the_password_once_alone_on_stdout(cfg, capsys, monkeypatch):
    status, out, err = run(capsys, monkeypatch, "admin", "add", "ops", "--generate", "-c", str(cfg))
    assert status == 0 and "added ops" in err
    password = out.strip()
    assert "\n" not in password and len(password) >= 16
    assert AdminStore.in_data_dir(cfg.parent / "data").verify("ops", password)


@pytest.mark.parametrize(
    ("argv", "stdin", "status", "words"),
    [
        (["add", "bad name", "--password-stdin"], PW, 64, "not an admin name"),
        (["add", "bob", "--password-stdin"], "\n", 64, "empty"),
        (["add", "bob", "--password-stdin"], "short\n", 64, "too short"),
        (["passwd", "nobody", "--password-stdin"], PW, 1, "no such admin"),
        (["remove", "nobody"], "", 1, "no such admin"),
        (["add", "bob", "--generate", "--password-stdin"], "", 64, "not allowed"),
    ],
)
def test_errors(cfg, capsys, monkeypatch, argv, stdin, status, words):
    got, _, err = run(capsys, monkeypatch, "admin", "-c", str(cfg), *argv, stdin=stdin)
    assert got == status and words in err


def test_adding_an_existing_admin_is_refused(cfg, capsys, monkeypatch):
    c = str(cfg)
    assert run(capsys, monkeypatch, "admin", "-c", c, "add", "bob", "--generate")[0] == 0
    status, _, err = run(
        capsys, monkeypatch, "admin", "-c", c, "add", "bob", "--password-stdin", stdin=PW
    )
    assert status == 1 and "exists" in err


def test_no_terminal_without_password_stdin_says_what_to_do(cfg, capsys, monkeypatch):
    monkeypatch.setattr("pigeon.cli.consoleadmin.have_terminal", lambda: False)
    status, _, err = run(capsys, monkeypatch, "admin", "-c", str(cfg), "add", "bob")
    assert status == 64 and "--password-stdin" in err and "--generate" in err


def test_a_missing_data_dir_is_a_configuration_error(tmp_path, capsys, monkeypatch):
    path = tmp_path / "pigeon.toml"
    path.write_text(f'data_dir = "{tmp_path / "absent"}"\n')
    assert run(capsys, monkeypatch, "admin", "-c", str(path), "list")[0] == 78

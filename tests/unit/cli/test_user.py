"""`pigeon user add|passwd|del|list`."""
from __future__ import annotations

import io

from pigeon.auth import passwords
from pigeon.auth.accounts import AccountStore
from pigeon.cli.main import build_parser, main
from pigeon.cli import user as user_cmd


def _run(argv, stdin="", answers=()):
    args = build_parser().parse_args(argv)
    it = iter(answers)
    return user_cmd.run(args, stdin=io.StringIO(stdin), ask=lambda prompt: next(it))


def test_add_list_passwd_del(tmp_path, capsys):
    d = str(tmp_path / "data")
    assert _run(["user", "--data-dir", d, "add", "alice@example.test", "--address",
                 "info@example.test", "--password-stdin"], stdin="s3cret\n") == 0
    assert "added alice@example.test (addresses: alice@example.test, info@example.test)" \
        in capsys.readouterr().out
    assert main(["user", "--data-dir", d, "list"]) == 0
    assert capsys.readouterr().out == "alice@example.test\talice@example.test, info@example.test\n"
    assert _run(["user", "--data-dir", d, "passwd", "alice@example.test"],
                answers=("new", "new")) == 0
    with AccountStore.in_data_dir(tmp_path / "data").open() as store:
        assert passwords.verify_password(store.password_hash("alice@example.test"), "new")
    assert main(["user", "--data-dir", d, "del", "alice@example.test"]) == 0
    assert main(["user", "--data-dir", d, "list"]) == 0
    assert "deleted alice@example.test" in capsys.readouterr().out


def test_errors(tmp_path, capsys):
    d = str(tmp_path / "data")
    assert _run(["user", "--data-dir", d, "add", "bob", "--password-stdin"], stdin="\n") == 64
    assert "the password is empty" in capsys.readouterr().err
    assert _run(["user", "--data-dir", d, "add", "bob"], answers=("a", "b")) == 64
    assert "do not match" in capsys.readouterr().err
    assert _run(["user", "--data-dir", d, "add", "bob", "--password-stdin"], stdin="x\n") == 0
    assert _run(["user", "--data-dir", d, "add", "bob", "--password-stdin"], stdin="x\n") == 1
    assert "already exists" in capsys.readouterr().err
    assert _run(["user", "--data-dir", d, "passwd", "carol", "--password-stdin"], stdin="x\n") == 67
    assert main(["user", "--data-dir", d, "del", "carol"]) == 67
    assert main(["user", "--config", str(tmp_path / "missing.toml"), "list"]) == 78

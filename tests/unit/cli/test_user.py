"""`pigeon user add|passwd|del|list`."""

from __future__ import annotations

import io

from pigeon.auth import passwords
from pigeon.auth.accounts import AccountStore
from pigeon.cli import user as user_cmd
from pigeon.cli.main import build_parser, main


def _run(argv, stdin="", answers=()):
    args = build_parser().parse_args(argv)
    it = iter(answers)
    return user_cmd.run(args, stdin=io.StringIO(stdin), ask=lambda prompt: next(it))


PW, PW2 = "correct horse battery", "staple staple staple"


def data_dir(tmp_path):
    (tmp_path / "data").mkdir()
    return str(tmp_path / "data")


def test_add_list_passwd_del(tmp_path, capsys):
    d = data_dir(tmp_path)
    assert (
        _run(
            [
                "user",
                "--data-dir",
                d,
                "add",
                "alice@example.test",
                "--address",
                "info@example.test",
                "--password-stdin",
            ],
            stdin=PW + "\n",
        )
        == 0
    )
    assert (
        "added alice@example.test (addresses: alice@example.test, info@example.test)"
        in capsys.readouterr().out
    )
    assert main(["user", "--data-dir", d, "list"]) == 0
    assert capsys.readouterr().out == "alice@example.test\talice@example.test, info@example.test\n"
    assert _run(["user", "--data-dir", d, "passwd", "alice@example.test"], answers=(PW2, PW2)) == 0
    with AccountStore.in_data_dir(tmp_path / "data").open() as store:
        assert passwords.verify_password(store.password_hash("alice@example.test"), PW2)
    assert main(["user", "--data-dir", d, "del", "alice@example.test"]) == 0
    assert main(["user", "--data-dir", d, "list"]) == 0
    assert "deleted alice@example.test" in capsys.readouterr().out


def test_errors(tmp_path, capsys):
    d = data_dir(tmp_path)
    assert _run(["user", "--data-dir", d, "add", "bob", "--password-stdin"], stdin="\n") == 64
    assert "the password is empty" in capsys.readouterr().err
    assert _run(["user", "--data-dir", d, "add", "bob"], answers=(PW, PW2)) == 64
    assert "do not match" in capsys.readouterr().err
    assert _run(["user", "--data-dir", d, "add", "bob", "--password-stdin"], stdin=PW) == 0
    assert _run(["user", "--data-dir", d, "add", "bob", "--password-stdin"], stdin=PW) == 1
    assert "already exists" in capsys.readouterr().err
    assert _run(["user", "--data-dir", d, "passwd", "carol", "--password-stdin"], stdin=PW) == 67
    assert main(["user", "--data-dir", d, "del", "carol"]) == 67
    assert main(["user", "--config", str(tmp_path / "missing.toml"), "list"]) == 78


def test_common_options_after_the_action(tmp_path, capsys):
    d = data_dir(tmp_path)
    cfg = tmp_path / "p.toml"
    cfg.write_text(f'data_dir = "{d}"\n')
    assert (
        _run(["user", "add", "alice@example.test", "-c", str(cfg), "--password-stdin"], stdin=PW)
        == 0
    )
    assert main(["user", "list", "--config", str(cfg)]) == 0
    assert main(["user", "list", "--data-dir", d]) == 0
    assert main(["user", "del", "alice@example.test", "--data-dir", d]) == 0
    out = capsys.readouterr().out
    assert out.count("alice@example.test\t") == 2 and "deleted alice@example.test" in out


def test_an_option_before_the_action_is_kept(tmp_path):
    d = data_dir(tmp_path)
    args = build_parser().parse_args(["user", "--data-dir", d, "list"])
    assert args.data_dir == d and args.config is None
    args = build_parser().parse_args(["user", "-c", "a.toml", "list", "--data-dir", d])
    assert str(args.config) == "a.toml" and args.data_dir == d


def test_minimum_password_length(tmp_path, capsys):
    d = data_dir(tmp_path)
    assert (
        _run(["user", "--data-dir", d, "add", "bob", "--password-stdin"], stdin="elevenchars") == 64
    )
    err = capsys.readouterr().err
    assert "too short: 11 characters, at least 12" in err and "auth.min_password_length" in err
    assert (
        _run(["user", "--data-dir", d, "add", "bob", "--password-stdin"], stdin="twelve chars") == 0
    )
    assert _run(["user", "--data-dir", d, "passwd", "bob"], answers=("short", "short")) == 64
    cfg = tmp_path / "p.toml"
    cfg.write_text(f'data_dir = "{d}"\n[auth]\nmin_password_length = 20\n')
    assert (
        _run(
            ["user", "-c", str(cfg), "passwd", "bob", "--password-stdin"],
            stdin="nineteen characters",
        )
        == 64
    )
    assert "at least 20" in capsys.readouterr().err
    assert (
        _run(
            ["user", "-c", str(cfg), "passwd", "bob", "--password-stdin"],
            stdin="twenty characters!!!",
        )
        == 0
    )

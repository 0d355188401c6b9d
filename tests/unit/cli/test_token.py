"""`pigeon token add|list|remove` (pigeon.cli.token): printed once, stored hashed, statuses."""

from __future__ import annotations

import json
import os
import stat

import pytest

from pigeon.cli.main import main


@pytest.fixture
def cfg(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "pigeon.toml"
    path.write_text(f'data_dir = "{data}"\n')
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_add_list_remove(cfg, capsys):
    status, out, _ = run(capsys, "token", "-c", str(cfg), "add", "ci", "--scope", "send,read")
    assert status == 0
    token = out.strip()
    assert token.startswith("pgn_") and "\n" not in token
    path = cfg.parent / "data" / "api-tokens.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert token not in path.read_text()
    assert json.loads(path.read_text())["tokens"][0]["scopes"] == ["send", "read"]
    status, out, _ = run(capsys, "token", "list", "-c", str(cfg))
    assert status == 0 and out.startswith("ci\tsend,read\t20")
    assert run(capsys, "token", "remove", "ci", "-c", str(cfg))[:2] == (0, "removed ci\n")
    assert run(capsys, "token", "list", "-c", str(cfg))[:2] == (0, "")


@pytest.mark.parametrize(
    ("argv", "status", "words"),
    [
        (["add", "bad name", "--scope", "read"], 64, "bad token name"),
        (["add", "x", "--scope", "root"], 64, "unknown scope"),
        (["add", "x"], 64, "--scope"),
        (["remove", "nobody"], 1, "no such token"),
    ],
)
def test_refusals(cfg, capsys, argv, status, words):
    got, _, err = run(capsys, "token", "-c", str(cfg), *argv)
    assert got == status and words in err


def test_a_name_is_taken_once(cfg, capsys):
    assert run(capsys, "token", "-c", str(cfg), "add", "x", "--scope", "read")[0] == 0
    status, _, err = run(capsys, "token", "-c", str(cfg), "add", "x", "--scope", "send")
    assert status == 1 and "exists" in err


def test_a_bad_configuration_is_78(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_key = 1\n")
    assert run(capsys, "token", "-c", str(bad), "list")[0] == 78


def test_a_token_bound_to_an_account_that_exists(cfg, capsys):
    from pigeon.auth.accounts import AccountStore

    base = ["token", "-c", str(cfg), "add"]
    status, _, err = run(capsys, *base, "shop", "--scope", "send", "--account", "shop@example.test")
    assert status == 1 and "no such account: shop@example.test" in err
    status, _, err = run(capsys, *base, "shop", "--scope", "send", "--account", "two words")
    assert status == 64 and "bad user name" in err
    with AccountStore.in_data_dir(cfg.parent / "data").open() as accounts:
        accounts.add("shop@example.test", "pw")
    status, out, _ = run(capsys, *base, "shop", "--scope", "send", "--account", "Shop@Example.test")
    assert status == 0 and out.startswith("pgn_")
    status, out, _ = run(capsys, "token", "list", "-c", str(cfg))
    assert status == 0 and out.rstrip("\n").endswith("\taccount=shop@example.test")

"""`pigeon data show|downgrade` (cli/data.py) on the data directory of pigeon
0.1.0 (tests/fixtures/datadir-0.1.0): what it reports before and after the
upgrade, and a downgrade that gives back exactly what 0.1.0 wrote."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

import pigeon
from pigeon.auth.accounts import AccountStore
from pigeon.cli.main import main
from pigeon.mailstore.layout import STAMP, open_mailboxes
from pigeon.queue.dbfile import lock_owner
from pigeon.queue.store import QueueStore


@pytest.fixture
def data(tmp_path, datadir_0_1_0) -> Path:
    datadir_0_1_0(tmp_path / "data")
    return tmp_path / "data"


def show(data: Path, capsys) -> tuple[int, dict]:
    status = main(["data", "show", "--json", "--data-dir", str(data)])
    return status, json.loads(capsys.readouterr().out)


def upgrade(data: Path) -> None:
    """What `pigeon serve` does at start-up, as the owner."""
    store = QueueStore(data / "queue")
    store.open(owner=True)
    store.close()
    AccountStore(data / "accounts.db").open(owner=True).close()
    open_mailboxes(data / "mailboxes")


def dump(path: Path) -> tuple[int, list[str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0], list(conn.iterdump())
    finally:
        conn.close()


def test_show_says_the_data_of_0_1_0_is_upgraded_at_the_next_start(data, capsys):
    status, doc = show(data, capsys)
    assert status == 0 and doc["pigeon"] == pigeon.__version__
    assert {f["name"]: (f["found"], f["state"]) for f in doc["formats"]} == {
        "queue": (0, "older"),
        "accounts": (0, "older"),
        "mailboxes": (0, "older"),
    }
    upgrade(data)
    status, doc = show(data, capsys)
    assert status == 0
    assert {f["name"]: (f["found"], f["written_by"], f["state"]) for f in doc["formats"]} == {
        name: (1, pigeon.__version__, "current") for name in ("queue", "accounts", "mailboxes")
    }


def test_show_on_a_new_data_directory_says_none_yet(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    status, doc = show(tmp_path / "data", capsys)
    assert status == 0 and {f["state"] for f in doc["formats"]} == {"none"}


def test_a_downgrade_gives_back_what_0_1_0_wrote(data, tmp_path, datadir_0_1_0, capsys):
    original = tmp_path / "original"
    datadir_0_1_0(original)
    upgrade(data)
    assert dump(data / "queue" / "queue.db")[0] == 1
    status = main(["data", "downgrade", "--to", "0.1.0", "--data-dir", str(data)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "from format 1 to format 0" in out and "formats of pigeon 0.1.0" in out
    for name in ("queue/queue.db", "accounts.db"):
        assert dump(data / name) == dump(original / name), name
    assert not (data / "mailboxes" / STAMP).exists()
    status, doc = show(data, capsys)
    assert {f["state"] for f in doc["formats"]} == {"older"}


def test_a_downgrade_while_pigeon_runs_is_refused(data, capsys):
    fd = lock_owner(data / "queue", exclusive=False)  # as a running pigeon holds it
    try:
        assert main(["data", "downgrade", "--to", "0.1.0", "--data-dir", str(data)]) == 75
    finally:
        os.close(fd)
    assert "stop it first" in capsys.readouterr().err


@pytest.mark.parametrize("release", ["0.0.9", "9.9.9"])
def test_a_downgrade_to_an_unknown_release_is_a_usage_error(data, release, capsys):
    assert main(["data", "downgrade", "--to", release, "--data-dir", str(data)]) == 64
    assert "0.1.0, 0.2.0" in capsys.readouterr().err


def test_newer_data_is_shown_as_such_and_not_downgraded(data, capsys):
    conn = sqlite3.connect(data / "accounts.db")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    status, doc = show(data, capsys)
    assert status == 73
    accounts = next(f for f in doc["formats"] if f["name"] == "accounts")
    assert accounts["state"] == "newer" and "knows formats up to 1" in accounts["problem"]
    assert main(["data", "downgrade", "--to", "0.1.0", "--data-dir", str(data)]) == 73
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "has format 3" in err

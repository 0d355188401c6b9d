"""The account store's format version (auth/accounts.py, `ACCOUNTS`): the
serving pigeon upgrades the accounts.db of pigeon 0.1.0 in place
(tests/fixtures/datadir-0.1.0), `pigeon user` uses it as it is, every open
refuses a newer one, and the accounts keep their passwords."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from pathlib import Path

import pytest

import pigeon
from pigeon.auth import passwords
from pigeon.auth.accounts import ACCOUNTS, AccountError, AccountFormatError, AccountStore
from pigeon.dataformat import read_sqlite
from pigeon.proto import scram


@pytest.fixture
def old_accounts(tmp_path, datadir_0_1_0) -> tuple[Path, dict]:
    manifest = datadir_0_1_0(tmp_path / "data")
    return tmp_path / "data" / "accounts.db", manifest


def version(path: Path) -> tuple[int, str]:
    conn = sqlite3.connect(path)
    try:
        return read_sqlite(conn)
    finally:
        conn.close()


def upgrade_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "upgraded the account" in r.getMessage()]


def assert_upgraded_once(caplog, path: Path) -> None:
    """One INFO line for the upgrade of 0.1.0's store, and the store at format 1."""
    assert upgrade_lines(caplog) == [
        f"upgraded the account store {path} from format 0 to format 1 (pigeon 0.2.0)"
    ]
    assert version(path) == (1, pigeon.__version__)


def assert_logins_work(store: AccountStore, manifest: dict) -> None:
    for account in manifest["accounts"]:
        name, password = account["name"], account["password"]
        assert passwords.verify_password(store.password_hash(name), password)
        assert not passwords.verify_password(store.password_hash(name), password + "x")
        keys = store.scram_keys(name)
        again = scram.derive_keys(password, keys.salt, keys.iterations)
        assert (again.stored_key, again.server_key) == (keys.stored_key, keys.server_key)
        if "address" in account:
            assert store.owner_of(account["address"]) == name


def test_the_owner_upgrades_the_accounts_of_0_1_0_with_one_log_line(old_accounts, caplog):
    path, manifest = old_accounts
    assert version(path) == (0, "")
    caplog.set_level(logging.INFO, logger="pigeon.auth")
    store = AccountStore(path).open(owner=True)
    try:
        assert_logins_work(store, manifest)
    finally:
        store.close()
    assert_upgraded_once(caplog, path)
    caplog.clear()
    AccountStore(path).open(owner=True).close()
    assert upgrade_lines(caplog) == []


def test_pigeon_user_uses_the_accounts_of_0_1_0_as_they_are(old_accounts, caplog):
    path, manifest = old_accounts
    caplog.set_level(logging.INFO, logger="pigeon.auth")
    store = AccountStore(path).open()
    try:
        assert_logins_work(store, manifest)
        store.add("new@example.test", "a new password for the old store")
    finally:
        store.close()
    assert version(path) == (0, "") and upgrade_lines(caplog) == []


def test_a_new_account_store_is_made_in_the_current_format(tmp_path):
    AccountStore(tmp_path / "accounts.db").open().close()
    assert version(tmp_path / "accounts.db") == (ACCOUNTS.current, pigeon.__version__)


@pytest.mark.parametrize("owner", [True, False])
def test_a_newer_account_store_is_refused_in_one_line_and_left_untouched(old_accounts, owner):
    path, _ = old_accounts
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 5")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('written_by', '1.4.0')")
    conn.commit()
    conn.close()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(AccountFormatError) as ei:
        AccountStore(path).open(owner=owner)
    assert isinstance(ei.value, AccountError)  # `pigeon user` and serve: exit 73
    text = str(ei.value)
    assert "\n" not in text
    assert f"account store {path} has format 5 (written by pigeon 1.4.0)" in text
    assert "knows formats up to 1" in text and "run pigeon 1.4.0 or newer" in text
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_a_successor_upgrades_the_accounts_once_it_takes_ownership(old_accounts, caplog):
    """`pigeon restart` into a newer release: opened as a non-owner while the
    old process runs, upgraded when the new one takes over (app/restart.py)."""
    path, manifest = old_accounts
    caplog.set_level(logging.INFO, logger="pigeon.auth")
    store = AccountStore(path).open(owner=False)
    try:
        assert version(path) == (0, "")
        store.take_ownership()
        assert_logins_work(store, manifest)
    finally:
        store.close()
    assert_upgraded_once(caplog, path)

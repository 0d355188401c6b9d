"""The SQLite account store and argon2id hashing."""

from __future__ import annotations

import stat

import pytest

from pigeon.auth import passwords
from pigeon.auth.accounts import AccountError, AccountStore
from pigeon.auth.ratelimit import FailureLimiter
from pigeon.auth.service import AuthService
from pigeon.proto import scram


@pytest.fixture
def store(tmp_path):
    with AccountStore.in_data_dir(tmp_path / "data").open() as s:
        yield s


def test_add_list_get_owner(store):
    acc = store.add("Alice@Example.TEST", "pw", ("Sales@example.test",))
    assert acc.name == "alice@example.test"
    assert acc.addresses == ("alice@example.test", "sales@example.test")
    store.add("bob", "pw2")
    assert [a.name for a in store.list()] == ["alice@example.test", "bob"]
    assert store.get("bob").addresses == ()
    assert store.owner_of("SALES@example.TEST") == "alice@example.test"
    assert store.owner_of("nobody@example.test") is None
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_hashes_and_scram_keys(store):
    store.add("alice@example.test", "secret")
    encoded = store.password_hash("ALICE@example.test")
    assert encoded.startswith("$argon2id$")
    assert passwords.verify_password(encoded, "secret")
    assert not passwords.verify_password(encoded, "Secret")
    assert not passwords.verify_password("garbage", "secret")
    keys = store.scram_keys("alice@example.test")
    assert keys == scram.derive_keys("secret", keys.salt, keys.iterations)
    assert keys.iterations >= 4096  # RFC 7677 §4


def test_errors(store):
    store.add("alice@example.test", "pw")
    with pytest.raises(AccountError, match="already exists"):
        store.add("ALICE@example.test", "pw")
    with pytest.raises(AccountError, match="already belongs to user alice@example.test"):
        store.add("bob@example.test", "pw", ("alice@example.test",))
    with pytest.raises(AccountError, match="no such user"):
        store.set_password("carol", "pw")
    with pytest.raises(AccountError, match="no such user"):
        store.delete("carol")
    with pytest.raises(AccountError, match="empty"):
        store.add("carol", "")
    with pytest.raises(AccountError, match="bad user name"):
        store.add("a b", "pw")
    assert store.get("bob@example.test") is None  # nothing half-added


def test_passwd_and_delete(store):
    store.add("alice@example.test", "old")
    old_keys = store.scram_keys("alice@example.test")
    store.set_password("alice@example.test", "new")
    assert passwords.verify_password(store.password_hash("alice@example.test"), "new")
    assert store.scram_keys("alice@example.test") != old_keys
    store.delete("alice@example.test")
    assert store.list() == [] and store.owner_of("alice@example.test") is None


def test_service_verify(store):
    store.add("alice@example.test", "pw")
    service = AuthService(store, FailureLimiter())
    assert service.verify_password("alice@example.test", "pw").name == "alice@example.test"
    assert service.verify_password("alice@example.test", "nope") is None
    assert service.verify_password("nobody", "pw") is None
    assert service.scram_keys("nobody") is None

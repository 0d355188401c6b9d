"""The login rules (auth/login.py): what AUTH answers, with a real account
store and failure limiter, an injected clock and an injected sleep."""

from __future__ import annotations

import asyncio

import pytest

from pigeon.auth.accounts import Account, AccountStore
from pigeon.auth.login import LoginGate
from pigeon.proto import reply as R
from pigeon.proto.events import AuthRequested
from pigeon.testing.loginkit import LoginWorld

IP = "192.0.2.7"


@pytest.fixture(scope="module")
def accounts_dir(tmp_path_factory):
    """One account store for the module (argon2id is slow on purpose)."""
    path = tmp_path_factory.mktemp("accounts")
    with AccountStore.in_data_dir(path).open() as accounts:
        accounts.add("alice@example.test", "secret", ("sales@example.test",))
    return path


class World(LoginWorld):
    def __init__(self, accounts_dir, tmp_path, **limits) -> None:
        super().__init__(accounts_dir, tmp_path, **limits)
        self.gate = LoginGate(self.service, self.maillog, clock=self.clock, sleep=self.sleep)

    def login(self, password="secret", user="alice@example.test", authzid="", client=None):
        event = AuthRequested("PLAIN", user, authzid, password)
        return asyncio.run((client or self.gate.client(IP, "submission")).login(event))


@pytest.fixture
def world(accounts_dir, tmp_path):
    w = World(accounts_dir, tmp_path)
    yield w
    w.close()


def test_the_right_password_proves_the_account_and_its_addresses(world):
    account = world.login()
    assert isinstance(account, Account)
    assert account.addresses == ("alice@example.test", "sales@example.test")
    assert world.limiter.statistics()["tracked"] == 0  # success forgets the address


def test_a_wrong_password_is_535_and_logged_for_the_operator(world):
    assert world.login("wrong") == R.AUTH_FAILED
    assert world.login(user="nobody@example.test") == R.AUTH_FAILED
    assert world.maillog.failed == [(IP, "PLAIN"), (IP, "PLAIN")]


def test_no_proxy_authorization(world):
    """RFC 4616 §2: an authzid other than the user itself is refused."""
    assert world.login(authzid="bob@example.test") == R.AUTH_FAILED
    assert isinstance(world.login(authzid="ALICE@example.test"), Account)


def test_failures_slow_down_then_lock_the_address_out(accounts_dir, tmp_path):
    w = World(accounts_dir, tmp_path, slow_after=1, delay=2.0, max_failures=3)
    try:
        assert w.login("x") == R.AUTH_FAILED
        assert w.slept == []
        assert w.login("x") == R.AUTH_FAILED
        assert w.slept == [2.0]  # this connection waits, no one else
        assert w.login("x") == R.AUTH_TOO_MANY_FAILURES  # the failure that locked it
        assert w.login("secret") == R.AUTH_TOO_MANY_FAILURES  # not even tried now
        assert len(w.maillog.failed) == 3
    finally:
        w.close()


def test_an_unreadable_store_is_454_and_no_failure(world):
    world.store.close()  # every look-up now fails: AuthUnavailable
    assert world.login() == R.AUTH_TEMPORARY
    assert world.limiter.statistics()["tracked"] == 0


def test_a_scram_key_lookup_that_found_the_store_unreadable_makes_the_login_454(world):
    client = world.gate.client(IP, "smtp")
    world.store.close()
    assert asyncio.run(client.keys("alice@example.test")) is None
    world.store.open()  # readable again, but that exchange was decided without keys
    assert world.login(client=client) == R.AUTH_TEMPORARY
    assert isinstance(world.login(client=client), Account)  # the next exchange is judged anew

"""The readers' login (readers/login.py): pigeon.auth's one rule set, worded
by no protocol, with a real account store and limiter, shared with SMTP."""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest

from pigeon.auth.accounts import Account, AccountStore
from pigeon.auth.login import LoginGate
from pigeon.proto import reply as R
from pigeon.proto import scram
from pigeon.proto.events import AuthRequested
from pigeon.proto.sasl import Challenge, Credentials, NeedKeys, ScramSha256
from pigeon.readers.login import LoginRefusal, ReaderLogins, account_mailbox
from pigeon.testing.loginkit import LoginWorld

IP = "192.0.2.9"


@pytest.fixture(scope="module")
def accounts_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("accounts")
    with AccountStore.in_data_dir(path).open() as accounts:
        accounts.add("alice@example.test", "secret")
        accounts.add("operator", "secret")
    return path


class World(LoginWorld):
    def __init__(self, accounts_dir, tmp_path, **limits) -> None:
        super().__init__(accounts_dir, tmp_path, **limits)
        self.pop3 = ReaderLogins(
            self.service, self.maillog, protocol="pop3", clock=self.clock, sleep=self.sleep
        )
        self.smtp = LoginGate(self.service, self.maillog, clock=self.clock, sleep=self.sleep)

    def password(self, password="secret", user="alice@example.test", authzid=""):
        return asyncio.run(self.pop3.client(IP, "pop3").password(user, password, authzid))


@pytest.fixture
def world(accounts_dir, tmp_path):
    w = World(accounts_dir, tmp_path)
    yield w
    w.close()


def test_the_right_password_proves_the_account_and_its_mailbox(world):
    account = world.password()
    assert isinstance(account, Account)
    assert account_mailbox(account) == ("alice", "example.test")


def test_an_account_without_an_address_has_no_mailbox(world):
    account = world.password(user="operator")
    assert isinstance(account, Account)
    assert account_mailbox(account) is None


def test_a_wrong_password_is_refused_logged_as_plain_on_the_protocols_logger(world, caplog):
    with caplog.at_level(logging.INFO, logger="pigeon.pop3"):
        assert world.password("wrong") is LoginRefusal.FAILED
        assert world.password(user="nobody@example.test") is LoginRefusal.FAILED
    assert world.maillog.failed == [(IP, "PLAIN"), (IP, "PLAIN")]
    lines = [r.getMessage() for r in caplog.records if r.name == "pigeon.pop3"]
    assert lines == [
        "AUTH PLAIN failed for user 'alice@example.test' from [192.0.2.9]",
        "AUTH PLAIN failed for user 'nobody@example.test' from [192.0.2.9]",
    ]


def test_no_proxy_authorization(world):
    assert world.password(authzid="bob@example.test") is LoginRefusal.FAILED


def test_failures_over_pop3_lock_smtp_auth_out_too(accounts_dir, tmp_path):
    """One FailureLimiter: the same address is counted whatever the protocol."""
    w = World(accounts_dir, tmp_path, slow_after=1, max_failures=3)
    try:
        assert w.password("x") is LoginRefusal.FAILED
        assert w.password("x") is LoginRefusal.FAILED
        event = AuthRequested("PLAIN", "alice@example.test", "", "x")
        assert asyncio.run(w.smtp.client(IP, "submission").login(event)) == (
            R.AUTH_TOO_MANY_FAILURES  # the third failure, over SMTP, locked it out
        )
        assert w.password("secret") is LoginRefusal.TOO_MANY_FAILURES  # not even tried
    finally:
        w.close()


def test_an_unreadable_store_is_unavailable_and_no_failure(world):
    world.store.close()
    assert world.password() is LoginRefusal.UNAVAILABLE
    assert world.limiter.statistics()["tracked"] == 0


def test_a_scram_exchange_with_the_keys_the_login_looks_up(world):
    async def exchange(password: str):
        login = world.pop3.client(IP, "pop3")
        mech = ScramSha256(nonce=lambda: b"server-nonce")
        first_bare = b"n=alice@example.test,r=clientnonce"
        step = mech.start(b"n,," + first_bare)
        assert isinstance(step, NeedKeys)
        step = mech.keys(await login.keys(step.username))
        assert isinstance(step, Challenge)
        attrs = dict(a.split(b"=", 1) for a in step.data.split(b","))
        salt, iterations = base64.b64decode(attrs[b"s"]), int(attrs[b"i"])
        final_bare = b"c=" + base64.b64encode(b"n,,") + b",r=" + attrs[b"r"]
        auth_message = first_bare + b"," + step.data + b"," + final_bare
        proof = scram.client_proof(password, salt, iterations, auth_message)
        creds = mech.step(final_bare + b",p=" + base64.b64encode(proof))
        assert isinstance(creds, Credentials)
        return await login.sasl("SCRAM-SHA-256", creds)

    assert isinstance(asyncio.run(exchange("secret")), Account)
    assert asyncio.run(exchange("wrong")) is LoginRefusal.FAILED
    assert world.maillog.failed == [(IP, "SCRAM-SHA-256")]

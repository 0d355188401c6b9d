"""limits.new_mailboxes_per_hour: a bound on Maildirs one client can make appear."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pigeon.config.schema import Config, DomainConfig, Limits
from pigeon.policy.newmailboxes import WINDOW, NewMailboxLimiter, client_key
from pigeon.proto import reply as R
from pigeon.testing.fakes import FakeClock
from pigeon.testing.policyprobe import PolicyProbe

USER = {"user": "someone@open.test"}


def make_policy(tmp_path: Path, limit: int = 3, **kw) -> tuple[PolicyProbe, FakeClock]:
    config = Config(
        hostname="mx.example.test",
        data_dir=tmp_path,
        domains={
            "open.test": DomainConfig("open.test"),
            "listed.test": DomainConfig("listed.test", frozenset({"a", "b", "c", "d"})),
        },
        relay_networks=(),
        limits=Limits(new_mailboxes_per_hour=limit),
        **kw,
    )
    clock = FakeClock()
    return PolicyProbe(config, clock=clock), clock


def rcpt(policy: PolicyProbe, address: str, ip: str = "203.0.113.9", **kw):
    return policy.rcpt(address, ip, **kw)


def test_new_mailboxes_are_capped_per_client_and_hour(tmp_path):
    policy, clock = make_policy(tmp_path)
    assert [rcpt(policy, f"u{i}@open.test") for i in range(3)] == [None] * 3
    assert rcpt(policy, "u3@open.test") == R.TOO_MANY_NEW_MAILBOXES
    assert R.TOO_MANY_NEW_MAILBOXES.code == 450 and R.TOO_MANY_NEW_MAILBOXES.enhanced == "4.7.1"
    # A mailbox already counted is no new one; nor one whose Maildir exists.
    assert rcpt(policy, "u1@open.test") is None and rcpt(policy, "u1+x@open.test") is None
    (tmp_path / "mailboxes" / "open.test" / "old").mkdir(parents=True)
    assert rcpt(policy, "old@open.test") is None
    # Other clients, trusted clients and listed domains are not affected.
    assert rcpt(policy, "v0@open.test", ip="198.51.100.7") is None
    assert rcpt(policy, "w0@open.test", **USER) is None
    assert [rcpt(policy, f"{x}@listed.test") for x in "abcd"] == [None] * 4
    clock.advance(WINDOW)
    assert rcpt(policy, "u3@open.test") is None


def test_zero_means_no_limit(tmp_path):
    policy, _ = make_policy(tmp_path, limit=0)
    assert all(rcpt(policy, f"u{i}@open.test") is None for i in range(500))


def test_ipv6_clients_count_by_slash_64():
    assert (
        client_key("2001:db8:1:2:aaaa::1")
        == client_key("2001:db8:1:2:bbbb::9")
        == "2001:db8:1:2::/64"
    )
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    limiter = NewMailboxLimiter(max_entries=2)
    assert limiter.allow("2001:db8:1:2::1", "m1", 0.0, 1)
    assert not limiter.allow("2001:db8:1:2::2", "m2", 0.0, 1)
    for i in range(5):  # bounded: old clients are dropped
        limiter.allow(f"192.0.2.{i}", f"n{i}", 0.0, 1)
    assert len(limiter._counts) == 2 and len(limiter._counted) == 2


def test_catch_all_makes_a_list_less_domain_one_mailbox(tmp_path):
    policy, _ = make_policy(tmp_path, limit=1, aliases={"@open.test": ("inbox@open.test",)})
    assert all(rcpt(policy, f"u{i}@open.test") is None for i in range(20))


def test_a_reload_keeps_the_counts(tmp_path):
    policy, clock = make_policy(tmp_path, limit=1)
    assert rcpt(policy, "u0@open.test") is None
    config = dataclasses.replace(policy.config, limits=Limits(new_mailboxes_per_hour=1))
    again = PolicyProbe(config, new_mailboxes=policy.deps.new_mailboxes, clock=clock)
    assert rcpt(again, "u1@open.test") == R.TOO_MANY_NEW_MAILBOXES


def test_made_up_local_senders_count_too(tmp_path):
    """A DSN to a new local sender would create its Maildir: MAIL FROM counts."""
    policy, _ = make_policy(tmp_path, limit=2)
    assert policy.mail("s1@open.test") is None
    assert policy.mail("s1@open.test") is None  # counted once
    assert policy.mail("s2@open.test") is None
    assert policy.mail("s3@open.test") == R.TOO_MANY_NEW_MAILBOXES
    owner = {"user": "s3@open.test", "owned": ["s3@open.test"]}
    assert policy.mail("s3@open.test", **owner) is None  # logged in: not counted
    assert policy.mail("x@listed.test") is None
    assert policy.mail("x@remote.test") is None
    assert policy.mail("<>") is None


def test_unknown_recipients_are_refused_before_they_are_counted(tmp_path):
    """LocalRecipients comes first in the rcpt stage: a 550 costs no count."""
    policy, _ = make_policy(tmp_path, limit=1)
    assert [rcpt(policy, f"z{i}@listed.test") for i in range(3)] == [R.UNKNOWN_USER] * 3
    assert rcpt(policy, "u0@open.test") is None

"""Rate limits (policy/ratelimit.py) and their state file (policy/abusestate.py)."""

from __future__ import annotations

import sqlite3

from pigeon.config import load_config
from pigeon.policy.abusestate import AbuseState
from pigeon.policy.api import SessionFacts
from pigeon.policy.ratelimit import (
    ConnectionRateLimit,
    MessageRateLimit,
    RateLimiter,
    network_of,
)
from pigeon.proto.params import MailParams
from pigeon.vocab.address import Address

SENDER = Address("joe", "elsewhere.example")


def _config(**limits):
    return load_config(overrides={"rate_limits": {"exceptions": [], **limits}})


def _checks(config, clock, state=None):
    state = state or AbuseState.memory()
    limiter = RateLimiter(state.table("bucket"), config.rate_limits.time_unit)
    made = (limiter, config.rate_limits, config.relay_networks, clock, "mx.example.test")
    return ConnectionRateLimit(*made), MessageRateLimit(*made)


def test_a_bucket_allows_a_burst_of_rate_then_refills_at_rate_per_time_unit():
    limiter = RateLimiter(AbuseState.memory().table("bucket"), 60.0)
    assert [limiter.take([("k", 3)], 0.0) for _ in range(4)] == [None, None, None, "k"]
    assert limiter.take([("k", 3)], 19.0) == "k"  # 0.95 of a token
    assert limiter.take([("k", 3)], 20.0) is None  # one token after 20 s
    assert limiter.tokens("k", 3, 1000.0) == 3.0  # never more than the burst


def test_one_empty_bucket_takes_nothing_from_the_others():
    limiter = RateLimiter(AbuseState.memory().table("bucket"), 60.0)
    assert limiter.take([("a", 1)], 0.0) is None
    assert limiter.take([("b", 5), ("a", 1)], 0.0) == "a"
    assert limiter.tokens("b", 5, 0.0) == 5.0
    assert limiter.take([("b", 5), ("a", 0)], 0.0) is None  # rate 0: no limit


def test_networks_are_a_24_and_a_64():
    assert network_of("192.0.2.77") == "192.0.2.0/24"
    assert network_of("2001:db8:1:2:3::9") == "2001:db8:1:2::/64"
    assert network_of("::ffff:192.0.2.1") == "192.0.2.0/24"


def test_connections_over_the_network_rate_get_421_naming_it():
    config = _config(client_connections=10, network_connections=2)
    connect, _ = _checks(config, lambda: 0.0)
    assert connect.connect(SessionFacts("192.0.2.1")) is None
    assert connect.connect(SessionFacts("192.0.2.2")) is None
    verdict = connect.connect(SessionFacts("192.0.2.3"))
    assert verdict is not None and verdict.reply is not None
    assert (verdict.reply.code, verdict.reply.enhanced) == (421, "4.7.0")
    assert (
        "mx.example.test" in verdict.reply.lines[0]
        and "network 192.0.2.0/24" in verdict.reply.lines[0]
    )
    assert connect.connect(SessionFacts("198.51.100.1")) is None  # another network


def test_messages_count_per_sender_and_per_user_instead_of_the_client():
    config = _config(client_messages=1, sender_messages=2, user_messages=3)
    _, mail = _checks(config, lambda: 0.0)
    params = MailParams()
    user = SessionFacts("192.0.2.1", user="alice")
    assert [mail.mail(user, None, params) for _ in range(3)] == [None, None, None]
    over = mail.mail(user, None, params)
    assert over is not None and "user alice" in over.reply.lines[0]
    assert (over.reply.code, over.reply.enhanced) == (450, "4.7.1")
    stranger = SessionFacts("198.51.100.1")
    assert mail.mail(stranger, SENDER, params) is None
    over = mail.mail(SessionFacts("203.0.113.1"), SENDER, params)
    assert over is None  # sender: 2 allowed
    over = mail.mail(SessionFacts("203.0.113.2"), SENDER, params)
    assert over is not None and "sender <joe@elsewhere.example>" in over.reply.lines[0]


def test_exceptions_and_relay_networks_are_not_counted():
    config = load_config(
        overrides={"relay_networks": ["192.0.2.0/24"], "rate_limits": {"client_connections": 1}}
    )
    connect, _ = _checks(config, lambda: 0.0)
    for ip in ("192.0.2.1", "192.0.2.1", "127.0.0.1", "127.0.0.1", "::1", "::1"):
        assert connect.connect(SessionFacts(ip)) is None


def test_the_state_file_holds_the_buckets_across_a_reopen(tmp_path):
    state = AbuseState(tmp_path / "abuse.db", flush_interval=60).open()
    config = _config(client_connections=1)
    connect, _ = _checks(config, lambda: 100.0, state)
    assert connect.connect(SessionFacts("192.0.2.1")) is None
    state.close()  # writes what is left
    again = AbuseState(tmp_path / "abuse.db").open()
    connect, _ = _checks(config, lambda: 101.0, again)
    assert connect.connect(SessionFacts("192.0.2.1")) is not None
    again.close()
    assert (tmp_path / "abuse.db").stat().st_mode & 0o777 == 0o600


def test_the_writer_thread_writes_in_batches(tmp_path):
    state = AbuseState(tmp_path / "abuse.db", flush_interval=0.05).open()
    table = state.table("bucket")
    table.put("a", (1.0, 2.0, 3.0))
    table.put("b", (1.0, 2.0, 3.0))
    table.delete("b")

    def rows():
        with sqlite3.connect(tmp_path / "abuse.db") as db:
            return db.execute("SELECT kind, key, a, b, c FROM state").fetchall()

    from pigeon.testing.live import wait_for

    assert wait_for(lambda: rows() == [("bucket", "a", 1.0, 2.0, 3.0)], timeout=10)
    state.close()


def test_the_table_is_bounded_least_recently_used_first(tmp_path):
    state = AbuseState(tmp_path / "abuse.db", max_entries=2, flush_interval=60).open()
    table = state.table("bucket")
    for key in ("a", "b", "c"):
        table.put(key, (0.0, 0.0, 0.0))
    assert table.get("a") is None and len(table) == 2
    state.close()
    reopened = AbuseState(tmp_path / "abuse.db").open()
    assert reopened.table("bucket").get("a") is None
    reopened.close()


def test_a_damaged_or_unknown_state_file_is_started_afresh(tmp_path, caplog):
    path = tmp_path / "abuse.db"
    path.write_bytes(b"this is not sqlite" * 100)
    state = AbuseState(path).open()
    state.table("bucket").put("x", (1.0, 1.0, 0.0))
    state.close()
    assert "could not be read" in caplog.text
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    fresh = AbuseState(path).open()
    assert len(fresh.table("bucket")) == 0
    fresh.close()


def test_a_state_file_that_cannot_be_opened_leaves_the_state_in_memory(tmp_path, caplog):
    (tmp_path / "abuse.db").mkdir()  # not a file at all: sqlite cannot open it
    state = AbuseState(tmp_path / "abuse.db").open()
    state.table("bucket").put("x", (1.0, 1.0, 0.0))
    assert state.table("bucket").get("x") == (1.0, 1.0, 0.0)
    state.close()
    assert "in memory only" in caplog.text and (tmp_path / "abuse.db").is_dir()

"""Login rate limiting (console/ratelimit.py): per address, per name, reset, window, bounded."""

from __future__ import annotations

from pigeon.console.ratelimit import LoginLimiter


def test_five_failures_from_one_address_block_it_for_the_rest_of_the_window():
    limiter = LoginLimiter(max_failures=5, window=900)
    for i in range(4):
        limiter.failed("192.0.2.1", f"name{i}", 1000.0 + i)
        assert limiter.retry_after("192.0.2.1", "other", 1000.0 + i) is None
    limiter.failed("192.0.2.1", "name4", 1004.0)
    # The oldest failure (at 1000) leaves the window at 1900.
    assert limiter.retry_after("192.0.2.1", "other", 1010.0) == 890
    assert limiter.retry_after("192.0.2.9", "other", 1010.0) is None  # another client
    assert limiter.retry_after("192.0.2.1", "other", 1899.5) == 1
    assert limiter.retry_after("192.0.2.1", "other", 1900.0) is None


def test_failures_for_one_name_from_many_addresses_block_the_name():
    limiter = LoginLimiter(max_failures=3, window=60)
    for i in range(3):
        limiter.failed(f"198.51.100.{i}", "Admin", 10.0)
    assert limiter.retry_after("203.0.113.7", "admin", 20.0) == 50  # names: any case
    assert limiter.retry_after("203.0.113.7", "alice", 20.0) is None


def test_a_success_resets_both_counts():
    limiter = LoginLimiter(max_failures=2, window=60)
    limiter.failed("192.0.2.1", "admin", 1.0)
    limiter.succeeded("192.0.2.1", "admin")
    limiter.failed("192.0.2.1", "admin", 2.0)
    assert limiter.retry_after("192.0.2.1", "admin", 3.0) is None
    limiter.failed("192.0.2.1", "admin", 3.0)
    assert limiter.retry_after("192.0.2.1", "admin", 4.0) == 58


def test_memory_is_bounded():
    limiter = LoginLimiter(max_failures=5, window=900, cap=100)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}", f"n{i}", 1.0)
    assert len(limiter.by_address) == 100 and len(limiter.by_name) == 100
    # the most recent keys are the ones kept
    limiter.failed("10.0.3.231", "x", 2.0)
    assert "10.0.3.231" in limiter.by_address._failures
    for _ in range(50):
        limiter.failed("192.0.2.1", "y", 3.0)
    assert len(limiter.by_address._failures["192.0.2.1"]) == 5

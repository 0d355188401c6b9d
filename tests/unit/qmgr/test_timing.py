"""qmgr/timing.py and qmgr/destinations.py: pure scheduling, integer time, stub rng."""

from __future__ import annotations

import random

import pytest

from pigeon.qmgr.destinations import DestinationState
from pigeon.qmgr.timing import delay_warning_due, expired, next_attempt


class FixedRng:
    def __init__(self, value: float) -> None:
        self.value = value

    def uniform(self, a: float, b: float) -> float:
        assert (a, b) == (-0.1, 0.1)
        return self.value


def test_backoff_doubles_from_min_and_caps_at_max():
    rng = FixedRng(0.0)
    delays = [next_attempt(1000, n, rng) - 1000 for n in range(1, 8)]
    assert delays == [300, 600, 1200, 2400, 4000, 4000, 4000]
    assert next_attempt(1000, 0, rng) == 1300  # never attempted: min_backoff


def test_backoff_custom_limits_and_huge_attempts():
    rng = FixedRng(0.0)
    assert next_attempt(0, 1, rng, min_backoff=60, max_backoff=100) == 60
    assert next_attempt(0, 2, rng, min_backoff=60, max_backoff=100) == 100
    assert next_attempt(0, 10_000, rng) == 4000  # no overflow
    with pytest.raises(ValueError):
        next_attempt(0, -1, rng)


def test_jitter_is_ten_percent_and_never_above_max():
    assert next_attempt(0, 1, FixedRng(0.1)) == pytest.approx(330)
    assert next_attempt(0, 1, FixedRng(-0.1)) == pytest.approx(270)
    assert next_attempt(0, 9, FixedRng(0.1)) == 4000  # capped after jitter
    assert next_attempt(0, 9, FixedRng(-0.1)) == pytest.approx(3600)
    rng = random.Random(7)
    spread = {round(next_attempt(0, 2, rng)) for _ in range(200)}
    assert min(spread) >= 540 and max(spread) <= 660 and len(spread) > 50


def test_expired_at_exactly_max_lifetime_and_zero_means_try_once():
    assert not expired(100, 100 + 431999, 432000)
    assert expired(100, 100 + 432000, 432000)
    assert expired(100, 100, 0)


def test_delay_warning_due_once_and_off_at_zero():
    assert not delay_warning_due(0, 14399, 14400, False)
    assert delay_warning_due(0, 14400, 14400, False)
    assert not delay_warning_due(0, 99999, 14400, True)  # already warned
    assert not delay_warning_due(0, 99999, 0, False)  # switched off


def test_destination_concurrency_ceiling():
    d = DestinationState(concurrency=2)
    assert d.acquire("a") and d.acquire("a")
    assert not d.acquire("a")
    assert d.acquire("b")  # other destinations unaffected
    d.release("a")
    assert d.in_flight("a") == 1 and d.acquire("a")
    with pytest.raises(ValueError):
        d.release("nowhere")


def test_dead_destination_after_consecutive_failures_then_probe():
    d = DestinationState(failure_limit=3, dead_time=300)
    d.record("a", 10, reached=False, reason="connect: refused")
    d.record("a", 11, reached=False, reason="connect: refused")
    assert not d.is_dead("a", 11)
    d.record("a", 12, reached=False, reason="connect: timed out")
    assert d.is_dead("a", 12) and d.is_dead("a", 311)
    assert d.dead_reason("a") == "connect: timed out" and d.dead_until("a") == 312
    assert not d.is_dead("a", 312)  # dead time over: the next one probes
    d.record("a", 320, reached=False, reason="still down")
    assert d.is_dead("a", 320) and d.dead_until("a") == 620  # one failed probe: dead again
    d.record("a", 700, reached=True)
    assert not d.is_dead("a", 700) and d.statistics(700) == {
        "destinations": 0,
        "dead": 0,
        "in_flight": 0,
    }


def test_success_resets_the_failure_count():
    d = DestinationState(failure_limit=2)
    d.record("a", 0, reached=False)
    d.record("a", 1, reached=True)
    d.record("a", 2, reached=False)
    assert not d.is_dead("a", 2)
    assert d.statistics(2)["destinations"] == 1

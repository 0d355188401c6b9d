"""Retry schedule of webhook POSTs (webhooks/backoff.py): integer times, no sleeping."""

from __future__ import annotations

from pigeon.webhooks.backoff import MAX_DELAY, delay, next_try


def test_doubling_from_ten_seconds_to_an_hour():
    assert [delay(n) for n in range(1, 11)] == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]
    assert delay(500) == MAX_DELAY
    assert delay(0) == 0


def test_next_try_within_max_age():
    assert next_try(created=0, failures=1, now=5, max_age=100) == 15
    assert next_try(created=0, failures=4, now=50, max_age=100) == 100  # a last try at the deadline
    assert next_try(created=0, failures=5, now=100, max_age=100) is None  # given up
    assert next_try(created=0, failures=1, now=250, max_age=100) is None


def test_three_days_of_tries():
    created, now, failures, tries = 0.0, 0.0, 0, 0
    while (when := next_try(created, failures + 1, now, 259200)) is not None:
        failures, now, tries = failures + 1, when, tries + 1
        assert tries < 200
    assert now == 259200 and 75 < tries < 85  # 10 doubling, then hourly

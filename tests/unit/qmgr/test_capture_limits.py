"""The capture store's size and age limits (qmgr/capture.py `over_limits`): pure, time passed in."""

from __future__ import annotations

from pigeon.qmgr.capture import over_limits

DAY = 86400.0


def test_nothing_over_nothing_removed():
    entries = [("A", 100.0, 10), ("B", 200.0, 10)]
    assert over_limits(entries, 300.0, max_size=20, max_age=DAY) == []
    assert over_limits([], 300.0, max_size=0, max_age=1) == []


def test_too_old_goes_first_whatever_the_size():
    entries = [("NEW", 10 * DAY, 5), ("OLD", 1.0, 5), ("EDGE", 3 * DAY, 5)]
    # EDGE is exactly max_age old: kept (older than, not as old as)
    assert over_limits(entries, 10 * DAY, max_size=10**9, max_age=7 * DAY) == ["OLD"]


def test_over_the_size_the_oldest_go_until_the_rest_fit():
    entries = [("C", 30.0, 400), ("A", 10.0, 500), ("B", 20.0, 300)]
    assert over_limits(entries, 40.0, max_size=700, max_age=DAY) == ["A"]
    assert over_limits(entries, 40.0, max_size=399, max_age=DAY) == ["A", "B", "C"]
    assert over_limits(entries, 40.0, max_size=400, max_age=DAY) == ["A", "B"]


def test_both_limits_together_and_ties_by_id():
    entries = [("B", 10.0, 100), ("A", 10.0, 100), ("OLD", 0.0, 100), ("Z", 50.0, 100)]
    assert over_limits(entries, 100.0, max_size=100, max_age=95.0) == ["OLD", "A", "B"]

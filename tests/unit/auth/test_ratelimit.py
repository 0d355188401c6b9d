"""Failed-login accounting: slow down, refuse, forget; one IP never affects another."""
from __future__ import annotations

from pigeon.auth.ratelimit import FailureLimiter, LimitSettings, Verdict

S = LimitSettings(slow_after=2, delay=1.0, max_delay=3.0, max_failures=5, window=100.0,
                  lockout=50.0, max_entries=3)


def test_slowed_then_refused_then_released():
    lim = FailureLimiter(S)
    assert lim.check("a", 0) == Verdict()
    lim.failure("a", 0)
    assert lim.check("a", 1) == Verdict()
    lim.failure("a", 1)
    assert lim.check("a", 2) == Verdict(delay=1.0)
    lim.failure("a", 2)
    lim.failure("a", 3)
    assert lim.check("a", 4) == Verdict(delay=3.0)      # capped at max_delay
    lim.failure("a", 4)                                  # the 5th: locked out
    assert lim.check("a", 5) == Verdict(refuse=True)
    assert lim.check("b", 5) == Verdict()                # others unaffected
    lim.success("a", 6)                                  # success cannot lift a lockout
    assert lim.check("a", 53) == Verdict(refuse=True)
    assert lim.check("a", 54.1) == Verdict()             # lockout over
    assert lim.statistics() == {"tracked": 0, "locked": 0}


def test_window_and_success_forget():
    lim = FailureLimiter(S)
    lim.failure("a", 0)
    lim.failure("a", 1)
    assert lim.check("a", 2).delay == 1.0
    assert lim.check("a", 101).delay == 0.0              # outside the window
    lim.failure("b", 0)
    lim.failure("b", 0)
    lim.success("b", 1)
    assert lim.check("b", 1) == Verdict()


def test_bounded_memory():
    lim = FailureLimiter(S)
    for i in range(10):
        lim.failure(f"10.0.0.{i}", 0)
    assert lim.statistics()["tracked"] == 3

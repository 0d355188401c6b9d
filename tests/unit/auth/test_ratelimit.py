"""Failed-login accounting: slow down, refuse, forget; one IP never affects another."""

from __future__ import annotations

from pigeon.auth.ratelimit import FailureLimiter, LimitSettings, Verdict

S = LimitSettings(
    slow_after=2,
    delay=1.0,
    max_delay=3.0,
    max_failures=5,
    window=100.0,
    lockout=50.0,
    max_entries=3,
)


def test_slowed_then_refused_then_released():
    lim = FailureLimiter(S)
    assert lim.check("a", 0) == Verdict()
    lim.failure("a", 0)
    assert lim.check("a", 1) == Verdict()
    lim.failure("a", 1)
    assert lim.check("a", 2) == Verdict(delay=1.0)
    lim.failure("a", 2)
    lim.failure("a", 3)
    assert lim.check("a", 4) == Verdict(delay=3.0)  # capped at max_delay
    lim.failure("a", 4)  # the 5th: locked out
    assert lim.check("a", 5) == Verdict(refuse=True)
    assert lim.check("b", 5) == Verdict()  # others unaffected
    lim.success("a", 6)  # success cannot lift a lockout
    assert lim.check("a", 53) == Verdict(refuse=True)
    assert lim.check("a", 54.1) == Verdict()  # lockout over
    assert lim.statistics() == {"tracked": 0, "locked": 0}


def test_window_and_success_forget():
    lim = FailureLimiter(S)
    lim.failure("a", 0)
    lim.failure("a", 1)
    assert lim.check("a", 2).delay == 1.0
    assert lim.check("a", 101).delay == 0.0  # outside the window
    lim.failure("b", 0)
    lim.failure("b", 0)
    lim.success("b", 1)
    assert lim.check("b", 1) == Verdict()


def test_bounded_memory():
    lim = FailureLimiter(S)
    for i in range(10):
        lim.failure(f"10.0.0.{i}", 0)
    assert lim.statistics()["tracked"] == 3


def test_attempts_are_counted_before_the_check():
    """Rule 0: parallel attempts each count, so at most max_failures are tried."""
    lim = FailureLimiter(S)
    verdicts = [lim.attempt("a", 0) for _ in range(45)]  # none has finished yet
    admitted = [v for v in verdicts if not v.refuse]
    assert len(admitted) == S.max_failures
    # In flight they count like failures for the delay too (Rule 1).
    assert [v.delay for v in admitted] == [0.0, 0.0, 1.0, 2.0, 3.0]
    for _ in admitted:
        lim.failure("a", 1)
    assert lim.locked("a", 1) and lim.check("a", 1).refuse


def test_release_and_success_end_an_attempt_without_a_failure():
    lim = FailureLimiter(S)
    lim.attempt("a", 0)
    lim.release("a", 0)  # e.g. the account store was unavailable
    lim.attempt("a", 0)
    lim.success("a", 0)
    assert lim.check("a", 0) == Verdict() and lim.statistics()["tracked"] == 0
    for _ in range(4):  # 4 failures, then one attempt in flight: 5 = max
        lim.attempt("a", 1)
        lim.failure("a", 1)
    lim.attempt("a", 2)
    assert lim.attempt("a", 2).refuse
    lim.success("a", 3)  # the one in flight succeeded: failures forgotten
    assert lim.check("a", 3) == Verdict()


def test_ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4():
    lim = FailureLimiter(S)
    for i in range(S.max_failures):  # a host rotating through its /64
        lim.attempt(f"2001:db8:1:2::{i:x}", 0)
        lim.failure(f"2001:db8:1:2::{i:x}", 0)
    assert lim.attempt("2001:db8:1:2:ffff::1", 1).refuse
    assert not lim.attempt("2001:db8:1:3::1", 1).refuse  # the next /64 is someone else
    for _ in range(S.max_failures):
        lim.failure("::ffff:192.0.2.7", 0)
    assert lim.check("192.0.2.7", 1).refuse
    assert not lim.check("192.0.2.8", 1).refuse

"""Parallel password guesses against a live server: each is counted before it is checked.

Before, the failed-login limit was checked before and counted after each
password check, so 45 simultaneous guesses from one address were all tried.
Now at most auth.max_failures are in flight or failed; the others get 421
4.7.0 without their password being looked at.
"""

from __future__ import annotations

import base64
import smtplib
import threading

import pytest
from secure_helpers import CONFIG, USER, add_user, insecure_context

from pigeon.testing.live import wait_for

pytestmark = pytest.mark.e2e

GUESSES = 45
MAX_FAILURES = 10


def test_parallel_guesses_are_limited_to_max_failures(pigeon_factory):
    proc = pigeon_factory(CONFIG + f"[auth]\nmax_failures = {MAX_FAILURES}\nfailure_delay = 0\n")
    add_user(proc)
    barrier = threading.Barrier(GUESSES, timeout=60)
    codes: list[int] = []
    lock = threading.Lock()

    def guess(n: int) -> None:
        code = 0
        try:
            with smtplib.SMTP_SSL(
                "127.0.0.1", proc.submissions_port, timeout=60, context=insecure_context()
            ) as s:
                s.ehlo("guesser.test")
                token = base64.b64encode(f"\0{USER}\0wrong-{n}".encode()).decode()
                barrier.wait()  # every guess leaves at the same moment
                code = s.docmd("AUTH", f"PLAIN {token}")[0]
        except smtplib.SMTPServerDisconnected:
            code = -1  # closed after the 421
        finally:
            with lock:
                codes.append(code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(GUESSES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(codes) == GUESSES, codes
    # MAX_FAILURES were checked: all but the last answered 535, the one that
    # locked the address out 421 like every guess refused unchecked.
    assert codes.count(535) == MAX_FAILURES - 1, sorted(codes)
    assert codes.count(421) == GUESSES - MAX_FAILURES + 1, sorted(codes)
    # The log agrees: exactly MAX_FAILURES passwords were checked and failed.
    assert wait_for(lambda: proc.log().count("AUTH PLAIN failed") >= MAX_FAILURES)
    assert proc.log().count("AUTH PLAIN failed") == MAX_FAILURES

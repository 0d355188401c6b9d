"""The stop's hard deadline (app/deadline.py), in child processes: it ends them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

#: A thread that would hold the child's exit for a minute (a stuck disk write).
STUCK = "threading.Thread(target=time.sleep, args=(60,)).start()\n"


def child(body: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(
        """\
        import asyncio, logging, threading, time
        from concurrent.futures import ThreadPoolExecutor
        from pigeon.app.deadline import StopDeadline
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        """
    )
    # Without the deadline the child would live 60 s: the timeout fails the test.
    return subprocess.run(
        [sys.executable, "-c", code + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_stuck_thread_cannot_hold_the_exit_past_the_deadline():
    out = child(STUCK + "StopDeadline().arm(0.5)\n")
    assert out.returncode == 0, out
    (line,) = [x for x in out.stderr.splitlines() if "leaving now" in x]
    assert line.startswith("still running 0.5s after the stop began (threads: ")
    assert "acknowledged mail stays queued" in line


def test_settle_leaves_a_busy_thread_pool_to_the_deadline_and_disarms_an_idle_one():
    out = child(
        """\
        async def main():
            idle, busy = ThreadPoolExecutor(), ThreadPoolExecutor()
            idle.submit(time.sleep, 0.01)
            clean = StopDeadline()
            clean.arm(20)
            await clean.settle(idle)
            print("idle pool: armed", clean.armed, flush=True)
            busy.submit(time.sleep, 60)
            stuck = StopDeadline()
            stuck.arm(1)
            await stuck.settle(busy)
            await asyncio.sleep(60)  # the deadline ends the process meanwhile
        asyncio.run(main())
        """
    )
    assert out.returncode == 0, out
    assert out.stdout == "idle pool: armed False\n"
    assert "still running 1s after the stop began" in out.stderr


def test_leave_now_is_at_once():
    out = child(STUCK + "StopDeadline().leave_now('second SIGTERM during the stop')\n")
    assert out.returncode == 0, out
    assert "second SIGTERM during the stop: leaving now" in out.stderr

"""The hard deadline of a stop: whatever still runs then, the process leaves.

    deadline = StopDeadline()
    deadline.arm(grace + HARD_MARGIN)          # the lifecycle, as a stop begins
    ...
    await deadline.settle(executor)            # the stop is done: the threads left?
    deadline.leave_now("second SIGTERM")      # a second signal: at once

Contract:
  * `arm(seconds)` starts a daemon thread. If the process is still there
    `seconds` later, whatever holds it (a thread stuck in a disk write, an
    executor thread, a close that hangs, the interpreter joining threads at
    exit), the thread logs one line, flushes the log (at most FLUSH_TIMEOUT)
    and ends the process with `os._exit(0)`: nothing acknowledged can be
    lost that way (a 250 follows the fsync; an entry being delivered stays
    'active' and is recovered at the next start), so the stop still counts
    as a clean one. Arming again keeps the first deadline.
  * `leave_now(why)` does the same at once (a second SIGTERM or SIGINT).
  * `settle(executor)`, once the stop has closed everything: shuts the
    event loop's default executor down without waiting on the event loop,
    and disarms the deadline when its threads have all ended before it; a
    thread that is still busy then is left to the deadline. So the default
    thread pool never holds the exit past the deadline, and a process that
    stopped cleanly (or a test running the lifecycle in-process) is not
    ended from under its caller.
  * `at`: the monotonic time of the deadline (None before `arm`); the main
    process of several waits for its workers until then (app/workers.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from pigeon.obs.logsetup import flush_logs

__all__ = ["FLUSH_TIMEOUT", "HARD_MARGIN", "StopDeadline"]

log = logging.getLogger("pigeon")

#: Seconds after the grace period at which the process leaves whatever runs
#: (docs/admin.md "Stop": gone within grace + 5 s).
HARD_MARGIN = 4.0

#: Seconds the log may take to be written before the process leaves anyway.
FLUSH_TIMEOUT = 0.5


class StopDeadline:
    """See the module contract."""

    def __init__(self) -> None:
        self.at: float | None = None
        self._cancel = threading.Event()

    def arm(self, seconds: float) -> None:
        if self.at is not None:
            return
        self.at = time.monotonic() + seconds
        threading.Thread(
            target=self._watch, args=(seconds,), name="pigeon-stop-deadline", daemon=True
        ).start()

    def disarm(self) -> None:
        self._cancel.set()

    @property
    def armed(self) -> bool:
        """Whether the deadline will end the process if it is still there then."""
        return self.at is not None and not self._cancel.is_set()

    def remaining(self) -> float:
        return 0.0 if self.at is None else max(0.0, self.at - time.monotonic())

    def _watch(self, seconds: float) -> None:
        if not self._cancel.wait(seconds):
            busy = sorted(
                t.name for t in threading.enumerate() if t is not threading.current_thread()
            )
            self.leave_now(
                f"still running {seconds:g}s after the stop began (threads: {', '.join(busy)})"
            )

    def leave_now(self, why: str) -> None:
        log.warning("%s: leaving now (acknowledged mail stays queued)", why)
        flush_logs(FLUSH_TIMEOUT)
        os._exit(0)

    async def settle(self, executor: ThreadPoolExecutor) -> None:
        if self.at is None:
            return
        done = threading.Event()

        def join() -> None:
            executor.shutdown(wait=True, cancel_futures=True)
            done.set()

        threading.Thread(target=join, name="pigeon-stop-join", daemon=True).start()
        while not done.is_set() and self.remaining() > 0:
            await asyncio.sleep(0.02)  # bounded by the deadline
        if done.is_set():
            self.disarm()

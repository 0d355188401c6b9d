"""Closing a store while another thread is inside one of its queries ends in
an error for that thread, never in a crashed process.

At a stop, the queue manager's scan runs on in its worker thread
(asyncio.to_thread cannot be cancelled) while the lifecycle closes the
store; the account store is closed while a login's lookup may be in a
thread. sqlite3 closing a connection another thread is using crashes the
interpreter (SIGSEGV, seen as `pigeon serve` exiting with -11), so each
store closes under the lock its queries hold. The race runs in a child
process: a crash fails the test instead of killing the test run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

RACE = textwrap.dedent(
    """
    import sys, tempfile, threading
    from pathlib import Path

    ROUNDS = int(sys.argv[2])

    def race(open_store, query, close):
        for _ in range(ROUNDS):
            store = open_store(Path(tempfile.mkdtemp()))
            running = threading.Event()

            def spin():
                running.set()
                while True:
                    try:
                        query(store)
                    except Exception:  # closed: the error we want, not a crash
                        return

            t = threading.Thread(target=spin)
            t.start()
            running.wait()
            close(store)
            t.join(10)
            assert not t.is_alive()

    if sys.argv[1] == "queue":
        from pigeon.queue.store import QueueStore

        def open_queue(d):
            s = QueueStore(d / "queue", fsync=False)
            s.open()
            return s

        race(open_queue, lambda s: (s.due(0.0, 100), s.next_retry()), lambda s: s.close())
    else:
        from pigeon.auth.accounts import AccountStore

        def open_accounts(d):
            return AccountStore(d / "accounts.db").open(owner=True)

        race(open_accounts, lambda s: s.owner_of("a@example.test"), lambda s: s.close())
    print("survived")
    """
)


def _race(kind: str, rounds: int = 200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", RACE, kind, str(rounds)],
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_queue_store_closes_safely_while_a_scan_thread_queries():
    done = _race("queue")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "survived" in done.stdout


def test_the_account_store_closes_safely_while_a_lookup_thread_queries():
    done = _race("accounts")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "survived" in done.stdout

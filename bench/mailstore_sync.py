"""Micro benchmark of the mailbox model's sync (pigeon/mailstore/state.py), run by hand.

    .venv/bin/python bench/mailstore_sync.py [--messages 100000] [--dir /tmp/x]

Builds a Maildir of N messages in new/ (small files with Dovecot's ,S= and
,W= sizes, as delivery writes them), then times, each in a fresh state (what
a new pigeon process does) unless said otherwise:

  first open     new/ -> cur/ for every file, UIDs given, the uidlist written
  cold open      the uidlist replayed and cur/ listed (a restart)
  warm open      another session opening the folder in the same process
                 (the shared state, directory mtimes unchanged)
  re-sync        sync() of an open handle, nothing changed
  re-sync +1     sync() after one new message in new/
  store 1        set_flags on one message, then the next sync of a second
                 handle (sees the change)

Not a test and not part of `make bench`: it prints the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from pigeon.mailstore.mailbox import UserMail
from pigeon.mailstore.names import sized_name, unique_base
from pigeon.mailstore.state import MTIME_SLACK, forget_state

BODY = b"From: a@example.test\nTo: b@example.test\nSubject: hello\n\nhello world\n"


def make(maildir: str, count: int) -> None:
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    size, vsize = len(BODY), len(BODY) + BODY.count(b"\n")
    new = os.path.join(maildir, "new")
    start = 1_700_000_000
    for i in range(count):
        name = sized_name(unique_base(start + i), size, vsize)
        fd = os.open(os.path.join(new, name), os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, BODY)
        os.close(fd)


def timed(label: str, fn):  # type: ignore[no-untyped-def]
    """Run `fn`, print its wall-clock and CPU time (the CPU time of this
    process: steadier than the wall clock on a busy machine)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{label:<14} {1000 * wall:9.1f} ms wall {1000 * cpu:9.1f} ms cpu")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    top = tempfile.mkdtemp(dir=args.dir, prefix="pigeon-sync-bench-")
    try:
        maildir = os.path.join(top, "alice")
        t0 = time.perf_counter()
        make(maildir, args.messages)
        print(f"{args.messages} messages made in {time.perf_counter() - t0:.1f} s")
        user = UserMail(maildir)
        first = timed("first open", lambda: user.open("INBOX"))
        assert len(first.messages) == args.messages
        time.sleep(MTIME_SLACK + 0.1)  # let the directory mtimes become trustworthy
        for _ in range(3):
            forget_state(maildir)
            cold = timed("cold open", lambda: user.open("INBOX"))
        for _ in range(3):
            timed("warm open", lambda: user.open("INBOX"))
        for _ in range(3):
            timed("re-sync", cold.sync)
        make_one = os.path.join(maildir, "new", sized_name(unique_base(), len(BODY), len(BODY)))
        with open(make_one, "wb") as f:
            f.write(BODY)
        changes = timed("re-sync +1", cold.sync)
        assert changes.added == [args.messages + 1]
        other = user.open("INBOX")
        timed("store 1", lambda: cold.set_flags([5], ["\\Seen"], "add"))
        changes = timed("sync after", other.sync)
        assert changes.flag_changes == [5]
        print(f"uidlist: {os.path.getsize(os.path.join(maildir, 'pigeon-uidlist'))} bytes")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()

"""SIGKILL a process in the middle of commits: what it acknowledged must survive.

Contract:
  * `commit_then_kill(spec, acks=150)` starts a child Python process that
    opens the queue store named by `spec` (a directory: the embedded
    `QueueStore`; a postgresql:// URL: `PgQueueStore` of node "doomed",
    whose schema must exist) and commits small messages from 8 threads,
    printing "ACK <queue_id>" only after each commit returned (as the SMTP
    side says 250 only then, CONTRIBUTING.md rule 9). Once `acks` lines
    arrived the child is SIGKILLed; the ids it acknowledged, including
    lines it flushed before dying, are returned.
  * Each message's content begins "Subject: <queue_id>", so the caller can
    check that every acknowledged id came back with its own content.
  * Bounded: the child stops by itself after 60 s; the reading ends when
    its output does.
"""

from __future__ import annotations

import signal
import subprocess
import sys

__all__ = ["commit_then_kill"]

_CHILD = r"""
import sys, threading, time
from pathlib import Path
from pigeon.queue.model import Envelope, Recipient
spec = sys.argv[1]
if spec.startswith("postgresql://"):
    from pigeon.store.pg.store import PgQueueStore
    store = PgQueueStore(spec, node="doomed")
else:
    from pigeon.queue.store import QueueStore
    store = QueueStore(Path(spec))
store.open()
out = threading.Lock()
def worker():
    while True:
        sp = store.new_spool()
        sp.write(b"Subject: " + sp.queue_id.encode() + b"\r\n\r\n" + b"x" * 3000 + b"\r\n")
        env = Envelope(sp.queue_id, "a@b.test", [Recipient("c@d.test")], received_at=time.time())
        store.commit(sp, env)
        with out:   # "250" only after commit() returned, like the SMTP side
            sys.stdout.write("ACK " + sp.queue_id + "\n"); sys.stdout.flush()
for _ in range(8):
    threading.Thread(target=worker, daemon=True).start()
time.sleep(60)
"""


def commit_then_kill(spec: str, acks: int = 150) -> list[str]:
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, spec], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked: list[str] = []
    try:
        for line in proc.stdout:
            acked.append(line.split()[1])
            if len(acked) >= acks:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # Lines the child flushed before dying are acknowledged too.
    acked += [ln.split()[1] for ln in proc.stdout.read().splitlines() if ln.startswith("ACK ")]
    proc.stdout.close()
    return acked

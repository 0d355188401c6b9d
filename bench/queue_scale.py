"""Queue scale: does new mail still move when the queue holds a huge deferred backlog?

For each backlog size (default 0, 10k, 100k, 1M deferred entries) this builds
a fresh store, inserts the backlog straight into queue.db in one transaction
(envelope rows sharing one small JSON; every entry is DUE, the worst case:
a long outage just ended), then measures for one new message:

  commit   QueueStore.commit() of the new message (fsync on, as in production)
  due      the first QueueStore.due(now, 64) call that returns it
  pick     a running queue manager (concurrency 64, FakeAgent for "smtp"),
           already busy with the due backlog: a second new message is
           committed, then from nudge() until the agent receives its request. Every backlog
           entry has content (a hard link to one shared file: recover()
           quarantines rows without content), so the manager really
           delivers them (the FakeAgent defers them again).
  scan     for contrast: the old due() query (state IN (...) ORDER BY
           next_attempt), which sorts every due row.

Usage:  .venv/bin/python bench/queue_scale.py [--entries 0,10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from pigeon.config.schema import Config, DomainConfig
from pigeon.qmgr import Qmgr, QmgrSettings
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.store import QueueStore
from pigeon.routing.resolve import Router
from pigeon.testing.fakes import FakeAgent, FakeReply, RecordingMaillog

OLD_DUE = (
    "SELECT queue_id FROM queue WHERE state IN ('incoming','deferred') "
    "AND next_attempt <= ? ORDER BY next_attempt LIMIT ?"
)


def fill(root: Path, n: int, now: float) -> float:
    t0 = time.perf_counter()
    db = sqlite3.connect(root / "queue.db")
    db.execute("PRAGMA synchronous=OFF")
    env = json.dumps(
        Envelope(
            "BACKLOG", "s@src.test", [Recipient("r@slow.test")], received_at=now - 3600, size=40
        ).to_dict()
    )
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO queue VALUES (?, 'deferred', ?, ?)",
        ((f"B{i:014d}", now - 3600 + i * 1e-3, env) for i in range(n)),
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # as a long-running server would have
    db.close()
    for i in range(n):
        if i % 60000 == 0:  # ext4 allows 65000 links per inode
            shared = root / f"shared-content-{i}"
            shared.write_bytes(b"Subject: backlog\r\n\r\nx\r\n")
        os.link(shared, root / "msg" / f"B{i:014d}")
    return time.perf_counter() - t0


def commit_new(store: QueueStore, now: float) -> tuple[str, float]:
    t0 = time.perf_counter()
    sp = store.new_spool()
    sp.write(b"Received: by bench\r\nSubject: new\r\n\r\nnew mail\r\n")
    store.commit(
        sp,
        Envelope(
            sp.queue_id, "s@src.test", [Recipient("r@fast.test")], received_at=now, size=sp.size
        ),
    )
    return sp.queue_id, time.perf_counter() - t0


async def pick(store: QueueStore, router: Router) -> float:
    """Start a manager, let it get busy with the backlog, then commit one new
    message, nudge, and time until the agent is handed its request."""
    agent = FakeAgent(lambda req, r: FakeReply("4.4.1", "slow.test is slow"))
    mgr = Qmgr(
        store,
        router,
        {"smtp": agent},
        QmgrSettings(hostname="bench.test", fsync=False, concurrency=64),
        maillog=RecordingMaillog(),
    )
    task = asyncio.create_task(mgr.run())
    try:
        deadline = time.perf_counter() + 300
        while len(agent.requests) < 65:  # recovered, and busy: past the first batch
            if task.done():
                task.result()
            if agent.requests and (store.next_due() or 0) > time.time():
                break  # (small backlogs drain at once)
            assert time.perf_counter() < deadline, "manager never got busy"
            await asyncio.sleep(0.001)
        qid, _ = await asyncio.to_thread(commit_new, store, time.time())
        t0 = time.perf_counter()
        mgr.nudge()
        while not any(r.queue_id == qid for r in agent.requests):
            if task.done():
                task.result()
            assert time.perf_counter() - t0 < 120, "new message not picked within 120 s"
            await asyncio.sleep(0.0002)
        return time.perf_counter() - t0
    finally:
        await mgr.stop()
        await task


def run_one(n: int, workdir: Path) -> dict:
    root = workdir / f"q{n}"
    cfg = Config(
        hostname="bench.test",
        data_dir=root,
        domains={"bench.test": DomainConfig("bench.test", None)},
    )
    store = QueueStore(root, fsync=True)
    store.open()
    try:
        now = time.time()
        fill_s = fill(root, n, now)
        store.recover()  # once, as at start-up (O(n), not timed)
        # Median of 5 commits (the first one after a bulk load pays cold caches).
        commits = [commit_new(store, time.time()) for _ in range(5)]
        qid = commits[0][0]
        commit_s = sorted(c[1] for c in commits)[2]
        t0 = time.perf_counter()
        due = store.due(time.time(), 64)
        due_s = time.perf_counter() - t0
        assert qid in due, "the new message is not in the first due() batch"
        db = sqlite3.connect(root / "queue.db")
        t0 = time.perf_counter()
        old = [r[0] for r in db.execute(OLD_DUE, (time.time(), 64))]
        scan_s = time.perf_counter() - t0
        db.close()
        pick_s = asyncio.run(pick(store, Router(cfg)))
        return {
            "deferred": n,
            "fill_s": fill_s,
            "commit_ms": commit_s * 1e3,
            "due_ms": due_s * 1e3,
            "pick_ms": pick_s * 1e3,
            "old_due_ms": scan_s * 1e3,
            "old_due_has_new": qid in old,
        }
    finally:
        store.close()


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--entries",
        default="0,10000,100000,1000000",
        help="comma-separated backlog sizes (default: %(default)s)",
    )
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a tmp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sizes = [int(x) for x in args.entries.split(",") if x.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="pigeon-qscale-", dir=args.dir) as tmp:
        print(
            f"{'deferred':>9} {'fill s':>7} {'commit ms':>10} {'due ms':>8} {'pick ms':>8}"
            f" {'old due ms':>11} {'old has new':>11}"
        )
        for n in sizes:
            row = run_one(n, Path(tmp))
            rows.append(row)
            print(
                f"{n:>9} {row['fill_s']:>7.1f} {row['commit_ms']:>10.2f} {row['due_ms']:>8.3f}"
                f" {row['pick_ms']:>8.2f} {row['old_due_ms']:>11.2f}"
                f" {str(row['old_due_has_new']):>11}",
                flush=True,
            )
            _remove_tree(Path(tmp) / f"q{n}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Queue scale as a rate: does a big deferred backlog slow acceptance and delivery?

Issue 7 asks that "a million deferred messages cost under 10% of the
empty-queue rate". For each backlog size (`--entries`, default 0 and
100000; `--full` in the suite: 0 and 1000000) this script

  * builds a pigeon data directory whose queue already holds that many
    'deferred' entries, waiting for a retry a day from now (the usual
    state of a backlog: a destination is down), each with content (hard
    links to shared files, as bench/queue_scale.py does), so start-up
    recovery sees a consistent queue of that size;
  * starts `python -m pigeon serve` on it (fsync on, Maildir delivery) and
    times how long start-up (recovery of the backlog) takes;
  * drives `smtp-source -s SESSIONS -m MESSAGES -l 1024` at it, `--rounds`
    times, and measures the accept rate and the delivered rate (all new
    messages in the Maildir), and pigeon's CPU per message.

It prints one line per backlog size and the ratios to the empty queue.
Bounded: every load is bounded in messages and by --run-timeout; 127.0.0.1
only.

Usage: .venv/bin/python bench/queue_rate.py [--entries 0,100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402,F401 (puts src/ on sys.path)
from common import proc_status  # noqa: E402
from queue_scale import fill  # noqa: E402

from pigeon.queue.store import QueueStore  # noqa: E402
from pigeon.testing.live import PigeonProcess  # noqa: E402

CONFIG = (
    '[limits]\nconnections = 0\nconnections_per_ip = 0\n[domains."localhost"]\n'
    '[admin]\nmetrics_listen = ""\n'
)


def prepare(workdir: Path, entries: int) -> float:
    """A data dir with `entries` deferred rows; returns seconds spent."""
    root = workdir / "data" / "queue"
    store = QueueStore(root)
    store.open()  # schema and directories
    store.close()
    if not entries:
        return 0.0
    now = time.time()
    took = fill(root, entries, now + 86400)  # fill() puts rows an hour before `now`
    return took


def count(d: Path) -> int:
    try:
        return len(os.listdir(d))
    except FileNotFoundError:
        return 0


def run(entries: int, args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"pigeon-qrate-{entries}-"))
    out: dict = {"entries": entries}
    try:
        out["fill_s"] = round(prepare(workdir, entries), 1)
        proc = PigeonProcess(workdir, CONFIG)
        t0 = time.perf_counter()
        proc.start(timeout=args.start_timeout)
        out["start_s"] = round(time.perf_counter() - t0, 2)
        new = proc.data_dir / "mailboxes" / "localhost" / "bench" / "new"
        src = ["smtp-source", "-4", "-l", "1024", "-f", "b@bench.test", "-t", "bench@localhost"]
        try:
            subprocess.run(
                src + ["-s", "10", "-m", "100", f"127.0.0.1:{proc.port}"],
                check=True,
                timeout=args.run_timeout,
            )  # warm-up
            deadline = time.monotonic() + args.run_timeout
            while count(new) < 100 and time.monotonic() < deadline:
                time.sleep(0.02)
            accept, delivered, cpu = [], [], []
            for _ in range(args.rounds):
                base = count(new)
                c0 = proc_status(proc.proc.pid).get("cpu_s", 0.0)
                t = time.perf_counter()
                subprocess.run(
                    src
                    + [
                        "-s",
                        str(args.sessions),
                        "-m",
                        str(args.messages),
                        f"127.0.0.1:{proc.port}",
                    ],
                    check=True,
                    timeout=args.run_timeout,
                )
                ta = time.perf_counter() - t
                deadline = time.monotonic() + args.run_timeout
                while count(new) < base + args.messages and time.monotonic() < deadline:
                    time.sleep(0.01)
                td = time.perf_counter() - t
                if count(new) < base + args.messages:
                    raise RuntimeError("not every message was delivered in time")
                c1 = proc_status(proc.proc.pid).get("cpu_s", 0.0)
                accept.append(args.messages / ta)
                delivered.append(args.messages / td)
                cpu.append(1000 * (c1 - c0) / args.messages)
            out.update(
                accept=round(statistics.median(accept)),
                delivered=round(statistics.median(delivered)),
                cpu_ms=round(statistics.median(cpu), 2),
            )
        finally:
            proc.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", default="0,100000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--run-timeout", type=float, default=300)
    ap.add_argument("--start-timeout", type=float, default=300)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    if shutil.which("smtp-source") is None:
        print("queue_rate: smtp-source not found (Debian package postfix)", file=sys.stderr)
        return 2
    results = []
    for n in (int(x) for x in args.entries.split(",")):
        r = run(n, args)
        results.append(r)
        print(
            f"{n:>9,} deferred: start {r['start_s']} s (fill {r['fill_s']} s), accept "
            f"{r['accept']} msg/s, delivered {r['delivered']} msg/s, CPU {r['cpu_ms']} ms/msg",
            flush=True,
        )
    base = results[0]
    for r in results[1:]:
        if base["entries"] == 0:
            r["accept_ratio"] = round(r["accept"] / base["accept"], 2)
            r["delivered_ratio"] = round(r["delivered"] / base["delivered"], 2)
            print(
                f"{r['entries']:>9,} deferred vs empty: accept {r['accept_ratio']}x, "
                f"delivered {r['delivered_ratio']}x"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

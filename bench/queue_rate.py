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
    times how long it takes to be ready to accept (its port answers; the
    recovery of the backlog goes on alongside);
  * with every server up, drives `smtp-source -s SESSIONS -m MESSAGES -l 1024`
    at each in turn, `--rounds` times (the order rotated each round, so the
    machine's drift hits every size alike), and measures the accept rate, the
    delivered rate (all new messages in the Maildir), and pigeon's CPU per
    message.

It prints one line per backlog size and, against the empty queue, the
median of the same-round ratios (issue 16: within 10 %, beyond the noise).
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


class Server:
    """One pigeon on a data directory whose queue holds `entries` deferred rows."""

    def __init__(self, entries: int, args) -> None:
        self.entries, self.args = entries, args
        self.workdir = Path(tempfile.mkdtemp(prefix=f"pigeon-qrate-{entries}-"))
        self.out: dict = {
            "entries": entries,
            "accept_runs": [],
            "delivered_runs": [],
            "cpu_runs": [],
        }
        self.proc: PigeonProcess | None = None

    def start(self) -> None:
        self.out["fill_s"] = round(prepare(self.workdir, self.entries), 1)
        config = CONFIG
        if self.args.through_queue:  # local mail through the queue, as before issue 16
            config = "[queue]\nlocal_at_accept = false\n" + config
        self.proc = PigeonProcess(self.workdir, config)
        t0 = time.perf_counter()
        self.proc.start(timeout=self.args.start_timeout)  # returns once the port answers
        self.out["start_s"] = round(time.perf_counter() - t0, 2)
        # The rounds begin once recovery has read the backlog, so its work does
        # not fall into another server's round (both run on the same cores).
        deadline = time.monotonic() + self.args.start_timeout
        while "queue recovered" not in self.proc.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.out["recovered_s"] = round(time.perf_counter() - t0, 2)
        self.new = self.proc.data_dir / "mailboxes" / "localhost" / "bench" / "new"
        self._load(10, 100)  # warm-up

    def _load(self, sessions: int, messages: int) -> tuple[float, float]:
        """One bounded smtp-source run; (seconds to accept, seconds to deliver)."""
        assert self.proc is not None
        src = ["smtp-source", "-4", "-l", "1024", "-f", "b@bench.test", "-t", "bench@localhost"]
        base = count(self.new)
        t = time.perf_counter()
        subprocess.run(
            src + ["-s", str(sessions), "-m", str(messages), f"127.0.0.1:{self.proc.port}"],
            check=True,
            timeout=self.args.run_timeout,
        )
        ta = time.perf_counter() - t
        deadline = time.monotonic() + self.args.run_timeout
        while count(self.new) < base + messages and time.monotonic() < deadline:
            time.sleep(0.01)
        td = time.perf_counter() - t
        if count(self.new) < base + messages:
            raise RuntimeError("not every message was delivered in time")
        return ta, td

    def round(self) -> None:
        assert self.proc is not None
        args = self.args
        c0 = proc_status(self.proc.proc.pid).get("cpu_s", 0.0)
        ta, td = self._load(args.sessions, args.messages)
        c1 = proc_status(self.proc.proc.pid).get("cpu_s", 0.0)
        self.out["accept_runs"].append(round(args.messages / ta, 1))
        self.out["delivered_runs"].append(round(args.messages / td, 1))
        self.out["cpu_runs"].append(round(1000 * (c1 - c0) / args.messages, 3))

    def finish(self) -> dict:
        out = self.out
        if out["accept_runs"]:
            out.update(
                accept=round(statistics.median(out["accept_runs"])),
                delivered=round(statistics.median(out["delivered_runs"])),
                cpu_ms=round(statistics.median(out["cpu_runs"]), 2),
            )
        return out

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def run_all(sizes: list[int], args) -> list[dict]:
    """Start a server per backlog size, then alternate the rounds between them
    (the order rotated every round), so the machine's drift hits each alike."""
    servers = [Server(n, args) for n in sizes]
    try:
        for srv in servers:
            srv.start()
            print(
                f"{srv.entries:>9,} deferred: ready to accept in {srv.out['start_s']} s, "
                f"recovered in {srv.out['recovered_s']} s (fill {srv.out['fill_s']} s)",
                flush=True,
            )
        for i in range(args.rounds):
            k = i % len(servers)
            for srv in servers[k:] + servers[:k]:
                srv.round()
        return [srv.finish() for srv in servers]
    finally:
        for srv in servers:
            srv.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", default="0,100000")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--run-timeout", type=float, default=300)
    ap.add_argument("--start-timeout", type=float, default=300)
    ap.add_argument(
        "--through-queue",
        action="store_true",
        help="[queue] local_at_accept = false: the new mail goes through the queue with the backlog",
    )
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    if shutil.which("smtp-source") is None:
        print("queue_rate: smtp-source not found (Debian package postfix)", file=sys.stderr)
        return 2
    results = run_all([int(x) for x in args.entries.split(",")], args)
    for r in results:
        print(
            f"{r['entries']:>9,} deferred: start {r['start_s']} s (fill {r['fill_s']} s), accept "
            f"{r['accept']} msg/s, delivered {r['delivered']} msg/s, CPU {r['cpu_ms']} ms/msg",
            flush=True,
        )
    base = results[0]
    for r in results[1:]:
        if base["entries"] == 0:
            # The median of the same-round ratios: rounds ran back to back.
            for key in ("accept", "delivered"):
                pairs = zip(r[f"{key}_runs"], base[f"{key}_runs"])
                r[f"{key}_ratio"] = round(statistics.median(a / b for a, b in pairs), 3)
            print(
                f"{r['entries']:>9,} deferred vs empty: accept {r['accept_ratio']}x, "
                f"delivered {r['delivered_ratio']}x (medians of {args.rounds} same-round ratios; "
                f"accept per round {[round(a / b, 2) for a, b in zip(r['accept_runs'], base['accept_runs'])]})"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Cluster benchmark (issue 17): 1, 2 and 3 nodes on one PostgreSQL against the embedded store.

What it measures
  `smtp-source` pushes --messages messages of --size octets, --concurrency
  sessions in all, one message per connection, to `user@relay.test`; every
  configuration relays that domain over SMTP to an `smtp-sink` of its own
  that writes each transaction it receives to a file (`-d DIR/%M.`), so
  every message goes through the queue (local Maildir mail would be
  written at the accept and never touch the store: docs/architecture.md).

  Configurations, all running side by side on this machine:
    embedded  one `pigeon serve` on its own data directory (the default
              store: SQLite WAL + files, fsync on);
    pg1..pgN  N `pigeon serve --store postgresql://...` nodes (distinct
              `queue.node`, ports and data directories) sharing ONE
              database of a throw-away PostgreSQL cluster
              (pigeon.testing.postgres: fsync on, synchronous_commit on, so
              a 250 means the COMMIT reached the disk). Each configuration
              has its own database, so an idle configuration's nodes never
              take another one's mail.
  With N nodes the load is split evenly: N smtp-source processes at once,
  one per node, each with messages/N messages and concurrency/N sessions.

  Two rates per run, timed from the start of the smtp-source processes:
    accept     every smtp-source exited: every message had its 250;
    delivered  the sink's directory holds every message (polled every 10 ms).
  Then, untimed: the queue must be empty (the database's pigeon_queue, or
  the data directory's queue/msg/) and the sink must hold exactly the
  number sent (no loss, no duplicate); otherwise the run is an error.
  CPU: pigeon's (every node, utime+stime from /proc) and PostgreSQL's
  (postmaster and its backends, exited ones through cutime) per message.

  Rounds: an untimed warm-up per configuration, then --rounds rounds with
  the order of configurations rotated every round (the machine's drift
  hits all alike). Reported: medians, and the median of the same-round
  ratios to the embedded store (issue 17: a single node on PostgreSQL
  reaches at least 0.7x of the embedded store's rate).

Safety: loopback only; every run is bounded in messages and in time
(--run-timeout, --drain-timeout); the PostgreSQL cluster lives in a
temporary directory and is removed at the end.

Usage: .venv/bin/python bench/cluster_rate.py [--nodes 1,2,3] [--rounds 5] [--messages 2000]
       (also the `cluster` part of `make bench`: bench/suite.py)
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

import common  # noqa: E402 (puts src/ on sys.path)
from common import HELO, SENDER, loadavg, proc_status  # noqa: E402

from pigeon.testing.live import wait_for  # noqa: E402

RECIPIENT = "user@relay.test"
POLL = 0.01


def _cpu_tree(pid: int) -> float:
    """CPU seconds of `pid` and its live children (exited ones count in its cutime)."""
    total = proc_status(pid).get("cpu_s", 0.0)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += sum(int(x) for x in fields[11:13]) / os.sysconf("SC_CLK_TCK")
    return total


class Sink:
    """smtp-sink writing one file per transaction into DIR."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "sink"
        self.dir.mkdir(parents=True)
        self.dir.chmod(0o777)  # smtp-sink runs as nobody
        self.proc, self.port = common.start_smtp_sink(
            workdir / "sink.log", ["-d", f"{self.dir}/%M."]
        )

    def count(self) -> int:
        return len(os.listdir(self.dir))

    def clear(self) -> None:
        for p in self.dir.iterdir():
            p.unlink()

    def stop(self) -> None:
        common.stop_process(self.proc)


class Config:
    """One configuration: `nodes` pigeon processes on one store, one sink."""

    def __init__(
        self, name: str, workdir: Path, nodes: int, dsn: str | None, args, src: str | None = None
    ) -> None:
        self.name, self.dsn, self.args = name, dsn, args
        # Another source tree's pigeon (--compare-src): its src/ first on PYTHONPATH.
        self.env = {"PYTHONPATH": str(Path(src) / "src")} if src else None
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True)
        self.workdir.chmod(0o755)
        self.sink = Sink(self.workdir)
        self.nodes: list = []
        self.runs: list[dict] = []
        self.count = nodes
        self.probes = 0  # transactions of this script's own queries (commits())

    def start(self) -> None:
        from pigeon.testing.live import PigeonProcess  # noqa: PLC0415

        for i in range(self.count):
            store = f'store = "{self.dsn}"\nnode = "{self.name}-{i + 1}"\n' if self.dsn else ""
            config = (
                'relay_networks = ["127.0.0.0/8"]\n'
                f"{self.args.pigeon_toml}\n"
                "[limits]\nconnections = 0\nconnections_per_ip = 0\n"
                '[admin]\nmetrics_listen = ""\n'
                f'[transports]\n"relay.test" = "smtp:[127.0.0.1]:{self.sink.port}"\n'
                f"[queue]\n{store}"
            )
            node = PigeonProcess(self.workdir / f"node{i + 1}", config, env=self.env)
            self.nodes.append(node)
            node.start(timeout=60)

    def commits(self) -> int | None:
        """Transactions committed in this configuration's database so far
        (pg_stat_database: each is a wait for a WAL flush, fsync on)."""
        if not self.dsn:
            return None
        import psycopg  # noqa: PLC0415

        self.probes += 2
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            return conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()[0]

    def idle(self) -> bool:
        if self.dsn:
            import psycopg  # noqa: PLC0415

            self.probes += 1
            with psycopg.connect(self.dsn) as conn:
                return conn.execute("SELECT count(*) FROM pigeon_queue").fetchone()[0] == 0
        msg = self.nodes[0].data_dir / "queue" / "msg"
        return not msg.is_dir() or not any(msg.iterdir())

    def cpu(self) -> float:
        return sum(proc_status(n.proc.pid).get("cpu_s", 0.0) for n in self.nodes)

    def run(self, messages: int, postmaster: int | None) -> dict:
        """One bounded run; the result (rates, CPU) or an "error"."""
        args, n = self.args, len(self.nodes)
        self.sink.clear()
        share = [messages // n + (1 if i < messages % n else 0) for i in range(n)]
        sessions = max(1, args.concurrency // n)
        out: dict = {"loadavg": loadavg()}
        x0 = self.commits()
        probes0 = self.probes
        c0, p0 = self.cpu(), _cpu_tree(postmaster) if postmaster else 0.0
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                ["smtp-source", "-4", "-s", str(sessions), "-m", str(k), "-l", str(args.size)]
                + ["-f", SENDER, "-t", RECIPIENT, "-M", HELO, f"127.0.0.1:{node.port}"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for node, k in zip(self.nodes, share, strict=True)
        ]
        err = None
        for p in procs:
            try:
                text = p.communicate(timeout=args.run_timeout)[0]
            except subprocess.TimeoutExpired:
                p.kill()
                text = p.communicate()[0]
                err = err or f"smtp-source timed out after {args.run_timeout}s"
            if p.returncode and not err:
                err = f"smtp-source exited {p.returncode}: {text.decode(errors='replace')[-300:]}"
        accept = time.perf_counter() - t0
        deadline = t0 + accept + args.drain_timeout
        while self.sink.count() < messages and time.perf_counter() < deadline:
            time.sleep(POLL)
        delivered = time.perf_counter() - t0
        got = self.sink.count()
        c1, p1 = self.cpu(), _cpu_tree(postmaster) if postmaster else 0.0
        out.update(
            accept=messages / accept,
            delivered=messages / delivered if got >= messages else None,
            pigeon_cpu_ms=1000 * (c1 - c0) / messages,
            pg_cpu_ms=1000 * (p1 - p0) / messages if postmaster else None,
        )
        if not wait_for(self.idle, args.drain_timeout, 0.05):
            err = err or f"queue not empty {args.drain_timeout}s after the run"
        time.sleep(0.2)  # a duplicate would arrive after the removal
        if x0 is not None:
            time.sleep(1.0)  # backends report their counts at most once a second
            x1 = self.commits()
            # Minus this script's own queries (each its own transaction).
            ours = self.probes - probes0
            out["commits_per_msg"] = (x1 - x0 - ours) / messages if x1 is not None else None
        if self.sink.count() != messages:
            err = err or f"sink holds {self.sink.count()} messages, expected {messages}"
        if err:
            out["error"] = err
        self.sink.clear()
        return out

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.sink.stop()


def postmaster_pid(cluster) -> int | None:
    try:
        return int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def summarise(configs: list[Config]) -> list[dict]:
    base = next((c for c in configs if c.name == "embedded"), None)
    out = []
    for c in configs:
        good = [r for r in c.runs if "error" not in r]
        row: dict = {"config": c.name, "nodes": len(c.nodes), "runs": f"{len(good)}/{len(c.runs)}"}
        for key in ("accept", "delivered", "pigeon_cpu_ms", "pg_cpu_ms", "commits_per_msg"):
            vals = [r[key] for r in good if r.get(key) is not None]
            row[key] = statistics.median(vals) if vals else None
        if base is not None and c is not base:
            for key in ("accept", "delivered"):
                pairs = [
                    a[key] / b[key]
                    for a, b in zip(c.runs, base.runs, strict=False)
                    if "error" not in a and "error" not in b and a.get(key) and b.get(key)
                ]
                row[f"{key}_ratio"] = statistics.median(pairs) if pairs else None
                row[f"{key}_ratios"] = [round(x, 2) for x in pairs]
        out.append(row)
    return out


def print_table(rows: list[dict]) -> None:
    f = common.fmt
    print(
        "| configuration | accept msg/s | delivered msg/s | accept / embedded | "
        "delivered / embedded | pigeon CPU ms/msg | PostgreSQL CPU ms/msg | "
        "transactions/msg | good runs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        label = (
            "embedded store, 1 node"
            if r["config"] == "embedded"
            else (f"PostgreSQL, {r['nodes']} node{'s' if r['nodes'] > 1 else ''}")
        )
        if r["config"].endswith("-base"):
            label += " (--compare-src tree)"
        print(
            f"| {label} | {f(r['accept'])} | {f(r['delivered'])} | "
            f"{f(r.get('accept_ratio'), '.2f')} | {f(r.get('delivered_ratio'), '.2f')} | "
            f"{f(r['pigeon_cpu_ms'], '.2f')} | {f(r['pg_cpu_ms'], '.2f')} | "
            f"{f(r['commits_per_msg'], '.2f')} | {r['runs']} |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="1,2,3", help="PostgreSQL configurations (default 1,2,3)")
    ap.add_argument("--no-embedded", action="store_true", help="leave the embedded store out")
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=20, help="sessions in all (default 20)")
    ap.add_argument("--size", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--run-timeout", type=float, default=300)
    ap.add_argument("--drain-timeout", type=float, default=120)
    ap.add_argument("--pigeon-toml", default="", help="extra top-level pigeon settings")
    ap.add_argument(
        "--compare-src",
        metavar="DIR",
        help="also each PostgreSQL configuration running the pigeon of another source "
        "tree (e.g. `git archive BASE src | tar -x -C DIR`): configurations pgN-base",
    )
    ap.add_argument(
        "--hold", action="store_true", help="wait for Enter before stopping (profiling)"
    )
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    if shutil.which("smtp-source") is None:
        print("cluster_rate: smtp-source not found (Debian package postfix)", file=sys.stderr)
        return 2
    from pigeon.testing.postgres import PostgresCluster, find_bindir  # noqa: PLC0415

    sizes = [int(x) for x in args.nodes.split(",") if x.strip()]
    if find_bindir() is None and sizes:
        print("cluster_rate: PostgreSQL server binaries not found", file=sys.stderr)
        return 2
    info = common.start_info()
    print(
        f"# {args.messages} messages x {args.size} B to {RECIPIENT}, {args.concurrency} sessions "
        f"in all, {args.rounds} rounds, nodes {sizes}, embedded {not args.no_embedded}",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="pigeon-cluster-bench-"))
    workdir.chmod(0o755)
    configs: list[Config] = []
    cluster = PostgresCluster() if sizes else None
    try:
        postmaster = None
        if cluster is not None:
            cluster.start()
            postmaster = postmaster_pid(cluster)
        from pigeon.cli.main import main as pigeon_main  # noqa: PLC0415

        if not args.no_embedded:
            configs.append(Config("embedded", workdir, 1, None, args))
        for n in sizes:
            assert cluster is not None
            dsn = cluster.dsn(cluster.new_database())
            if pigeon_main(["db", "migrate", "--store", dsn]) != 0:
                raise RuntimeError("pigeon db migrate failed")
            configs.append(Config(f"pg{n}", workdir, n, dsn, args))
        for n in sizes if args.compare_src else ():
            assert cluster is not None
            dsn = cluster.dsn(cluster.new_database())
            if pigeon_main(["db", "migrate", "--store", dsn]) != 0:
                raise RuntimeError("pigeon db migrate failed")
            configs.append(Config(f"pg{n}-base", workdir, n, dsn, args, args.compare_src))
        for c in configs:
            c.start()
            print(f"# {c.name}: {len(c.nodes)} node(s) on ports {[n.port for n in c.nodes]}")
        for c in configs:
            if args.warmup:
                r = c.run(args.warmup, None)
                if "error" in r:
                    print(f"{c.name} warm-up: {r['error']}", file=sys.stderr)
        for i in range(args.rounds):
            k = i % len(configs)
            for c in configs[k:] + configs[:k]:
                r = c.run(args.messages, postmaster if c.dsn else None)
                r["round"] = i + 1
                c.runs.append(r)
                print(
                    f"round {i + 1} {c.name:9s} accept {r['accept']:6.0f} msg/s  delivered "
                    f"{common.fmt(r['delivered']):>6s} msg/s  pigeon CPU "
                    f"{r['pigeon_cpu_ms']:.2f} ms/msg  pg CPU {common.fmt(r['pg_cpu_ms'], '.2f')}"
                    f"  transactions/msg {common.fmt(r.get('commits_per_msg'), '.2f')}"
                    + (f"  ERROR {r['error']}" if "error" in r else ""),
                    flush=True,
                )
        if args.hold:
            input("# holding: press Enter to stop ")
    except KeyboardInterrupt:
        print("interrupted; stopping", file=sys.stderr)
    finally:
        for c in configs:
            c.stop()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    info["loadavg_end"] = loadavg()
    rows = summarise(configs)
    print(
        f"\n# medians of {args.rounds} rounds; ratios = median of same-round ratios to the "
        f"embedded store; load average start {info['loadavg_start']} end {info['loadavg_end']}"
    )
    print_table(rows)
    for r in rows:
        if r.get("accept_ratios"):
            print(
                f"# {r['config']}: same-round ratios accept {r['accept_ratios']} "
                f"delivered {r['delivered_ratios']}"
            )
    if args.json:
        doc = {
            "args": vars(args),
            "machine": info,
            "rows": rows,
            "runs": {c.name: c.runs for c in configs},
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    errors = [r for c in configs for r in c.runs if "error" in r]
    return 1 if errors else 0


if __name__ == "__main__":
    common.run_main(main)

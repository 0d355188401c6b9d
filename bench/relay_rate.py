#!/usr/bin/env python3
"""Relay-throughput benchmark: smtp-source -> server -> smtp-sink, pigeon vs Postfix.

What it measures
  Postfix's `smtp-source` pushes --messages messages of --size payload bytes
  over --concurrency parallel SMTP sessions (one message per connection
  unless --reuse-connections) to `user@relay.test`, from an address in the
  server's relay networks. The server queues each message (fsync before the
  250) and relays it over SMTP to an `smtp-sink` of its own, which writes
  every transaction it receives to a file of its own (`-d DIR/%M.`).

  Two figures per run, both timed from the start of smtp-source
  (time.perf_counter()):
    accept  smtp-source has exited: every message got its 250 after DATA
            (smtp-source aborts on any other reply, so exit 0 = all accepted).
            Rate = messages / that time.
    relay   the sink's directory holds all --messages dump files: every
            message has crossed the server and been accepted by the next hop.
            Rate = messages / that time (end-to-end throughput). The
            directory is polled every 10 ms once smtp-source has exited (the
            last message cannot arrive before it was accepted), so the poll
            does not compete for CPU during the accept phase.
  "lag" = relay time - accept time: how far delivery trails acceptance.

  After each run (untimed) we wait, bounded, until the server's queue is
  empty, then check that the sink holds exactly --messages files (more would
  be duplicates), each addressed to user@relay.test and carrying the
  server's own Received: field (proof that it went through the server, not
  around it), then empty the sink directory for the next run.

  Targets, each with its own smtp-sink on its own 127.0.0.1 port:
    sink     smtp-source straight into the smtp-sink (no server): the
             ceiling of client + sink + loopback on this machine; accept and
             relay are the same event there.
    postfix  a private Postfix (pigeon.testing.postfix.PrivatePostfix: temp
             config/queue, stock master.cf with chroot off) with
             mynetworks = 127.0.0.0/8 and
             transport_maps = inline:{relay.test=smtp:[127.0.0.1]:SINKPORT};
             everything else at Postfix defaults (destination concurrency 20,
             connection cache on demand, in_flow_delay 1s).
    pigeon   `python -m pigeon serve` (fsync on, other settings default) with
             relay_networks = ["127.0.0.0/8"] and
             [transports] "relay.test" = "smtp:[127.0.0.1]:SINKPORT".

  Every target is warmed up (untimed, --warmup messages), then --rounds
  rounds run with the targets interleaved and the order rotated each round,
  so slow drifts of a noisy machine hit all targets alike. We report medians,
  min/max, ratios of medians and the spread of same-round ratios.

Safety: 127.0.0.1 only; every run is bounded in messages (--messages) and in
time (--run-timeout for smtp-source, --drain-timeout for the relay wait).
The private Postfix runs as root (Postfix requires it to start) from a temp
directory that is removed at the end; /etc/postfix is not modified.

Usage: make bench-relay ARGS="--rounds 5"   or
       .venv/bin/python bench/relay_rate.py --messages 1000 --concurrency 20 --rounds 5
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))

# Shared with the acceptance benchmark so both report machines and load alike.
from accept_rate import PigeonTarget, SkipTarget, fmt, loadavg, machine_info  # noqa: E402
from pigeon.testing.postfix import (  # noqa: E402
    LOOPBACK, PostfixUnavailable, PrivatePostfix, find_tool, free_port, wait_banner, wait_until)

TARGETS = ("sink", "postfix", "pigeon")
SENDER = "bench@bench.test"
RECIPIENT = "user@relay.test"
RELAY_DOMAIN = "relay.test"
HELO = "client.bench.test"
POLL = 0.01          # seconds between counts of the sink directory


# --------------------------------------------------------------------------- the next hop

class DumpSink:
    """smtp-sink on 127.0.0.1:<free port>, one dump file per transaction."""

    def __init__(self, workdir: Path, name: str) -> None:
        # smtp-sink drops to "nobody": its dump directory must be writable by it.
        self.dir = workdir / f"{name}-sink"
        self.dir.mkdir()
        self.dir.chmod(0o777)
        self.logpath = workdir / f"{name}-sink.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        tool = find_tool("smtp-sink")
        if not tool:
            raise SkipTarget("smtp-sink not found (Debian package postfix)")
        self.port = free_port()
        cmd = [tool, "-4"]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]          # smtp-sink refuses to keep running as root
        cmd += ["-d", f"{self.dir}/%M.", f"{LOOPBACK}:{self.port}", "256"]  # 256: listen backlog
        with open(self.logpath, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        if not wait_banner(self.port, 10):
            self.stop()
            raise SkipTarget("smtp-sink did not start: " + self.logpath.read_text(errors="replace")[-500:])

    def count(self) -> int:
        # "%M." makes one flat directory of files: a listdir is cheap (< 1 ms for 1000).
        return len(os.listdir(self.dir))

    def check(self, expected: int, marker: bytes | None) -> str | None:
        """None if the sink holds exactly `expected` well-formed relayed messages, else why not."""
        files = list(self.dir.iterdir())
        if len(files) != expected:
            return f"sink holds {len(files)} messages, expected {expected}"
        for p in files:
            with open(p, "rb") as f:
                head = f.read(4096)
            if f"X-Rcpt-Args: <{RECIPIENT}>".encode() not in head:
                return f"{p.name}: not addressed to {RECIPIENT}"
            if marker is not None and marker not in head:
                return f"{p.name}: no {marker.decode()!r} (did it pass through the server?)"
        return None

    def clear(self) -> None:
        for p in self.dir.iterdir():
            p.unlink()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --------------------------------------------------------------------------- targets

class SinkTarget:
    """No server: smtp-source talks to the sink itself."""

    name = "sink"
    marker = None

    def __init__(self, workdir: Path) -> None:
        self.sink = DumpSink(workdir, self.name)
        self.port = 0

    def start(self) -> None:
        self.sink.start()
        self.port = self.sink.port

    def idle(self) -> bool:
        return True

    def describe(self) -> dict:
        return {}

    def stop(self) -> None:
        self.sink.stop()


class PostfixRelayTarget:
    name = "postfix"
    marker = b"by postfix.bench.test (Postfix) with"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.sink = DumpSink(workdir, self.name)
        self.pf: PrivatePostfix | None = None
        self.port = 0

    def start(self) -> None:
        self.sink.start()
        settings = {
            # Only relay.test is relayed, exactly as pigeon's [transports] entry;
            # anything else (there should be nothing) is still discarded.
            "transport_maps": f"inline:{{{RELAY_DOMAIN}=smtp:[{LOOPBACK}]:{self.sink.port}}}",
            "smtp_tls_security_level": "none",       # smtp-sink offers no STARTTLS anyway
        }
        self.pf = PrivatePostfix(self.workdir, settings=settings)
        try:
            self.pf.start()
        except PostfixUnavailable as exc:
            raise SkipTarget(str(exc)) from None
        self.port = self.pf.port

    def idle(self) -> bool:
        return self.pf.queued() == 0

    def describe(self) -> dict:
        d = self.pf.describe()
        d["status_sent_in_maillog"] = self.pf.sent_count()
        return d

    def stop(self) -> None:
        if self.pf is not None:
            self.pf.stop()
        self.sink.stop()


class PigeonRelayTarget(PigeonTarget):
    """pigeon (PigeonTarget's CPU/RSS accounting) relaying relay.test to its sink."""

    name = "pigeon"
    marker = b"by pigeon.test (pigeon) with"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.sink = DumpSink(workdir, self.name)

    def start(self) -> None:
        from pigeon.testing.live import PigeonProcess  # noqa: PLC0415 (pigeon may be mid-build)

        self.sink.start()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = (f'relay_networks = ["127.0.0.0/8"]\n'
                  f'[transports]\n"{RELAY_DOMAIN}" = "smtp:[{LOOPBACK}]:{self.sink.port}"\n')
        self.proc = PigeonProcess(self.workdir, config)
        try:
            self.proc.start(timeout=30)
        except Exception as exc:  # pigeon not runnable: report and skip
            self.proc.stop()
            raise SkipTarget(f"pigeon did not start: {str(exc)[-800:]}") from None
        self.port = self.proc.port

    def idle(self) -> bool:
        # A message leaves msg/ once every recipient is final (delivered or bounced).
        msg = self.proc.data_dir / "queue" / "msg"
        return not msg.is_dir() or not any(msg.iterdir())

    def describe(self) -> dict:
        log = self.proc.log()
        return {"workdir": str(self.workdir), **self.proc_status(),
                "status_sent_in_log": log.count("status=sent"),
                "status_deferred_in_log": log.count("status=deferred"),
                "status_bounced_in_log": log.count("status=bounced")}

    def stop(self) -> None:
        super().stop()
        self.sink.stop()


CLASSES = {"sink": SinkTarget, "postfix": PostfixRelayTarget, "pigeon": PigeonRelayTarget}


# --------------------------------------------------------------------------- one run

def smtp_source_cmd(tool: str, port: int, messages: int, args) -> list[str]:
    cmd = [tool, "-4", "-s", str(args.concurrency), "-m", str(messages), "-l", str(args.size),
           "-f", SENDER, "-t", RECIPIENT, "-M", HELO]
    if args.reuse_connections:
        cmd.append("-d")
    return cmd + [f"{LOOPBACK}:{port}"]


def cpu_seconds(t) -> float | None:
    return t.proc_status().get("cpu_s") if isinstance(t, PigeonTarget) else None


def one_run(tool: str, t, messages: int, args) -> dict:
    """Send `messages`, time acceptance and relay completion, verify, empty the sink."""
    t.sink.clear()
    run: dict = {"loadavg": loadavg()}
    cpu0 = cpu_seconds(t)
    cmd = smtp_source_cmd(tool, t.port, messages, args)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.run_timeout,
                           stdin=subprocess.DEVNULL)
        err = (None if p.returncode == 0 else
               f"smtp-source exited {p.returncode}: {(p.stdout + p.stderr).strip()[-300:]}")
    except subprocess.TimeoutExpired:
        err = f"smtp-source timed out after {args.run_timeout}s"
    accept = time.perf_counter() - t0
    deadline = time.perf_counter() + args.drain_timeout
    while t.sink.count() < messages and time.perf_counter() < deadline:
        time.sleep(POLL)
    relay = time.perf_counter() - t0
    arrived = t.sink.count()
    run.update(accept_seconds=accept, accept_rate=messages / accept, relay_seconds=relay,
               relay_rate=messages / relay if arrived >= messages else None,
               lag_seconds=relay - accept, arrived=arrived)
    # Untimed: let the server finish its bookkeeping, then check what arrived.
    if not wait_until(t.idle, args.drain_timeout, 0.05):
        err = err or f"server queue not empty {args.drain_timeout}s after the run"
    cpu1 = cpu_seconds(t)
    if cpu0 is not None and cpu1 is not None:
        run["pigeon_cpu_seconds"] = cpu1 - cpu0
    problem = t.sink.check(messages, t.marker)
    err = err or problem
    if err:
        run["error"] = err
    t.sink.clear()
    return run


# --------------------------------------------------------------------------- report

def median_of(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def span(runs: list[dict], key: str) -> tuple[float, float] | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return (min(vals), max(vals)) if vals else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=1000, help="messages per timed run (default 1000)")
    ap.add_argument("--concurrency", type=int, default=20, help="parallel SMTP sessions (default 20)")
    ap.add_argument("--size", type=int, default=5000, help="payload bytes per message (default 5000)")
    ap.add_argument("--rounds", type=int, default=5, help="timed runs per target (default 5)")
    ap.add_argument("--only", default=",".join(TARGETS),
                    help="comma-separated targets to run (default sink,postfix,pigeon)")
    ap.add_argument("--json", metavar="FILE", help="write the raw numbers to FILE")
    ap.add_argument("--warmup", type=int, default=200, help="untimed messages per target first (default 200)")
    ap.add_argument("--reuse-connections", action="store_true",
                    help="smtp-source -d: keep each inbound session open for the next message")
    ap.add_argument("--run-timeout", type=float, default=600, help="seconds allowed per smtp-source run (default 600)")
    ap.add_argument("--drain-timeout", type=float, default=300,
                    help="seconds to wait for relay completion after a run (default 300)")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory (logs, queues)")
    args = ap.parse_args(argv)

    wanted = [t.strip() for t in args.only.split(",") if t.strip()]
    bad = [t for t in wanted if t not in TARGETS]
    if bad or not wanted:
        ap.error(f"--only: unknown target(s) {bad}; choose from {','.join(TARGETS)}")
    for name, val, lo in (("messages", args.messages, 1), ("concurrency", args.concurrency, 1),
                          ("size", args.size, 0), ("rounds", args.rounds, 1), ("warmup", args.warmup, 0)):
        if val < lo:
            ap.error(f"--{name} must be >= {lo}")
    if args.concurrency > 50:
        print("note: pigeon and Postfix both allow 50 connections per client IP by default; "
              "runs above that will see refusals", file=sys.stderr)
    source = find_tool("smtp-source")
    if not source:
        print("error: smtp-source not found (install the Debian package postfix)", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="pigeon-relay-bench-"))
    workdir.chmod(0o755)          # Postfix daemons and smtp-sink (nobody) must traverse it
    targets: dict = {}
    skipped: dict[str, str] = {}
    results: dict[str, dict] = {}
    info = machine_info()
    info["loadavg_start"] = loadavg()
    print(f"# {info['date']}  {info['nproc']} x {info['cpu']}  kernel {info['kernel']}  "
          f"load {info['loadavg_start']}")
    print(f"# {args.messages} messages x {args.size} B to {RECIPIENT}, {args.concurrency} sessions, "
          f"{args.rounds} rounds, one message per connection: {not args.reuse_connections}")
    interrupted = False
    extra_info: dict[str, dict] = {}
    try:
        for name in (n for n in TARGETS if n in wanted):
            t = CLASSES[name](workdir)
            try:
                t.start()
            except Exception as exc:  # SkipTarget, or a half-built pigeon failing to import
                t.stop()
                skipped[name] = str(exc)
                print(f"SKIP {name}: {exc}", file=sys.stderr)
                continue
            targets[name] = t
            results[name] = {"runs": [], "errors": []}
            print(f"# {name} listening on {LOOPBACK}:{t.port}, relaying to sink on {LOOPBACK}:{t.sink.port}")

        # Warm-up, untimed: Postfix spawns smtpd/cleanup/smtp processes and
        # ramps up its destination concurrency; pigeon opens its connections.
        for name, t in targets.items():
            if args.warmup:
                run = one_run(source, t, args.warmup, args)
                if "error" in run:
                    results[name]["errors"].append(f"warm-up: {run['error']}")
                    print(f"{name} warm-up: {run['error']}", file=sys.stderr)

        names = list(targets)
        for r in range(args.rounds):
            k = r % len(names) if names else 0
            for name in names[k:] + names[:k]:          # rotate the order every round
                t, res = targets[name], results[name]
                run = one_run(source, t, args.messages, args)
                run["round"] = r + 1
                res["runs"].append(run)
                if "error" in run:
                    res["errors"].append(f"round {r + 1}: {run['error']}")
                print(f"round {r + 1} {name:8s} accept {run['accept_seconds']:7.3f} s "
                      f"{run['accept_rate']:6.0f} msg/s   relay {run['relay_seconds']:7.3f} s "
                      f"{fmt(run['relay_rate']):>6s} msg/s   lag {run['lag_seconds']:6.2f} s"
                      + (f"  ERROR {run['error']}" if "error" in run else ""))
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted; stopping targets", file=sys.stderr)
    finally:
        for name, t in targets.items():
            try:
                extra_info[name] = t.describe()
            except Exception as exc:  # informational only
                extra_info[name] = {"error": repr(exc)}
            t.stop()
        if args.keep:
            print(f"# kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    info["loadavg_end"] = loadavg()
    summary: dict[str, dict] = {}
    for name, res in results.items():
        good = [r for r in res["runs"] if "error" not in r]
        s = {"good_runs": len(good), "runs": len(res["runs"])}
        for key in ("accept_rate", "relay_rate", "lag_seconds"):
            s[f"{key}_median"] = median_of(good, key)
            s[f"{key}_span"] = span(good, key)
        cpu = [r["pigeon_cpu_seconds"] * 1000 / args.messages for r in good
               if r.get("pigeon_cpu_seconds") is not None]
        if cpu:
            s["cpu_ms_per_message_median"] = statistics.median(cpu)
        summary[name] = s

    def ratio(a: str, b: str, key: str) -> dict | None:
        ma, mb = (summary.get(a, {}).get(f"{key}_median"), summary.get(b, {}).get(f"{key}_median"))
        if not (ma and mb):
            return None
        ra = {r["round"]: r[key] for r in results[a]["runs"] if "error" not in r and r.get(key)}
        rb = {r["round"]: r[key] for r in results[b]["runs"] if "error" not in r and r.get(key)}
        paired = [ra[k] / rb[k] for k in ra if k in rb]
        return {"of_medians": ma / mb, "paired_min": min(paired) if paired else None,
                "paired_max": max(paired) if paired else None}

    ratios = {f"{a}/{b} {key}": ratio(a, b, key) for a, b in (("pigeon", "postfix"),
                                                              ("pigeon", "sink"), ("postfix", "sink"))
              for key in ("accept_rate", "relay_rate")}
    print()
    print(f"{'target':8s} {'accept msg/s':>13s} {'(min-max)':>11s} {'relay msg/s':>12s} "
          f"{'(min-max)':>11s} {'lag s':>6s} {'runs':>5s}")
    for name in TARGETS:
        if name not in wanted:
            continue
        if name not in summary:
            reason = (skipped.get(name) or "no run").strip().splitlines() or ["?"]
            print(f"{name:8s} {'not measured':>13s}  ({reason[-1][:100]})")
            continue
        s = summary[name]
        a, rl = s["accept_rate_span"], s["relay_rate_span"]
        print(f"{name:8s} {fmt(s['accept_rate_median']):>13s} "
              f"{(f'{a[0]:.0f}-{a[1]:.0f}' if a else '-'):>11s} {fmt(s['relay_rate_median']):>12s} "
              f"{(f'{rl[0]:.0f}-{rl[1]:.0f}' if rl else '-'):>11s} {fmt(s['lag_seconds_median'], '.2f'):>6s} "
              f"{s['good_runs']:>3d}/{s['runs']}")
    for key, r in ratios.items():
        if r:
            spread = (f" (same-round ratios {r['paired_min']:.2f}-{r['paired_max']:.2f})"
                      if r["paired_min"] is not None else "")
            print(f"ratio {key:28s} {r['of_medians']:.2f}{spread}")
    p = extra_info.get("pigeon", {})
    if "VmHWM" in p:
        print(f"pigeon peak RSS (VmHWM) {p['VmHWM'] / 1024:.1f} MiB, CPU {p.get('cpu_s', 0):.1f} s total, "
              f"log: {p.get('status_sent_in_log')} sent, {p.get('status_deferred_in_log')} deferred, "
              f"{p.get('status_bounced_in_log')} bounced")
    if summary.get("pigeon", {}).get("cpu_ms_per_message_median") is not None:
        print(f"pigeon CPU per message (accept + relay, median of rounds) "
              f"{summary['pigeon']['cpu_ms_per_message_median']:.2f} ms")
    for name, res in results.items():
        for e in res["errors"]:
            print(f"ERROR {name} {e}", file=sys.stderr)
    print(f"# load average start {info['loadavg_start']} end {info['loadavg_end']}")

    if args.json:
        doc = {"args": vars(args), "machine": info, "skipped": skipped, "results": results,
               "summary": summary, "ratios": ratios, "targets": extra_info,
               "interrupted": interrupted}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"# raw numbers written to {args.json}")
    failed = any(res["errors"] for res in results.values())
    return 130 if interrupted else (1 if failed else 0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)   # SIGTERM -> cleanup via finally
    sys.exit(main())

#!/usr/bin/env python3
"""Acceptance-rate benchmark: pigeon vs a private Postfix vs smtp-sink.

What it measures
  Postfix's `smtp-source` pushes --messages messages of --size payload bytes
  over --concurrency parallel SMTP sessions (one message per connection,
  like inbound MX traffic; --reuse-connections sends them all over the same
  sessions instead) into each target, on its own 127.0.0.1 port. We time
  the smtp-source process (time.perf_counter around it): it exits once every
  message got its 250 after DATA, so messages / seconds is the *acceptance*
  rate. smtp-source aborts on any other reply, so a run that exits 0 had
  every message accepted.

  Targets
    sink     smtp-sink: accepts and throws away; the ceiling of client +
             loopback on this machine.
    postfix  a private Postfix instance (temporary config + queue dir, stock
             master.cf with chroot off, everything delivered by discard(8)).
             cleanup(8) fsyncs the queue file before smtpd answers 250.
    pigeon   `python -m pigeon serve` with default settings (fsync on),
             recipient bench@localhost, delivered to Maildir in the
             background by pigeon's queue manager.

  After each run we wait (bounded) until the target has delivered everything
  (Postfix queue empty; pigeon: all messages in the Maildir) so rounds do not
  overlap with the previous round's delivery work; that wait is reported as
  "drain" and gives a secondary accept+deliver rate.

  Every target is warmed up with a short untimed run, then --rounds rounds
  run with the targets interleaved (order rotated each round) so slow drifts
  of a noisy machine hit all targets alike. We report medians, min/max and
  ratios of medians (plus the spread of same-round ratios).

Safety: talks to 127.0.0.1 only; every load run is bounded in messages
(--messages) and in time (--run-timeout); waits are bounded (--drain-timeout).
The private Postfix runs as root (Postfix requires it to start) from a temp
directory that is removed at the end; /etc/postfix is not modified.

Usage: make bench ARGS="--rounds 5"   or
       .venv/bin/python bench/accept_rate.py --messages 2000 --concurrency 20 --rounds 5
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pigeon.testing.postfix import (  # noqa: E402 (needs the sys.path line above)
    LOOPBACK, PostfixUnavailable, PrivatePostfix, find_tool, free_port, wait_banner, wait_until)

TARGETS = ("sink", "postfix", "pigeon")
SENDER = "bench@bench.test"
RECIPIENT = "bench@localhost"
HELO = "client.bench.test"


class SkipTarget(Exception):
    """A target cannot be set up here; the benchmark goes on without it."""


# --------------------------------------------------------------------------- targets

class Target:
    name = "?"
    port = 0

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def drained(self, total_sent: int) -> bool:
        """True when everything sent so far has been delivered (nothing pending)."""
        return True

    def describe(self) -> dict:
        return {}


class SinkTarget(Target):
    name = "sink"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        tool = find_tool("smtp-sink")
        if not tool:
            raise SkipTarget("smtp-sink not found (Debian package postfix)")
        self.port = free_port()
        cmd = [tool, "-4"]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]          # smtp-sink refuses to keep running as root
        cmd += [f"{LOOPBACK}:{self.port}", "256"]  # 256: listen backlog
        self.log = open(self.workdir / "smtp-sink.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        if not wait_banner(self.port, 10):
            self.stop()
            raise SkipTarget("smtp-sink did not start: "
                             + (self.workdir / "smtp-sink.log").read_text(errors="replace")[-500:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "log", None):
            self.log.close()


class PostfixTarget(Target):
    """A throw-away Postfix instance (pigeon.testing.postfix.PrivatePostfix)."""

    name = "postfix"

    def __init__(self, workdir: Path) -> None:
        self.pf = PrivatePostfix(workdir)

    def start(self) -> None:
        try:
            self.pf.start()
        except PostfixUnavailable as exc:
            raise SkipTarget(str(exc)) from None
        self.port = self.pf.port

    def drained(self, total_sent: int) -> bool:
        return self.pf.queued() == 0

    def sent_count(self) -> int:
        return self.pf.sent_count()

    def describe(self) -> dict:
        return self.pf.describe()

    def stop(self) -> None:
        self.pf.stop()


class PigeonTarget(Target):
    name = "pigeon"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir / "pigeon"
        self.proc = None

    def start(self) -> None:
        from pigeon.testing.live import PigeonProcess  # noqa: PLC0415 (pigeon may be mid-build)

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = PigeonProcess(self.workdir)    # default settings: fsync on, domain localhost
        try:
            self.proc.start(timeout=30)
        except Exception as exc:  # pigeon not runnable yet: report and skip
            self.proc.stop()
            raise SkipTarget(f"pigeon did not start: {str(exc)[-800:]}") from None
        self.port = self.proc.port

    @property
    def pid(self) -> int:
        return self.proc.proc.pid

    def delivered(self) -> int:
        from pigeon.testing.live import maildir_messages  # noqa: PLC0415

        return len(maildir_messages(self.proc.data_dir, RECIPIENT))

    def drained(self, total_sent: int) -> bool:
        return self.delivered() >= total_sent

    def proc_status(self) -> dict:
        """VmHWM/VmRSS (KiB) and CPU seconds of the pigeon process (+ its children)."""
        out: dict = {}
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, val = line.partition(":")
                if key in ("VmHWM", "VmRSS", "Threads"):
                    out[key] = int(val.split()[0])
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            tick = os.sysconf("SC_CLK_TCK")
            # utime, stime, cutime, cstime: fields 14-17 (1-based) -> index 11..14 after ")"
            out["cpu_s"] = sum(int(x) for x in fields[11:15]) / tick
        except (OSError, ValueError, IndexError):
            pass
        return out

    def describe(self) -> dict:
        return {"workdir": str(self.workdir), **self.proc_status()}

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


# --------------------------------------------------------------------------- runs

def smtp_source_cmd(tool: str, port: int, messages: int, args) -> list[str]:
    cmd = [tool, "-4", "-s", str(args.concurrency), "-m", str(messages), "-l", str(args.size),
           "-f", SENDER, "-t", RECIPIENT, "-M", HELO]
    if args.reuse_connections:
        cmd.append("-d")
    return cmd + [f"{LOOPBACK}:{port}"]


def run_load(tool: str, target: Target, messages: int, args) -> tuple[float, str | None]:
    """One bounded smtp-source run; returns (seconds, error or None)."""
    cmd = smtp_source_cmd(tool, target.port, messages, args)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.run_timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, f"smtp-source timed out after {args.run_timeout}s"
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        return elapsed, f"smtp-source exited {p.returncode}: {(p.stdout + p.stderr).strip()[-300:]}"
    return elapsed, None


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def machine_info() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "python": platform.python_version(), "pigeon_commit": commit or "?",
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def summarize(rates: list[float]) -> dict:
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)} if rates else {}


def fmt(x: float | None, spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000, help="messages per timed run (default 2000)")
    ap.add_argument("--concurrency", type=int, default=20, help="parallel SMTP sessions (default 20)")
    ap.add_argument("--size", type=int, default=5000, help="payload bytes per message (default 5000)")
    ap.add_argument("--rounds", type=int, default=5, help="timed runs per target (default 5)")
    ap.add_argument("--only", default=",".join(TARGETS),
                    help="comma-separated targets to run (default pigeon,postfix,sink)")
    ap.add_argument("--json", metavar="FILE", help="write the raw numbers to FILE")
    ap.add_argument("--warmup", type=int, default=200, help="untimed messages per target first (default 200)")
    ap.add_argument("--reuse-connections", action="store_true",
                    help="smtp-source -d: keep each session open for the next message")
    ap.add_argument("--run-timeout", type=float, default=600, help="seconds allowed per run (default 600)")
    ap.add_argument("--drain-timeout", type=float, default=120,
                    help="seconds to wait for delivery after a run (default 120)")
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

    workdir = Path(tempfile.mkdtemp(prefix="pigeon-bench-"))
    order = [t for t in ("sink", "postfix", "pigeon") if t in wanted]
    classes = {"sink": SinkTarget, "postfix": PostfixTarget, "pigeon": PigeonTarget}
    targets: dict[str, Target] = {}
    skipped: dict[str, str] = {}
    results: dict[str, dict] = {}
    info = machine_info()
    info["loadavg_start"] = loadavg()
    print(f"# {info['date']}  {info['nproc']} x {info['cpu']}  kernel {info['kernel']}  "
          f"load {info['loadavg_start']}")
    print(f"# {args.messages} messages x {args.size} B, {args.concurrency} sessions, "
          f"{args.rounds} rounds, one message per connection: {not args.reuse_connections}")
    interrupted = False
    try:
        for name in order:
            t = classes[name](workdir)
            try:
                t.start()
            except Exception as exc:  # SkipTarget, or a half-built pigeon failing to import
                t.stop()
                skipped[name] = str(exc)
                print(f"SKIP {name}: {exc}", file=sys.stderr)
                continue
            targets[name] = t
            results[name] = {"runs": [], "errors": [], "sent": 0}
            print(f"# {name} listening on {LOOPBACK}:{t.port}")

        # warm-up: untimed, lets Postfix spawn its smtpd/cleanup processes and pigeon warm up
        for name, t in targets.items():
            if args.warmup:
                _, err = run_load(source, t, args.warmup, args)
                results[name]["sent"] += args.warmup
                if err:
                    results[name]["errors"].append(f"warm-up: {err}")
                    print(f"{name} warm-up: {err}", file=sys.stderr)
                if not wait_until(lambda: t.drained(results[name]["sent"]), args.drain_timeout):
                    print(f"{name}: warm-up messages not delivered within {args.drain_timeout}s",
                          file=sys.stderr)

        names = list(targets)
        for r in range(args.rounds):
            k = r % len(names) if names else 0
            for name in names[k:] + names[:k]:          # rotate the order every round
                t, res = targets[name], results[name]
                cpu0 = t.proc_status().get("cpu_s") if isinstance(t, PigeonTarget) else None
                la = loadavg()
                secs, err = run_load(source, t, args.messages, args)
                res["sent"] += args.messages
                run = {"round": r + 1, "seconds": secs, "rate": args.messages / secs,
                       "loadavg": la}
                t1 = time.perf_counter()
                ok = wait_until(lambda: t.drained(res["sent"]), args.drain_timeout)
                run["drain_seconds"] = time.perf_counter() - t1
                run["delivered_all"] = ok
                run["deliver_rate"] = args.messages / (secs + run["drain_seconds"]) if ok else None
                if cpu0 is not None:
                    cpu1 = t.proc_status().get("cpu_s")
                    run["pigeon_cpu_seconds"] = None if cpu1 is None else cpu1 - cpu0
                if err:
                    run["error"] = err
                    res["errors"].append(f"round {r + 1}: {err}")
                res["runs"].append(run)
                extra = "" if ok else "  (NOT all delivered in time)"
                print(f"round {r + 1} {name:8s} {secs:7.3f} s  {args.messages / secs:8.0f} msg/s"
                      f"  drain {run['drain_seconds']:6.2f} s{extra}" + (f"  ERROR {err}" if err else ""))
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted; stopping targets", file=sys.stderr)
    finally:
        extra_info = {}
        for name, t in targets.items():
            try:
                extra_info[name] = t.describe()
                if isinstance(t, PostfixTarget):
                    extra_info[name]["status_sent_in_maillog"] = t.sent_count()
                if isinstance(t, PigeonTarget):
                    extra_info[name]["maildir_messages"] = t.delivered()
            except Exception as exc:  # describe is informational only
                extra_info[name] = {"error": repr(exc)}
            t.stop()
        if args.keep:
            print(f"# kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    info["loadavg_end"] = loadavg()
    # ---------------------------------------------------------------- report
    summary: dict[str, dict] = {}
    for name in TARGETS:
        if name not in results:
            continue
        good = [r for r in results[name]["runs"] if "error" not in r]
        summary[name] = summarize([r["rate"] for r in good])
        deliver = [r["deliver_rate"] for r in good if r.get("deliver_rate")]
        summary[name]["deliver_median"] = statistics.median(deliver) if deliver else None
        summary[name]["drain_median_s"] = (statistics.median([r["drain_seconds"] for r in good])
                                           if good else None)
        summary[name]["good_runs"] = len(good)
        cpu = [r["pigeon_cpu_seconds"] * 1000 / args.messages for r in good
               if r.get("pigeon_cpu_seconds") is not None]
        if cpu:
            summary[name]["cpu_ms_per_message_median"] = statistics.median(cpu)

    def ratio(a: str, b: str) -> dict | None:
        if not (summary.get(a, {}).get("median") and summary.get(b, {}).get("median")):
            return None
        ra = {r["round"]: r["rate"] for r in results[a]["runs"] if "error" not in r}
        rb = {r["round"]: r["rate"] for r in results[b]["runs"] if "error" not in r}
        paired = [ra[k] / rb[k] for k in ra if k in rb]
        return {"of_medians": summary[a]["median"] / summary[b]["median"],
                "paired_min": min(paired) if paired else None,
                "paired_max": max(paired) if paired else None}

    ratios = {f"{a}/{b}": ratio(a, b) for a, b in
              (("pigeon", "postfix"), ("pigeon", "sink"), ("postfix", "sink"))}
    print()
    print(f"{'target':8s} {'median msg/s':>12s} {'min':>7s} {'max':>7s} {'runs':>5s}"
          f" {'accept+deliver msg/s':>21s}")
    for name in TARGETS:
        if name in skipped or name not in summary:
            if name in wanted:
                reason = (skipped.get(name) or "no run").strip().splitlines() or ["?"]
                print(f"{name:8s} {'not measured':>12s}  ({reason[-1][:100]})")
            continue
        s = summary[name]
        print(f"{name:8s} {fmt(s.get('median')):>12s} {fmt(s.get('min')):>7s} {fmt(s.get('max')):>7s}"
              f" {s['good_runs']:>3d}/{len(results[name]['runs'])} {fmt(s.get('deliver_median')):>21s}")
    for key, r in ratios.items():
        if r:
            spread = (f" (same-round ratios {r['paired_min']:.2f}-{r['paired_max']:.2f})"
                      if r["paired_min"] is not None else "")
            print(f"ratio {key:15s} {r['of_medians']:.2f}{spread}")
    if "pigeon" in extra_info and "VmHWM" in extra_info["pigeon"]:
        p = extra_info["pigeon"]
        print(f"pigeon peak RSS (VmHWM) {p['VmHWM'] / 1024:.1f} MiB, "
              f"CPU {p.get('cpu_s', 0):.1f} s total, {p.get('maildir_messages')} messages in Maildir")
    if summary.get("pigeon", {}).get("cpu_ms_per_message_median") is not None:
        print(f"pigeon CPU per message (accept + deliver, median of rounds) "
              f"{summary['pigeon']['cpu_ms_per_message_median']:.2f} ms")
    print(f"# load average start {info['loadavg_start']} end {info['loadavg_end']}")

    if args.json:
        doc = {"args": vars(args), "machine": info, "skipped": skipped, "results": results,
               "summary": summary, "ratios": ratios, "targets": extra_info,
               "interrupted": interrupted}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"# raw numbers written to {args.json}")
    failed = any(results[n]["errors"] for n in results)
    return 130 if interrupted else (1 if failed else 0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)   # SIGTERM -> cleanup via finally
    sys.exit(main())

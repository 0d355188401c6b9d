"""Pieces shared by the SMTP benchmarks (bench/accept_rate.py, bench/relay_rate.py).

Machine and load information, smtp-sink / smtp-source helpers, the pigeon
target with its CPU/RSS accounting, the command line both scripts take, the
start / round-robin / stop skeleton and the parts of the report that read
alike. The scripts put this directory on sys.path and `import common`; this
module puts the source tree (ROOT/src) on sys.path for `pigeon`.
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
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pigeon.testing.postfix import LOOPBACK, find_tool, free_port, wait_banner  # noqa: E402

TARGETS = ("sink", "postfix", "pigeon")
SENDER = "bench@bench.test"
HELO = "client.bench.test"


class SkipTarget(Exception):
    """A target cannot be set up here; the benchmark goes on without it."""


# --------------------------------------------------------------------------- machine


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
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pigeon_commit": commit or "?",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def start_info() -> dict:
    """machine_info() plus the load average now, printed as the report's first line."""
    info = machine_info()
    info["loadavg_start"] = loadavg()
    print(
        f"# {info['date']}  {info['nproc']} x {info['cpu']}  kernel {info['kernel']}  "
        f"load {info['loadavg_start']}"
    )
    return info


def proc_status(pid: int) -> dict:
    """VmHWM/VmRSS (KiB) and CPU seconds of process `pid` (+ its children)."""
    out: dict = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, val = line.partition(":")
            if key in ("VmHWM", "VmRSS", "Threads"):
                out[key] = int(val.split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        # utime, stime, cutime, cstime: fields 14-17 (1-based) -> index 11..14 after ")"
        out["cpu_s"] = sum(int(x) for x in fields[11:15]) / tick
    except (OSError, ValueError, IndexError):
        pass
    return out


# --------------------------------------------------------------------------- processes


def stop_process(proc: subprocess.Popen | None) -> None:
    """Terminate `proc` if it still runs (kill it if it does not go within 10 s)."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_smtp_sink(logpath: Path, extra: list[str]) -> tuple[subprocess.Popen, int]:
    """smtp-sink (with `extra` options) on 127.0.0.1:<free port>; returns (process, port)."""
    tool = find_tool("smtp-sink")
    if not tool:
        raise SkipTarget("smtp-sink not found (Debian package postfix)")
    port = free_port()
    cmd = [tool, "-4"]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]  # smtp-sink refuses to keep running as root
    cmd += [*extra, f"{LOOPBACK}:{port}", "256"]  # 256: listen backlog
    with open(logpath, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if not wait_banner(port, 10):
        stop_process(proc)
        raise SkipTarget("smtp-sink did not start: " + logpath.read_text(errors="replace")[-500:])
    return proc, port


def smtp_source_cmd(tool: str, port: int, messages: int, recipient: str, args) -> list[str]:
    cmd = [
        tool,
        "-4",
        "-s",
        str(args.concurrency),
        "-m",
        str(messages),
        "-l",
        str(args.size),
        "-f",
        SENDER,
        "-t",
        recipient,
        "-M",
        HELO,
    ]
    if args.reuse_connections:
        cmd.append("-d")
    return cmd + [f"{LOOPBACK}:{port}"]


def run_load(tool: str, port: int, messages: int, recipient: str, args) -> tuple[float, str | None]:
    """One bounded smtp-source run; returns (seconds, error or None)."""
    cmd = smtp_source_cmd(tool, port, messages, recipient, args)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.run_timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, f"smtp-source timed out after {args.run_timeout}s"
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        return elapsed, f"smtp-source exited {p.returncode}: {(p.stdout + p.stderr).strip()[-300:]}"
    return elapsed, None


# --------------------------------------------------------------------------- pigeon


class PigeonTarget:
    """`python -m pigeon serve` in WORKDIR/pigeon, with CPU/RSS accounting."""

    name = "pigeon"
    port = 0

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir / "pigeon"
        self.proc = None

    def start_pigeon(self, config_text: str = "") -> None:
        from pigeon.testing.live import PigeonProcess  # noqa: PLC0415 (pigeon may be mid-build)

        self.workdir.mkdir(parents=True, exist_ok=True)
        # Extra top-level settings from bench/suite.py --pigeon-toml (e.g.
        # "workers = 2"); they must come before any [table] of config_text.
        top = os.environ.get("PIGEON_BENCH_TOML", "").strip()
        if top:
            config_text = top + "\n" + config_text
        self.proc = PigeonProcess(self.workdir, config_text)  # fsync on, domain localhost
        try:
            self.proc.start(timeout=30)
        except Exception as exc:  # pigeon not runnable (yet): report and skip
            self.proc.stop()
            raise SkipTarget(f"pigeon did not start: {str(exc)[-800:]}") from None
        self.port = self.proc.port

    @property
    def pid(self) -> int:
        return self.proc.proc.pid

    def proc_status(self) -> dict:
        """VmHWM/VmRSS (KiB) and CPU seconds of the pigeon process (+ its children)."""
        return proc_status(self.pid)

    def describe(self) -> dict:
        return {"workdir": str(self.workdir), **self.proc_status()}

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def cpu_seconds(t) -> float | None:
    """CPU seconds used so far by target `t` if it is pigeon, else None."""
    return t.proc_status().get("cpu_s") if isinstance(t, PigeonTarget) else None


# --------------------------------------------------------------------------- command line


def parse_args(
    doc: str,
    argv: list[str] | None,
    *,
    messages: int,
    only_help: str,
    reuse_help: str,
    run_timeout_help: str,
    drain_timeout: float,
    drain_help: str,
) -> tuple[argparse.Namespace, list[str]]:
    """The options both benchmarks take, checked; returns (args, wanted targets)."""
    ap = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--messages",
        type=int,
        default=messages,
        help=f"messages per timed run (default {messages})",
    )
    ap.add_argument(
        "--concurrency", type=int, default=20, help="parallel SMTP sessions (default 20)"
    )
    ap.add_argument(
        "--size", type=int, default=5000, help="payload bytes per message (default 5000)"
    )
    ap.add_argument("--rounds", type=int, default=5, help="timed runs per target (default 5)")
    ap.add_argument("--only", default=",".join(TARGETS), help=only_help)
    ap.add_argument("--json", metavar="FILE", help="write the raw numbers to FILE")
    ap.add_argument(
        "--warmup", type=int, default=200, help="untimed messages per target first (default 200)"
    )
    ap.add_argument("--reuse-connections", action="store_true", help=reuse_help)
    ap.add_argument("--run-timeout", type=float, default=600, help=run_timeout_help)
    ap.add_argument("--drain-timeout", type=float, default=drain_timeout, help=drain_help)
    ap.add_argument("--keep", action="store_true", help="keep the temp directory (logs, queues)")
    args = ap.parse_args(argv)

    wanted = [t.strip() for t in args.only.split(",") if t.strip()]
    bad = [t for t in wanted if t not in TARGETS]
    if bad or not wanted:
        ap.error(f"--only: unknown target(s) {bad}; choose from {','.join(TARGETS)}")
    for name, val, lo in (
        ("messages", args.messages, 1),
        ("concurrency", args.concurrency, 1),
        ("size", args.size, 0),
        ("rounds", args.rounds, 1),
        ("warmup", args.warmup, 0),
    ):
        if val < lo:
            ap.error(f"--{name} must be >= {lo}")
    if args.concurrency > 50:
        print(
            "note: pigeon and Postfix both allow 50 connections per client IP by default; "
            "runs above that will see refusals",
            file=sys.stderr,
        )
    return args, wanted


def smtp_source() -> str | None:
    """Path of smtp-source, or None after saying it is missing."""
    source = find_tool("smtp-source")
    if not source:
        print("error: smtp-source not found (install the Debian package postfix)", file=sys.stderr)
    return source


# --------------------------------------------------------------------------- start, rounds, stop


def start_targets(
    classes: dict, wanted: list[str], workdir: Path, targets: dict, skipped: dict[str, str]
) -> Iterator[tuple[str, object]]:
    """Start the wanted targets in TARGETS order; yields (name, target) for each that runs.

    A target that fails to start is stopped and recorded in `skipped`; each started one
    is in `targets` before it is yielded (so a `finally` can stop it).
    """
    for name in (n for n in TARGETS if n in wanted):
        t = classes[name](workdir)
        try:
            t.start()
        except Exception as exc:  # SkipTarget, or a half-built pigeon failing to import
            t.stop()
            skipped[name] = str(exc)
            print(f"SKIP {name}: {exc}", file=sys.stderr)
            continue
        targets[name] = t
        yield name, t


def rotated_rounds(names: list[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round index, target name) for every run, the order rotated every round."""
    for r in range(rounds):
        k = r % len(names) if names else 0
        for name in names[k:] + names[:k]:
            yield r, name


def stop_targets(targets: dict, workdir: Path, keep: bool) -> dict[str, dict]:
    """describe() and stop every target, remove (or keep) `workdir`; returns the descriptions."""
    extra_info: dict[str, dict] = {}
    for name, t in targets.items():
        try:
            extra_info[name] = t.describe()
        except Exception as exc:  # describe is informational only
            extra_info[name] = {"error": repr(exc)}
        t.stop()
    if keep:
        print(f"# kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return extra_info


# --------------------------------------------------------------------------- report


def fmt(x: float | None, spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def median_of(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def span(runs: list[dict], key: str) -> tuple[float, float] | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return (min(vals), max(vals)) if vals else None


def cpu_ms_per_message(good: list[dict], messages: int) -> float | None:
    """Median over `good` runs of pigeon's CPU milliseconds per message, None if not measured."""
    cpu = [
        r["pigeon_cpu_seconds"] * 1000 / messages
        for r in good
        if r.get("pigeon_cpu_seconds") is not None
    ]
    return statistics.median(cpu) if cpu else None


def ratio(
    results: dict, a: str, b: str, key: str, ma: float | None, mb: float | None
) -> dict | None:
    """ma / mb (medians of a and b) and the spread of the same-round ratios of runs' `key`."""
    if not (ma and mb):
        return None
    ra = {r["round"]: r[key] for r in results[a]["runs"] if "error" not in r and r.get(key)}
    rb = {r["round"]: r[key] for r in results[b]["runs"] if "error" not in r and r.get(key)}
    paired = [ra[k] / rb[k] for k in ra if k in rb]
    return {
        "of_medians": ma / mb,
        "paired_min": min(paired) if paired else None,
        "paired_max": max(paired) if paired else None,
    }


RATIO_PAIRS = (("pigeon", "postfix"), ("pigeon", "sink"), ("postfix", "sink"))


def print_not_measured(name: str, skipped: dict[str, str], width: int) -> None:
    reason = (skipped.get(name) or "no run").strip().splitlines() or ["?"]
    print(f"{name:8s} {'not measured':>{width}s}  ({reason[-1][:100]})")


def print_ratios(ratios: dict, width: int) -> None:
    for key, r in ratios.items():
        if r:
            spread = (
                f" (same-round ratios {r['paired_min']:.2f}-{r['paired_max']:.2f})"
                if r["paired_min"] is not None
                else ""
            )
            print(f"ratio {key:{width}s} {r['of_medians']:.2f}{spread}")


def pigeon_usage(p: dict) -> str:
    """Start of the line on pigeon's peak RSS and total CPU (p: its describe())."""
    return f"pigeon peak RSS (VmHWM) {p['VmHWM'] / 1024:.1f} MiB, CPU {p.get('cpu_s', 0):.1f} s total, "


def print_cpu_per_message(summary: dict, what: str) -> None:
    if summary.get("pigeon", {}).get("cpu_ms_per_message_median") is not None:
        print(
            f"pigeon CPU per message ({what}, median of rounds) "
            f"{summary['pigeon']['cpu_ms_per_message_median']:.2f} ms"
        )


def finish(
    args,
    info: dict,
    skipped: dict,
    results: dict,
    summary: dict,
    ratios: dict,
    extra_info: dict,
    interrupted: bool,
) -> int:
    """Last report line, the --json file; returns the exit status."""
    print(f"# load average start {info['loadavg_start']} end {info['loadavg_end']}")
    if args.json:
        doc = {
            "args": vars(args),
            "machine": info,
            "skipped": skipped,
            "results": results,
            "summary": summary,
            "ratios": ratios,
            "targets": extra_info,
            "interrupted": interrupted,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"# raw numbers written to {args.json}")
    failed = any(res["errors"] for res in results.values())
    return 130 if interrupted else (1 if failed else 0)


def run_main(main: Callable[[], int]) -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM -> cleanup via finally
    sys.exit(main())

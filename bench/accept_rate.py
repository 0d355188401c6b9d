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

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 (bench/ on sys.path above; it puts src/ there too)
from common import TARGETS, SkipTarget, cpu_seconds, fmt, loadavg, run_load  # noqa: E402
from common import PigeonTarget as _PigeonTarget

from pigeon.testing.postfix import LOOPBACK, PostfixUnavailable, PrivatePostfix, wait_until  # noqa: E402

RECIPIENT = "bench@localhost"


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
        self.proc = None

    def start(self) -> None:
        self.proc, self.port = common.start_smtp_sink(self.workdir / "smtp-sink.log", [])

    def stop(self) -> None:
        common.stop_process(self.proc)


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

    def describe(self) -> dict:
        return {**self.pf.describe(), "status_sent_in_maillog": self.pf.sent_count()}

    def stop(self) -> None:
        self.pf.stop()


class PigeonTarget(_PigeonTarget, Target):
    """pigeon with default settings (fsync on, domain localhost), delivering to Maildir."""

    def start(self) -> None:
        self.start_pigeon()

    def delivered(self) -> int:
        from pigeon.testing.live import maildir_messages  # noqa: PLC0415

        return len(maildir_messages(self.proc.data_dir, RECIPIENT))

    def drained(self, total_sent: int) -> bool:
        return self.delivered() >= total_sent

    def describe(self) -> dict:
        return {**super().describe(), "maildir_messages": self.delivered()}


CLASSES = {"sink": SinkTarget, "postfix": PostfixTarget, "pigeon": PigeonTarget}


# --------------------------------------------------------------------------- main


def summarize(rates: list[float]) -> dict:
    return (
        {"median": statistics.median(rates), "min": min(rates), "max": max(rates)} if rates else {}
    )


def main(argv: list[str] | None = None) -> int:
    args, wanted = common.parse_args(
        __doc__,
        argv,
        messages=2000,
        only_help="comma-separated targets to run (default pigeon,postfix,sink)",
        reuse_help="smtp-source -d: keep each session open for the next message",
        run_timeout_help="seconds allowed per run (default 600)",
        drain_timeout=120,
        drain_help="seconds to wait for delivery after a run (default 120)",
    )
    source = common.smtp_source()
    if not source:
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="pigeon-bench-"))
    targets: dict[str, Target] = {}
    skipped: dict[str, str] = {}
    results: dict[str, dict] = {}
    extra_info: dict[str, dict] = {}
    info = common.start_info()
    print(
        f"# {args.messages} messages x {args.size} B, {args.concurrency} sessions, "
        f"{args.rounds} rounds, one message per connection: {not args.reuse_connections}"
    )
    interrupted = False
    try:
        for name, t in common.start_targets(CLASSES, wanted, workdir, targets, skipped):
            results[name] = {"runs": [], "errors": [], "sent": 0}
            print(f"# {name} listening on {LOOPBACK}:{t.port}")

        # warm-up: untimed, lets Postfix spawn its smtpd/cleanup processes and pigeon warm up
        for name, t in targets.items():
            if args.warmup:
                _, err = run_load(source, t.port, args.warmup, RECIPIENT, args)
                results[name]["sent"] += args.warmup
                if err:
                    results[name]["errors"].append(f"warm-up: {err}")
                    print(f"{name} warm-up: {err}", file=sys.stderr)
                if not wait_until(lambda: t.drained(results[name]["sent"]), args.drain_timeout):
                    print(
                        f"{name}: warm-up messages not delivered within {args.drain_timeout}s",
                        file=sys.stderr,
                    )

        for r, name in common.rotated_rounds(list(targets), args.rounds):
            t, res = targets[name], results[name]
            cpu0 = cpu_seconds(t)
            la = loadavg()
            secs, err = run_load(source, t.port, args.messages, RECIPIENT, args)
            res["sent"] += args.messages
            run = {"round": r + 1, "seconds": secs, "rate": args.messages / secs, "loadavg": la}
            t1 = time.perf_counter()
            ok = wait_until(lambda: t.drained(res["sent"]), args.drain_timeout)
            run["drain_seconds"] = time.perf_counter() - t1
            run["delivered_all"] = ok
            run["deliver_rate"] = args.messages / (secs + run["drain_seconds"]) if ok else None
            if cpu0 is not None:
                cpu1 = cpu_seconds(t)
                run["pigeon_cpu_seconds"] = None if cpu1 is None else cpu1 - cpu0
            if err:
                run["error"] = err
                res["errors"].append(f"round {r + 1}: {err}")
            res["runs"].append(run)
            extra = "" if ok else "  (NOT all delivered in time)"
            print(
                f"round {r + 1} {name:8s} {secs:7.3f} s  {args.messages / secs:8.0f} msg/s"
                f"  drain {run['drain_seconds']:6.2f} s{extra}" + (f"  ERROR {err}" if err else "")
            )
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted; stopping targets", file=sys.stderr)
    finally:
        extra_info = common.stop_targets(targets, workdir, args.keep)

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
        summary[name]["drain_median_s"] = (
            statistics.median([r["drain_seconds"] for r in good]) if good else None
        )
        summary[name]["good_runs"] = len(good)
        cpu = common.cpu_ms_per_message(good, args.messages)
        if cpu is not None:
            summary[name]["cpu_ms_per_message_median"] = cpu

    ratios = {
        f"{a}/{b}": common.ratio(
            results,
            a,
            b,
            "rate",
            summary.get(a, {}).get("median"),
            summary.get(b, {}).get("median"),
        )
        for a, b in common.RATIO_PAIRS
    }
    print()
    print(
        f"{'target':8s} {'median msg/s':>12s} {'min':>7s} {'max':>7s} {'runs':>5s}"
        f" {'accept+deliver msg/s':>21s}"
    )
    for name in TARGETS:
        if name in skipped or name not in summary:
            if name in wanted:
                common.print_not_measured(name, skipped, 12)
            continue
        s = summary[name]
        print(
            f"{name:8s} {fmt(s.get('median')):>12s} {fmt(s.get('min')):>7s} {fmt(s.get('max')):>7s}"
            f" {s['good_runs']:>3d}/{len(results[name]['runs'])} {fmt(s.get('deliver_median')):>21s}"
        )
    common.print_ratios(ratios, 15)
    if "pigeon" in extra_info and "VmHWM" in extra_info["pigeon"]:
        p = extra_info["pigeon"]
        print(common.pigeon_usage(p) + f"{p.get('maildir_messages')} messages in Maildir")
    common.print_cpu_per_message(summary, "accept + deliver")
    return common.finish(args, info, skipped, results, summary, ratios, extra_info, interrupted)


if __name__ == "__main__":
    common.run_main(main)

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

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Shared with the acceptance benchmark so both report machines and load alike.
import common  # noqa: E402 (bench/ on sys.path above; it puts src/ there too)
from common import TARGETS, PigeonTarget, SkipTarget, cpu_seconds, fmt, loadavg  # noqa: E402

from pigeon.testing.postfix import LOOPBACK, PostfixUnavailable, PrivatePostfix, wait_until  # noqa: E402

RECIPIENT = "user@relay.test"
RELAY_DOMAIN = "relay.test"
POLL = 0.01  # seconds between counts of the sink directory


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
        self.proc = None

    def start(self) -> None:
        self.proc, self.port = common.start_smtp_sink(self.logpath, ["-d", f"{self.dir}/%M."])

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
        common.stop_process(self.proc)


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
            "smtp_tls_security_level": "none",  # smtp-sink offers no STARTTLS anyway
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
    """pigeon (common.PigeonTarget's CPU/RSS accounting) relaying relay.test to its sink."""

    marker = b"by pigeon.test (pigeon) with"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.sink = DumpSink(workdir, self.name)

    def start(self) -> None:
        self.sink.start()
        self.start_pigeon(
            f'relay_networks = ["127.0.0.0/8"]\n'
            f'[transports]\n"{RELAY_DOMAIN}" = "smtp:[{LOOPBACK}]:{self.sink.port}"\n'
        )

    def idle(self) -> bool:
        # A message leaves msg/ once every recipient is final (delivered or bounced).
        msg = self.proc.data_dir / "queue" / "msg"
        return not msg.is_dir() or not any(msg.iterdir())

    def describe(self) -> dict:
        log = self.proc.log()
        return {
            **super().describe(),
            "status_sent_in_log": log.count("status=sent"),
            "status_deferred_in_log": log.count("status=deferred"),
            "status_bounced_in_log": log.count("status=bounced"),
        }

    def stop(self) -> None:
        super().stop()
        self.sink.stop()


CLASSES = {"sink": SinkTarget, "postfix": PostfixRelayTarget, "pigeon": PigeonRelayTarget}


# --------------------------------------------------------------------------- one run


def one_run(tool: str, t, messages: int, args) -> dict:
    """Send `messages`, time acceptance and relay completion, verify, empty the sink."""
    t.sink.clear()
    run: dict = {"loadavg": loadavg()}
    cpu0 = cpu_seconds(t)
    t0 = time.perf_counter()
    accept, err = common.run_load(tool, t.port, messages, RECIPIENT, args)
    deadline = time.perf_counter() + args.drain_timeout
    while t.sink.count() < messages and time.perf_counter() < deadline:
        time.sleep(POLL)
    relay = time.perf_counter() - t0
    arrived = t.sink.count()
    run.update(
        accept_seconds=accept,
        accept_rate=messages / accept,
        relay_seconds=relay,
        relay_rate=messages / relay if arrived >= messages else None,
        lag_seconds=relay - accept,
        arrived=arrived,
    )
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


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args, wanted = common.parse_args(
        __doc__,
        argv,
        messages=1000,
        only_help="comma-separated targets to run (default sink,postfix,pigeon)",
        reuse_help="smtp-source -d: keep each inbound session open for the next message",
        run_timeout_help="seconds allowed per smtp-source run (default 600)",
        drain_timeout=300,
        drain_help="seconds to wait for relay completion after a run (default 300)",
    )
    source = common.smtp_source()
    if not source:
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="pigeon-relay-bench-"))
    workdir.chmod(0o755)  # Postfix daemons and smtp-sink (nobody) must traverse it
    targets: dict = {}
    skipped: dict[str, str] = {}
    results: dict[str, dict] = {}
    info = common.start_info()
    print(
        f"# {args.messages} messages x {args.size} B to {RECIPIENT}, {args.concurrency} sessions, "
        f"{args.rounds} rounds, one message per connection: {not args.reuse_connections}"
    )
    interrupted = False
    extra_info: dict[str, dict] = {}
    try:
        for name, t in common.start_targets(CLASSES, wanted, workdir, targets, skipped):
            results[name] = {"runs": [], "errors": []}
            print(
                f"# {name} listening on {LOOPBACK}:{t.port}, relaying to sink on {LOOPBACK}:{t.sink.port}"
            )

        # Warm-up, untimed: Postfix spawns smtpd/cleanup/smtp processes and
        # ramps up its destination concurrency; pigeon opens its connections.
        for name, t in targets.items():
            if args.warmup:
                run = one_run(source, t, args.warmup, args)
                if "error" in run:
                    results[name]["errors"].append(f"warm-up: {run['error']}")
                    print(f"{name} warm-up: {run['error']}", file=sys.stderr)

        for r, name in common.rotated_rounds(list(targets), args.rounds):
            t, res = targets[name], results[name]
            run = one_run(source, t, args.messages, args)
            run["round"] = r + 1
            res["runs"].append(run)
            if "error" in run:
                res["errors"].append(f"round {r + 1}: {run['error']}")
            print(
                f"round {r + 1} {name:8s} accept {run['accept_seconds']:7.3f} s "
                f"{run['accept_rate']:6.0f} msg/s   relay {run['relay_seconds']:7.3f} s "
                f"{fmt(run['relay_rate']):>6s} msg/s   lag {run['lag_seconds']:6.2f} s"
                + (f"  ERROR {run['error']}" if "error" in run else "")
            )
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted; stopping targets", file=sys.stderr)
    finally:
        extra_info = common.stop_targets(targets, workdir, args.keep)

    info["loadavg_end"] = loadavg()
    summary: dict[str, dict] = {}
    for name, res in results.items():
        good = [r for r in res["runs"] if "error" not in r]
        s = {"good_runs": len(good), "runs": len(res["runs"])}
        for key in ("accept_rate", "relay_rate", "lag_seconds"):
            s[f"{key}_median"] = common.median_of(good, key)
            s[f"{key}_span"] = common.span(good, key)
        cpu = common.cpu_ms_per_message(good, args.messages)
        if cpu is not None:
            s["cpu_ms_per_message_median"] = cpu
        summary[name] = s

    ratios = {
        f"{a}/{b} {key}": common.ratio(
            results,
            a,
            b,
            key,
            summary.get(a, {}).get(f"{key}_median"),
            summary.get(b, {}).get(f"{key}_median"),
        )
        for a, b in common.RATIO_PAIRS
        for key in ("accept_rate", "relay_rate")
    }
    print()
    print(
        f"{'target':8s} {'accept msg/s':>13s} {'(min-max)':>11s} {'relay msg/s':>12s} "
        f"{'(min-max)':>11s} {'lag s':>6s} {'runs':>5s}"
    )
    for name in TARGETS:
        if name not in wanted:
            continue
        if name not in summary:
            common.print_not_measured(name, skipped, 13)
            continue
        s = summary[name]
        a, rl = s["accept_rate_span"], s["relay_rate_span"]
        print(
            f"{name:8s} {fmt(s['accept_rate_median']):>13s} "
            f"{(f'{a[0]:.0f}-{a[1]:.0f}' if a else '-'):>11s} {fmt(s['relay_rate_median']):>12s} "
            f"{(f'{rl[0]:.0f}-{rl[1]:.0f}' if rl else '-'):>11s} {fmt(s['lag_seconds_median'], '.2f'):>6s} "
            f"{s['good_runs']:>3d}/{s['runs']}"
        )
    common.print_ratios(ratios, 28)
    p = extra_info.get("pigeon", {})
    if "VmHWM" in p:
        print(
            common.pigeon_usage(p) + f"log: {p.get('status_sent_in_log')} sent, "
            f"{p.get('status_deferred_in_log')} deferred, {p.get('status_bounced_in_log')} bounced"
        )
    common.print_cpu_per_message(summary, "accept + relay")
    for name, res in results.items():
        for e in res["errors"]:
            print(f"ERROR {name} {e}", file=sys.stderr)
    return common.finish(args, info, skipped, results, summary, ratios, extra_info, interrupted)


if __name__ == "__main__":
    common.run_main(main)

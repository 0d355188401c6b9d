#!/usr/bin/env python3
"""Benchmark suite (issue 7): pigeon vs a private Postfix vs smtp-sink, one table of medians.

Scenarios (loopback only, every load bounded in messages and in time):

  inbound    1 KB messages, 1 recipient, delivered to a local Maildir, at 1, 10
             and 50 concurrent sessions, one message per connection
             (smtp-source -s N -l 1024); 100 KB messages at 10 sessions;
             about 10 messages per connection at 10 sessions (smtp-source
             -d: repeated runs of -s 10 -m 100). Postfix delivers with
             virtual(8) to a Maildir (virtual_mailbox_maps = static:bench/),
             pigeon with its own Maildir delivery (bench@localhost); both
             fsync before answering 250. Two rates per run: "accept"
             (smtp-source exits: every message got its 250) and "delivered"
             (the Maildir's new/ holds every message); afterwards the count
             is checked to be exactly the number sent. smtp-sink (no
             storage) is the ceiling of client + loopback on this machine.
  connections  N idle sessions after EHLO (2,000 by default, --full 10,000),
             source addresses spread over 127.0.0.2-127.0.0.251: memory of
             each server (pigeon: VmHWM of its processes; Postfix: summed RSS
             of its smtpd processes, and PSS of all its processes) and the
             EHLO latency of a normal client from 127.0.0.1 meanwhile.
  latency    accept-to-Maildir delay at a fixed moderate rate (half of the
             lower of the two servers' delivered rates at 10 sessions) from
             one client over one session: time of the 250 after DATA to the
             ctime of the message file in new/ (its rename into new/).
  relay      bench/relay_rate.py (run as a subprocess, small settings), summarised.
  queue      bench/queue_scale.py and bench/queue_rate.py (subprocesses), summarised.
  mailauth   bench/mail_auth_cost.py (a subprocess): inbound accept rate with
             SPF+DKIM+DMARC enforced vs off (issue 13: on/off at least 0.8),
             7 rounds at least after a warm-up round.
  cluster    bench/cluster_rate.py (a subprocess): relay through 1, 2 and 3
             nodes on one throw-away PostgreSQL against the embedded store
             (issue 17: one node at least 0.7x of the embedded store's rate);
             skipped with a note when PostgreSQL is not installed.
  imap       bench/imap_vs_dovecot.py (a subprocess): pigeon's IMAP against a
             private Dovecot on the same 100,000-message Maildir (issue 14:
             within 2x of Dovecot's time, under 50 KB per idle session); its
             own table and targets are printed under the suite's.

CPU seconds per 1,000 messages: utime+stime of each server's whole process
tree (pigeon: its process and any workers; Postfix: master and every child:
smtpd, cleanup, qmgr, virtual, trivial-rewrite, ...; children that exited
count through master's cutime/cstime), over run + delivery.

Rounds: every throughput scenario runs --rounds times per target, the
order of targets rotated every run; the table gives medians and the median
of same-round ratios (pigeon/postfix, pigeon/sink).

Usage:  make bench                          (quick mode, a few minutes)
        .venv/bin/python bench/suite.py [--full] [--rounds N] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 (bench/ on sys.path above; it puts src/ there too)
import speed_targets  # noqa: E402 (issue 16: the bounds, checked under the table)
from common import HELO, SENDER, SkipTarget, fmt, loadavg  # noqa: E402

from pigeon.testing.postfix import (  # noqa: E402
    LOOPBACK,
    PostfixUnavailable,
    PrivatePostfix,
    wait_until,
)

BENCH = Path(__file__).resolve().parent
RECIPIENT = "bench@localhost"
TICK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- /proc accounting


def _stat(pid: int) -> tuple[int, float] | None:
    """(ppid, CPU seconds incl. reaped children) of `pid`, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[1]), sum(int(x) for x in fields[11:15]) / TICK
    except (OSError, ValueError, IndexError):
        return None


def tree_pids(root: int) -> list[int]:
    """`root` and all its live descendants."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st:
                parent[int(d)] = st[0]
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in parent or p == root:
            out.append(p)
            todo.extend(c for c, pp in parent.items() if pp == p)
    return out


def tree_cpu(root: int | None) -> float | None:
    """CPU seconds (user+system) used so far by `root`'s process tree, exited children included."""
    if not root:
        return None
    total = 0.0
    for p in tree_pids(root):
        st = _stat(p)
        if st:
            total += st[1]
    return total


def mem_kib(pid: int) -> dict:
    """VmRSS, VmHWM and Pss (KiB) of one process; missing keys when it is gone."""
    out: dict = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["Pss"] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return out


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


# --------------------------------------------------------------------------- targets


def count_dir(d: Path) -> int:
    try:
        return len(os.listdir(d))
    except FileNotFoundError:
        return 0


def clear_dir(d: Path) -> None:
    try:
        for name in os.listdir(d):
            try:
                os.unlink(d / name)
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        pass


class Sink:
    name = "sink"
    new_dir = None

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.proc, self.port = workdir, None, 0

    def start(self) -> None:
        self.proc, self.port = common.start_smtp_sink(self.workdir / "smtp-sink.log", [])

    def root_pid(self) -> int | None:
        return None

    def stop(self) -> None:
        common.stop_process(self.proc)


class PostfixMaildir:
    """Private Postfix; mail for bench@localhost goes through virtual(8) into MAIL/bench/ (Maildir)."""

    name = "postfix"

    def __init__(
        self, workdir: Path, tag: str = "inbound", process_limit: int | None = None
    ) -> None:
        inst = workdir / f"postfix-{tag}"
        inst.mkdir(parents=True, exist_ok=True)
        self.base = inst / "postfix" / "mail"
        try:
            nobody = pwd.getpwnam("nobody")
            self.uid, self.gid = nobody.pw_uid, nobody.pw_gid
        except KeyError:
            self.uid = self.gid = 65534
        settings = {
            "mydestination": "",
            "virtual_mailbox_domains": "localhost",
            "virtual_mailbox_base": str(self.base),
            "virtual_mailbox_maps": "static:bench/",  # trailing slash: Maildir
            "virtual_uid_maps": f"static:{self.uid}",
            "virtual_gid_maps": f"static:{self.gid}",
            "virtual_transport": "virtual",
        }
        if process_limit:
            settings["default_process_limit"] = str(process_limit)
        self.pf = PrivatePostfix(inst, settings=settings)
        self.new_dir = self.base / "bench" / "new"
        self.port = 0

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        os.chown(self.base, self.uid, self.gid)
        try:
            self.pf.start()
        except PostfixUnavailable as exc:
            raise SkipTarget(str(exc)) from None
        self.port = self.pf.port

    def root_pid(self) -> int | None:
        try:
            return int((self.pf.spool / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def queued(self) -> int:
        return self.pf.queued()

    def stop(self) -> None:
        self.pf.stop()


class Pigeon:
    """pigeon serve, defaults (fsync on, domain localhost) except the session limits (0 = none)."""

    name = "pigeon"

    def __init__(self, workdir: Path, tag: str = "inbound", toml_top: str = "") -> None:
        self.workdir = workdir / f"pigeon-{tag}"
        self.toml = (
            toml_top.strip() + "\n" if toml_top.strip() else ""
        ) + "[limits]\nconnections = 0\nconnections_per_ip = 0\n"
        self.proc = None
        self.port = 0
        self.new_dir = None

    def start(self) -> None:
        from pigeon.testing.live import PigeonProcess  # noqa: PLC0415 (pigeon may be mid-build)

        self.proc = PigeonProcess(self.workdir, self.toml)
        try:
            self.proc.start(timeout=30)
        except Exception as exc:
            self.proc.stop()
            raise SkipTarget(f"pigeon did not start: {str(exc)[-800:]}") from None
        self.port = self.proc.port
        self.new_dir = self.proc.data_dir / "mailboxes" / "localhost" / "bench" / "new"

    def root_pid(self) -> int | None:
        return self.proc.proc.pid if self.proc and self.proc.proc else None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


# --------------------------------------------------------------------------- inbound throughput


def scenarios(full: bool) -> list[dict]:
    k = 5 if full else 1
    return [
        {"key": "in-1", "label": "inbound 1 KB, 1 session", "s": 1, "size": 1024, "m": 200 * k},
        {"key": "in-10", "label": "inbound 1 KB, 10 sessions", "s": 10, "size": 1024, "m": 500 * k},
        {
            "key": "in-50",
            "label": "inbound 1 KB, 50 sessions",
            "s": 50,
            "size": 1024,
            "m": 1000 * k,
        },
        {
            "key": "big-10",
            "label": "inbound 100 KB, 10 sessions",
            "s": 10,
            "size": 102400,
            "m": 200 * k,
        },
        {
            "key": "reuse-10",
            "label": "inbound 1 KB, 10 sessions, ~10 msg/conn",
            "s": 10,
            "size": 1024,
            "m": 500 * k,
            "per_conn": 10,
        },
    ]


def run_source(
    source: str, port: int, sc: dict, m: int, timeout: float
) -> tuple[float, str | None]:
    """smtp-source for scenario `sc` with m messages; returns (seconds, error)."""
    per_conn = sc.get("per_conn", 1)
    if per_conn > 1:
        chunk = sc["s"] * per_conn
        calls = [(min(chunk, m - i), True) for i in range(0, m, chunk)]
    else:
        calls = [(m, False)]
    t0 = time.perf_counter()
    for n, reuse in calls:
        s = min(sc["s"], n)
        cmd = (
            [
                source,
                "-4",
                "-s",
                str(s),
                "-m",
                str(n),
                "-l",
                str(sc["size"]),
                "-f",
                SENDER,
                "-t",
                RECIPIENT,
                "-M",
                HELO,
            ]
            + (["-d"] if reuse else [])
            + [f"{LOOPBACK}:{port}"]
        )
        left = timeout - (time.perf_counter() - t0)
        try:
            p = subprocess.run(
                cmd, capture_output=True, text=True, timeout=max(left, 1), stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            return time.perf_counter() - t0, f"smtp-source timed out after {timeout}s"
        if p.returncode != 0:
            return (
                time.perf_counter() - t0,
                f"smtp-source exited {p.returncode}: {(p.stdout + p.stderr).strip()[-300:]}",
            )
    return time.perf_counter() - t0, None


def one_run(source: str, t, sc: dict, m: int, args) -> dict:
    cpu0 = tree_cpu(t.root_pid())
    la = loadavg()[0] if loadavg() else None
    secs, err = run_source(source, t.port, sc, m, args.run_timeout)
    run = {"accept_s": secs, "accept": m / secs, "load1": la}
    if t.new_dir is not None:
        t1 = time.perf_counter()
        ok = wait_until(lambda: count_dir(t.new_dir) >= m, args.drain_timeout, 0.01)
        total = secs + (time.perf_counter() - t1)
        if isinstance(t, PostfixMaildir):  # nothing left behind in Postfix's queue either
            wait_until(lambda: t.queued() == 0, 10, 0.05)
        time.sleep(0.05)
        got = count_dir(t.new_dir)
        run.update(delivered_s=total, delivered=m / total if ok else None, landed=got)
        if got != m and not err:
            err = f"{got} messages in Maildir, {m} sent"
        clear_dir(t.new_dir)
    cpu1 = tree_cpu(t.root_pid())
    if cpu0 is not None and cpu1 is not None:
        run["cpu_s_per_1k"] = (cpu1 - cpu0) * 1000 / m
    if err:
        run["error"] = err
    return run


def inbound(source: str, targets: dict, args, results: dict) -> None:
    scs = scenarios(args.full)
    names = list(targets)
    warm = {"s": 10, "size": 1024}
    for name, t in targets.items():  # untimed warm-up
        r = one_run(source, t, warm, 100, args)
        if "error" in r:
            print(f"{name} warm-up: {r['error']}", file=sys.stderr)
    for rnd in range(args.rounds):
        for i, sc in enumerate(scs):
            k = (rnd + i) % len(names)
            for name in names[k:] + names[:k]:
                r = one_run(source, targets[name], sc, sc["m"], args)
                r["round"] = rnd + 1
                results.setdefault(sc["key"], {}).setdefault(name, []).append(r)
                dl = f"delivered {fmt(r.get('delivered')):>6s} msg/s" if "delivered" in r else ""
                cpu = f"cpu {r['cpu_s_per_1k']:.2f} s/1k" if "cpu_s_per_1k" in r else ""
                print(
                    f"round {rnd + 1} {sc['key']:8s} {name:7s} accept {r['accept']:6.0f} msg/s "
                    f"{dl} {cpu}" + (f"  ERROR {r['error']}" if "error" in r else ""),
                    flush=True,
                )


# --------------------------------------------------------------------------- idle connections


async def _read_reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if len(line) < 4 or line[3:4] != b"-":
            return line


def _probe_ehlo(port: int) -> tuple[float, float]:
    """(connect-to-EHLO-reply, EHLO round trip) in ms for one normal client from 127.0.0.1."""
    t0 = time.perf_counter()
    with socket.create_connection((LOOPBACK, port), timeout=30) as s:
        f = s.makefile("rb")

        def reply() -> bytes:
            while True:
                line = f.readline()
                if not line or len(line) < 4 or line[3:4] != b"-":
                    return line

        reply()
        t1 = time.perf_counter()
        s.sendall(b"EHLO probe.bench.test\r\n")
        line = reply()
        t2 = time.perf_counter()
        s.sendall(b"QUIT\r\n")
        if not line.startswith(b"250"):
            raise ConnectionError(f"EHLO answered {line!r}")
    return (t2 - t0) * 1000, (t2 - t1) * 1000


async def _hold_sessions(port: int, n: int, measure, timeout: float) -> dict:
    writers: list[asyncio.StreamWriter] = []
    fails: list[str] = []
    sem = asyncio.Semaphore(200)

    async def open_one(i: int) -> None:
        async with sem:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        LOOPBACK, port, local_addr=(f"127.0.0.{2 + i % 250}", 0)
                    ),
                    60,
                )
                writers.append(writer)
                line = await asyncio.wait_for(_read_reply(reader), 60)
                if not line.startswith(b"220"):
                    raise ConnectionError(f"banner {line[:60]!r}")
                writer.write(b"EHLO idle%d.bench.test\r\n" % i)
                line = await asyncio.wait_for(_read_reply(reader), 60)
                if not line.startswith(b"250"):
                    raise ConnectionError(f"EHLO {line[:60]!r}")
            except Exception as exc:  # noqa: BLE001 (counted and reported)
                fails.append(repr(exc)[:120])

    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(open_one(i) for i in range(n))), timeout)
    except TimeoutError:
        fails.append(f"opening timed out after {timeout}s")
    out = {
        "open_s": time.perf_counter() - t0,
        "opened": n - len(fails),
        "failures": fails[:5],
        "failed": len(fails),
    }
    probes = []
    for _ in range(20):
        try:
            probes.append(await asyncio.to_thread(_probe_ehlo, port))
        except Exception as exc:  # noqa: BLE001
            out.setdefault("probe_errors", []).append(repr(exc)[:120])
        await asyncio.sleep(0.05)
    if probes:
        tot = sorted(p[0] for p in probes)
        out["ehlo_ms_p50"] = statistics.median(tot)
        out["ehlo_ms_max"] = tot[-1]
        out["ehlo_rtt_ms_p50"] = statistics.median(p[1] for p in probes)
    out.update(measure())
    for w in writers:
        w.transport.abort()
    await asyncio.sleep(0.5)
    return out


def connections(workdir: Path, wanted: list[str], args) -> dict:
    res: dict = {}
    n_pf = min(args.idle, args.postfix_idle_max)
    todo = []
    if "pigeon" in wanted:
        todo.append((Pigeon(workdir, "conn", args.pigeon_toml), args.idle))
    if "postfix" in wanted:
        todo.append((PostfixMaildir(workdir, "conn", process_limit=n_pf + 100), n_pf))
    for t, n in todo:
        try:
            t.start()
        except Exception as exc:  # noqa: BLE001
            t.stop()
            res[t.name] = {"error": str(exc)[-300:]}
            print(f"SKIP connections {t.name}: {exc}", file=sys.stderr)
            continue
        try:
            root = t.root_pid()
            before = {p: mem_kib(p) for p in tree_pids(root)}

            def measure(t=t, root=root, before=before) -> dict:
                pids = tree_pids(root)
                mem = {p: mem_kib(p) for p in pids}
                if t.name == "pigeon":
                    return {
                        "rss_mib": sum(m.get("VmHWM", 0) for m in mem.values()) / 1024,
                        "pss_mib": sum(m.get("Pss", 0) for m in mem.values()) / 1024,
                        "rss_before_mib": sum(m.get("VmRSS", 0) for m in before.values()) / 1024,
                        "processes": len(pids),
                    }
                smtpd = [p for p in pids if comm(p) == "smtpd"]
                return {
                    "rss_mib": sum(mem[p].get("VmRSS", 0) for p in smtpd) / 1024,
                    "pss_mib": sum(m.get("Pss", 0) for m in mem.values()) / 1024,
                    "rss_before_mib": sum(
                        m.get("VmRSS", 0) for p, m in before.items() if comm(p) == "smtpd"
                    )
                    / 1024,
                    "processes": len(pids),
                    "smtpd_processes": len(smtpd),
                }

            r = asyncio.run(_hold_sessions(t.port, n, measure, args.conn_timeout))
            r["sessions"] = n
            res[t.name] = r
            print(
                f"connections {t.name:7s} {r['opened']}/{n} open in {r['open_s']:.1f} s, "
                f"RSS {r['rss_mib']:.0f} MiB, PSS {r['pss_mib']:.0f} MiB, "
                f"EHLO p50 {fmt(r.get('ehlo_ms_p50'), '.1f')} ms max {fmt(r.get('ehlo_ms_max'), '.1f')} ms"
                + (f"  failures {r['failed']}: {r['failures'][:2]}" if r["failed"] else ""),
                flush=True,
            )
        finally:
            t.stop()
    return res


# --------------------------------------------------------------------------- latency


def _smtp(f, s: socket.socket, line: bytes | None) -> bytes:
    if line is not None:
        s.sendall(line)
    while True:
        r = f.readline()
        if not r or len(r) < 4 or r[3:4] != b"-":
            return r


def latency(t, rate: float, seconds: float) -> dict:
    """One client, one session, a message every 1/rate s; 250 time -> ctime of the file in new/."""
    n = max(10, int(rate * seconds))
    interval = 1.0 / rate
    token = f"{os.getpid()}-{time.time_ns()}"
    accepted: dict[int, float] = {}
    arrived: dict[int, float] = {}  # ctime of the file in new/ (coarse kernel clock)
    polled: dict[int, float] = {}  # when the 2 ms poller first saw it (upper bound)
    done = threading.Event()
    clear_dir(t.new_dir)
    errors: list[str] = []

    def poll() -> None:
        seen: set[str] = set()
        while not done.is_set() or len(arrived) < len(accepted):
            try:
                names = os.listdir(t.new_dir)
            except FileNotFoundError:
                names = []
            for nm in names:
                if nm in seen:
                    continue
                seen.add(nm)
                p = t.new_dir / nm
                try:
                    ct = p.stat().st_ctime_ns / 1e9
                    head = p.read_bytes()[:4096]
                except OSError:
                    continue
                m = seq_re.search(head)  # Postfix stores LF line ends, pigeon CRLF
                if m:
                    arrived[int(m.group(1))] = ct
                    polled[int(m.group(1))] = time.time()
            if done.is_set() and time.monotonic() > done_deadline[0]:
                return
            time.sleep(0.002)

    seq_re = re.compile(rb"X-Bench-Seq: " + re.escape(token.encode()) + rb"-(\d+)")
    done_deadline = [float("inf")]
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()

    def connect():
        s = socket.create_connection((LOOPBACK, t.port), timeout=30)
        f = s.makefile("rb")
        _smtp(f, s, None)
        _smtp(f, s, b"EHLO latency.bench.test\r\n")
        return s, f

    s, f = connect()
    body = (b"x" * 76 + b"\r\n") * 13  # ~1 KB in lines of 78 octets
    t0 = time.monotonic()
    late = 0
    try:
        for i in range(n):
            wait = t0 + i * interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                late += 1
            try:
                ok = (
                    _smtp(f, s, f"MAIL FROM:<{SENDER}>\r\n".encode()).startswith(b"250")
                    and _smtp(f, s, f"RCPT TO:<{RECIPIENT}>\r\n".encode()).startswith(b"250")
                    and _smtp(f, s, b"DATA\r\n").startswith(b"354")
                )
                if ok:
                    msg = (
                        (
                            f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: latency {i}\r\n"
                            f"X-Bench-Seq: {token}-{i}\r\n\r\n"
                        ).encode()
                        + body
                        + b".\r\n"
                    )
                    r = _smtp(f, s, msg)
                    if r.startswith(b"250"):
                        accepted[i] = time.time()
                        continue
                    errors.append(f"{i}: {r[:80]!r}")
                else:
                    errors.append(f"{i}: refused before DATA")
            except OSError as exc:
                errors.append(f"{i}: {exc!r}")
            s.close()  # reconnect after any failure
            s, f = connect()
        sent_s = time.monotonic() - t0
        try:
            _smtp(f, s, b"QUIT\r\n")
        finally:
            s.close()
    finally:
        done_deadline[0] = time.monotonic() + 30
        done.set()
        poller.join(35)
    lat = sorted(max(0.0, arrived[i] - accepted[i]) * 1000 for i in accepted if i in arrived)
    out = {
        "rate_asked": rate,
        "rate_sent": len(accepted) / sent_s,
        "sent": n,
        "accepted": len(accepted),
        "arrived": len(lat),
        "late_sends": late,
        "errors": errors[:5],
    }
    if lat:
        out["p50_ms"] = statistics.median(lat)
        out["p99_ms"] = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
        out["max_ms"] = lat[-1]
        pl = sorted((polled[i] - accepted[i]) * 1000 for i in accepted if i in polled)
        out["poll_p50_ms"] = statistics.median(pl)
        out["poll_p99_ms"] = pl[min(len(pl) - 1, int(round(0.99 * (len(pl) - 1))))]
    clear_dir(t.new_dir)
    return out


# --------------------------------------------------------------------------- relay and queue scale


def run_script(argv: list[str], jsonpath: Path, timeout: float) -> dict | list | None:
    print(f"# running {' '.join(argv)}", flush=True)
    try:
        p = subprocess.run(
            [sys.executable, *argv, "--json", str(jsonpath)],
            timeout=timeout,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            cwd=BENCH.parent,
        )
    except subprocess.TimeoutExpired:
        print(f"  timed out after {timeout}s", file=sys.stderr)
        return None
    tail = (p.stdout + p.stderr).strip().splitlines()
    print("  " + "\n  ".join(tail[-12:]), flush=True)
    try:
        return json.loads(jsonpath.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- table


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def paired(runs_a: list[dict], runs_b: list[dict], key: str):
    a = {r["round"]: r.get(key) for r in runs_a if "error" not in r}
    b = {r["round"]: r.get(key) for r in runs_b if "error" not in r}
    return med([a[k] / b[k] for k in a if k in b and a[k] and b[k]])


def cluster_rows(cluster) -> list[dict]:
    """Rows of bench/cluster_rate.py's --json (its `rows`), in the suite's table."""
    rows: list[dict] = []
    if not isinstance(cluster, dict):
        return rows
    m = cluster.get("args", {}).get("messages")
    for r in cluster.get("rows", []):
        who = "embedded store" if r["config"] == "embedded" else f"PostgreSQL, {r['nodes']} node(s)"
        if r["config"].endswith("-base"):
            who = f"--compare-src tree, {who}"
        for key in ("accept", "delivered"):
            ratio = r.get(f"{key}_ratio")
            rows.append(
                {
                    "scenario": f"cluster relay 5 KB, 20 sessions, {who} (cluster_rate.py, {m} msgs)",
                    "metric": f"{key} msg/s"
                    + (
                        f" ({ratio:.2f}x of embedded, median of same-round ratios)" if ratio else ""
                    ),
                    "pigeon": r.get(key),
                    "cpu_pigeon": r.get("pigeon_cpu_ms") if key == "delivered" else None,
                    "runs": r.get("runs") if key == "delivered" else None,
                    "ratio": ratio,  # bench/speed_targets.py: issue 17
                }
            )
    return rows


def build_rows(inb: dict, conn: dict, lat: dict, relay, queue, args, mailauth=None) -> list[dict]:
    rows = []
    for sc in scenarios(args.full):
        per = inb.get(sc["key"], {})
        if not per:
            continue
        good = {n: [r for r in runs if "error" not in r] for n, runs in per.items()}
        nruns = {n: f"{len(good[n])}/{len(per[n])}" for n in per}
        for metric in ("accept", "delivered"):
            row = {"scenario": f"{sc['label']} ({sc['m']} msgs)", "metric": f"{metric} msg/s"}
            for n in ("sink", "postfix", "pigeon"):
                if n in good and not (metric == "delivered" and n == "sink"):
                    row[n] = med([r.get(metric) for r in good[n]])
            if "pigeon" in per and "postfix" in per:
                row["pg/pf"] = paired(per["pigeon"], per["postfix"], metric)
            if metric == "accept" and "pigeon" in per and "sink" in per:
                row["pg/sink"] = paired(per["pigeon"], per["sink"], "accept")
            if metric == "delivered":
                for n in ("pigeon", "postfix"):
                    if n in good:
                        row[f"cpu_{n}"] = med([r.get("cpu_s_per_1k") for r in good[n]])
                row["runs"] = " ".join(f"{n} {v}" for n, v in nruns.items() if n != "sink")
            rows.append(row)
    if conn:
        pg, pf = conn.get("pigeon", {}), conn.get("postfix", {})
        lbl = f"{pg.get('sessions', args.idle)} idle sessions after EHLO" + (
            f" (Postfix {pf.get('sessions')})"
            if pf.get("sessions") not in (None, pg.get("sessions"))
            else ""
        )
        for metric, key, spec in (
            ("peak RSS MiB (pigeon VmHWM, Postfix smtpd RSS sum)", "rss_mib", ".0f"),
            ("PSS MiB, all processes", "pss_mib", ".0f"),
            ("normal client connect+EHLO ms, p50", "ehlo_ms_p50", ".1f"),
            ("normal client connect+EHLO ms, max of 20", "ehlo_ms_max", ".1f"),
        ):
            row = {"scenario": lbl, "metric": metric, "spec": spec}
            for n, d in (("pigeon", pg), ("postfix", pf)):
                if d.get(key) is not None:
                    row[n] = d[key]
            if row.get("pigeon") and row.get("postfix"):
                row["pg/pf"] = row["pigeon"] / row["postfix"]
            rows.append(row)
        row = {"scenario": lbl, "metric": "sessions opened / failed", "spec": "s"}
        for n, d in (("pigeon", pg), ("postfix", pf)):
            if "opened" in d:
                row[n] = f"{d['opened']}/{d['failed']}"
            elif "error" in d:
                row[n] = "error"
        rows.append(row)
    if lat:
        some = next(iter(lat.values()))
        lbl = f"latency, 1 client at {some.get('rate_asked', 0):.0f} msg/s"
        for metric, key in (
            ("accept→Maildir ms, p50", "p50_ms"),
            ("accept→Maildir ms, p99", "p99_ms"),
        ):
            row = {"scenario": lbl, "metric": metric, "spec": ".1f"}
            for n, d in lat.items():
                if d.get(key) is not None:
                    row[n] = d[key]
            if row.get("pigeon") is not None and row.get("postfix"):
                row["pg/pf"] = row["pigeon"] / row["postfix"]
            rows.append(row)
    if isinstance(relay, dict):
        s, ra = relay.get("summary", {}), relay.get("ratios", {})
        m = relay.get("args", {}).get("messages")
        for key in ("accept_rate", "relay_rate"):
            row = {
                "scenario": f"relay 5 KB, 20 sessions (relay_rate.py, {m} msgs)",
                "metric": f"{key.split('_')[0]} msg/s",
            }
            for n in ("sink", "postfix", "pigeon"):
                if n in s:
                    row[n] = s[n].get(f"{key}_median")
            for pair, col in (("pigeon/postfix", "pg/pf"), ("pigeon/sink", "pg/sink")):
                r = ra.get(f"{pair} {key}")
                if r:
                    row[col] = r["of_medians"]
            if key == "relay_rate":
                row["cpu_pigeon"] = s.get("pigeon", {}).get("cpu_ms_per_message_median")
            rows.append(row)
    if isinstance(queue, list) and queue:
        for metric, key in (
            ("commit ms (1 new message)", "commit_ms"),
            ("pick ms (new message handed to delivery)", "pick_ms"),
        ):
            for q in queue:
                if q.get("rate"):
                    continue
                rows.append(
                    {
                        "scenario": f"queue scale, {q['deferred']:,} deferred (queue_scale.py)",
                        "metric": metric,
                        "pigeon": q[key],
                        "spec": ".1f",
                    }
                )
        rates = [q for q in queue if q.get("rate")]
        for q in rates:
            rows.append(
                {
                    "scenario": f"queue rate, {q['entries']:,} deferred (queue_rate.py)",
                    "metric": "start-up: ready to accept, s",
                    "pigeon": q["start_s"],
                    "spec": ".2f",
                }
            )
        for metric, key in (
            ("accept msg/s, 50 sessions", "accept"),
            ("delivered msg/s, 50 sessions", "delivered"),
        ):
            for q in rates:
                ratio = q.get(f"{key}_ratio")
                rows.append(
                    {
                        "scenario": f"queue rate, {q['entries']:,} deferred (queue_rate.py)",
                        "metric": metric
                        + (f" ({ratio}x of empty, median of same-round ratios)" if ratio else ""),
                        "pigeon": q[key],
                        "spec": ".0f",
                    }
                )
    if isinstance(mailauth, dict):
        scenario = (
            f"inbound, SPF+DKIM+DMARC enforced vs off, {mailauth['sessions']} sessions "
            "(mail_auth_cost.py)"
        )
        for metric, key in (
            ("accept msg/s, checks off", "off_rate"),
            ("accept msg/s, checks on", "on_rate"),
        ):
            rows.append({"scenario": scenario, "metric": metric, "pigeon": mailauth[key]})
        rows.append(
            {
                "scenario": scenario,
                "metric": "on/off (median of round pairs, servers swapped)",
                "pigeon": mailauth["ratio"],
                "spec": ".2f",
            }
        )
    return rows


COLS = (
    ("scenario", "scenario"),
    ("metric", "metric"),
    ("sink", "sink"),
    ("postfix", "postfix"),
    ("pigeon", "pigeon"),
    ("pg/pf", "pigeon/postfix"),
    ("pg/sink", "pigeon/sink"),
    ("cpu_pigeon", "pigeon CPU s/1k msgs"),
    ("cpu_postfix", "Postfix CPU s/1k msgs"),
    ("runs", "good runs"),
)


def cell(row: dict, key: str) -> str:
    v = row.get(key)
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if key in ("pg/pf", "pg/sink", "cpu_pigeon", "cpu_postfix"):
        return f"{v:.2f}"
    spec = row.get("spec", ".0f")
    return format(v, spec if spec != "s" else "")


def print_table(rows: list[dict]) -> None:
    print("| " + " | ".join(h for _, h in COLS) + " |")
    print(
        "|"
        + "|".join("---" if k in ("scenario", "metric", "runs") else "---:" for k, _ in COLS)
        + "|"
    )
    for row in rows:
        print("| " + " | ".join(cell(row, k) for k, _ in COLS) + " |")


# --------------------------------------------------------------------------- main


def parse(argv):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--full",
        action="store_true",
        help="5x the messages, 5 rounds, 10,000 idle sessions, 1M-entry queue scale",
    )
    ap.add_argument(
        "--rounds", type=int, default=None, help="rounds per scenario (default 3; --full 5)"
    )
    ap.add_argument(
        "--only", default="sink,postfix,pigeon", help="targets (default sink,postfix,pigeon)"
    )
    ap.add_argument(
        "--skip",
        default="",
        help="comma-separated parts to leave out: "
        "inbound,connections,latency,relay,queue,mailauth,cluster,imap",
    )
    ap.add_argument(
        "--idle", type=int, default=None, help="idle sessions (default 2000; --full 10000)"
    )
    ap.add_argument(
        "--postfix-idle-max",
        type=int,
        default=None,
        help="cap on Postfix's idle sessions (one smtpd process of ~1 MiB PSS each; default 2000)",
    )
    ap.add_argument(
        "--latency-rate",
        type=float,
        default=None,
        help="msg/s for the latency scenario (default: half the lower delivered rate at 10 "
        "sessions, 10-200; 50 if inbound was skipped)",
    )
    ap.add_argument("--latency-seconds", type=float, default=None, help="default 5 (--full 20)")
    ap.add_argument(
        "--pigeon-toml", default="", help="extra top-level pigeon settings, e.g. 'workers = 2'"
    )
    ap.add_argument("--run-timeout", type=float, default=300)
    ap.add_argument("--drain-timeout", type=float, default=120)
    ap.add_argument("--conn-timeout", type=float, default=300)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    args.rounds = args.rounds or (5 if args.full else 3)
    args.idle = args.idle or (10000 if args.full else 2000)
    args.postfix_idle_max = args.postfix_idle_max or 2000
    args.latency_seconds = args.latency_seconds or (20 if args.full else 5)
    return args


def raise_nofile(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, need)
    if os.geteuid() == 0 and want < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return need
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    wanted = [t.strip() for t in args.only.split(",") if t.strip()]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    source = common.smtp_source()
    if not source:
        return 2
    nofile = raise_nofile(args.idle + 1000)  # inherited by pigeon and Postfix
    if nofile < args.idle + 200:
        args.idle = max(100, nofile - 500)
        print(
            f"note: RLIMIT_NOFILE {nofile}: idle sessions lowered to {args.idle}", file=sys.stderr
        )
    args.postfix_idle_max = min(args.postfix_idle_max, args.idle)
    info = common.start_info()
    print(
        f"# suite: {'full' if args.full else 'quick'}, {args.rounds} rounds, targets {wanted}, "
        f"RLIMIT_NOFILE {nofile}; pigeon-toml {args.pigeon_toml!r}",
        flush=True,
    )
    # relay_rate.py (a subprocess) reads it through common.PigeonTarget.
    os.environ["PIGEON_BENCH_TOML"] = args.pigeon_toml
    t_start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="pigeon-suite-"))
    workdir.chmod(0o755)
    inb: dict = {}
    conn: dict = {}
    lat: dict = {}
    relay = queue = mailauth = imap = cluster = None
    skipped: dict[str, str] = {}
    interrupted = False
    targets: dict = {}
    try:
        if not ({"inbound", "latency"} <= skip):
            for cls in (Sink, PostfixMaildir, Pigeon):
                if cls.name not in wanted:
                    continue
                t = cls(workdir) if cls is not Pigeon else cls(workdir, "inbound", args.pigeon_toml)
                try:
                    t.start()
                except Exception as exc:  # noqa: BLE001
                    t.stop()
                    skipped[cls.name] = str(exc)[-300:]
                    print(f"SKIP {cls.name}: {exc}", file=sys.stderr)
                    continue
                targets[cls.name] = t
                print(f"# {cls.name} on {LOOPBACK}:{t.port}", flush=True)
        if "inbound" not in skip and targets:
            inbound(source, targets, args, inb)
        if "latency" not in skip:
            rate = args.latency_rate
            if rate is None:
                d = [
                    med(
                        [
                            r.get("delivered")
                            for r in inb.get("in-10", {}).get(n, [])
                            if "error" not in r
                        ]
                    )
                    for n in ("pigeon", "postfix")
                    if n in targets
                ]
                d = [x for x in d if x]
                rate = min(200.0, max(10.0, min(d) / 2)) if d else 50.0
            for n in ("postfix", "pigeon"):
                if n in targets:
                    r = latency(targets[n], rate, args.latency_seconds)
                    lat[n] = r
                    print(
                        f"latency {n:7s} {r['accepted']}/{r['sent']} accepted at "
                        f"{r['rate_sent']:.0f} msg/s, {r['arrived']} arrived: p50 "
                        f"{fmt(r.get('p50_ms'), '.1f')} ms p99 {fmt(r.get('p99_ms'), '.1f')} ms "
                        f"max {fmt(r.get('max_ms'), '.1f')} ms (first seen by the poller: p50 "
                        f"{fmt(r.get('poll_p50_ms'), '.1f')} p99 {fmt(r.get('poll_p99_ms'), '.1f')} ms)"
                        + (f"  errors {r['errors']}" if r["errors"] else ""),
                        flush=True,
                    )
        for t in targets.values():
            t.stop()
        targets = {}
        if "connections" not in skip:
            conn = connections(workdir, wanted, args)
        if "relay" not in skip:
            m = 1000 if args.full else 300
            relay = run_script(
                [
                    str(BENCH / "relay_rate.py"),
                    "--messages",
                    str(m),
                    "--rounds",
                    str(args.rounds),
                    "--warmup",
                    "100",
                    "--only",
                    ",".join(wanted),
                ],
                workdir / "relay.json",
                1800,
            )
        if "queue" not in skip and "pigeon" in wanted:
            queue = run_script(
                [
                    str(BENCH / "queue_scale.py"),
                    "--entries",
                    "0,1000000" if args.full else "0,100000",
                ],
                workdir / "queue.json",
                1800,
            )
            # Issue 16: 1,000,000 deferred in every mode; the rate ratio is a
            # median of same-round ratios, with more rounds than the others.
            rate = run_script(
                [
                    str(BENCH / "queue_rate.py"),
                    "--entries",
                    "0,1000000",
                    "--rounds",
                    str(max(5, args.rounds)),
                ],
                workdir / "queue_rate.json",
                2400,
            )
            if isinstance(queue, list) and isinstance(rate, list):
                queue = queue + [dict(r, rate=True) for r in rate]
        if "mailauth" not in skip and "pigeon" in wanted:
            got = run_script(
                [
                    str(BENCH / "mail_auth_cost.py"),
                    "--messages",
                    "3000" if args.full else "1500",
                    "--rounds",
                    # a ratio of two noisy rates: more rounds than the others
                    # (12: six pairs; one run of 8 rounds moved by +-0.05
                    # between runs of the same code, docs/benchmarks.md)
                    str(max(12, args.rounds)),
                ],
                workdir / "mail_auth.json",
                1800,
            )
            mailauth = got if isinstance(got, dict) and got.get("checked") else None
        if "cluster" not in skip and "pigeon" in wanted:
            from pigeon.testing.postgres import find_bindir  # noqa: PLC0415

            if find_bindir() is None:
                print("# cluster not measured: PostgreSQL server binaries not installed")
            else:
                cluster = run_script(
                    [
                        str(BENCH / "cluster_rate.py"),
                        "--messages",
                        "2000" if args.full else "1000",
                        "--rounds",
                        str(max(5, args.rounds)),  # a ratio: more rounds, as mailauth
                    ]
                    + (["--pigeon-toml", args.pigeon_toml] if args.pigeon_toml else []),
                    workdir / "cluster.json",
                    2400,
                )
        if "imap" not in skip and "pigeon" in wanted:
            got = run_script(
                [
                    str(BENCH / "imap_vs_dovecot.py"),
                    "--rounds",
                    str(max(5, args.rounds)),
                    "--idle",
                    str(min(args.idle, 2000)),
                ],
                workdir / "imap.json",
                3600,
            )
            imap = got if isinstance(got, dict) and got.get("table") else None
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted; stopping", file=sys.stderr)
    finally:
        for t in targets.values():
            t.stop()
        if args.keep:
            print(f"# kept {workdir}")
        else:
            import shutil  # noqa: PLC0415

            shutil.rmtree(workdir, ignore_errors=True)

    info["loadavg_end"] = loadavg()
    rows = build_rows(inb, conn, lat, relay, queue, args, mailauth) + cluster_rows(cluster)
    print()
    print(
        f"# medians of {args.rounds} rounds; ratios = median of same-round ratios; "
        f"{time.monotonic() - t_start:.0f} s in all; load average start {info['loadavg_start']} "
        f"end {info['loadavg_end']}"
    )
    for n, why in skipped.items():
        print(f"# {n} not measured: {why.strip().splitlines()[-1][:150] if why.strip() else '?'}")
    print_table(rows)
    print()
    print("\n".join(speed_targets.check(rows)))
    if imap is not None:
        print("\n# issue 14: IMAP against Dovecot (bench/imap_vs_dovecot.py)")
        print("\n".join(imap["table"]))
    errors = [
        (sc, n, r["round"], r["error"])
        for sc, per in inb.items()
        for n, runs in per.items()
        for r in runs
        if "error" in r
    ]
    for e in errors:
        print(f"ERROR {e[0]} {e[1]} round {e[2]}: {e[3]}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "machine": info,
                    "skipped": skipped,
                    "inbound": inb,
                    "connections": conn,
                    "latency": lat,
                    "relay": relay,
                    "queue": queue,
                    "mailauth": mailauth,
                    "cluster": cluster,
                    "imap": imap,
                    "rows": rows,
                    "interrupted": interrupted,
                },
                indent=2,
                default=str,
            )
            + "\n"
        )
        print(f"# raw numbers written to {args.json}")
    return 130 if interrupted else (1 if errors else 0)


if __name__ == "__main__":
    common.run_main(main)

"""Crash harness: SIGKILL pigeon again and again under load; nothing acknowledged may be lost.

    .venv/bin/python bench/crash_harness.py --cycles 20 --clients 8 --messages 3000
    make crash ARGS="--cycles 50 --messages 5000"

What it does (issue 6, part 1):
  * starts a real pigeon (`pigeon.testing.live.PigeonProcess`, fsync on) with
    the local domain `localhost` and a transport `remote.test` ->
    `smtp:[127.0.0.1]:PORT`, where a `pigeon.testing.fakepeer.FakePeer` in
    this process plays the remote MTA (it records a message only after the
    final "." and answers 250 after recording it);
  * `--clients` threads send numbered messages over smtplib: to one local
    recipient, one remote recipient, or both. Each attempt has a unique
    token in an `X-Harness-Token:` header and ends with an end marker line
    `END-OF-MESSAGE <token>`. A client writes a line to the client-side log
    (`clients.jsonl`) only after the server's 250;
  * each cycle the harness kills pigeon with SIGKILL at a random moment,
    either under load (clients sending: kills land during DATA, during the
    group-commit fsync, during local and remote deliveries) or right after
    the load stops (the queue manager is busy delivering the backlog: kills
    land inside deliveries and state changes). At each kill it notes what
    was in flight: spool files in `queue/tmp/` (DATA in progress; only
    messages over the store's 128 KiB spill threshold have one, smaller
    ones are held in memory until the commit writes msg/ directly), Maildir
    `tmp/` files, open transactions at the fake peer, and, read from the
    queue database once the process is dead, the entries still 'active'
    (deliveries in flight);
  * pigeon is restarted and the next cycle begins. After the last cycle the
    queue must drain; then every delivered copy (Maildir files and fake-peer
    transactions) is matched against the client-side log.

Pass (exit status 0, `Summary.ok`) only when:
  * lost == 0: every (token, recipient) that got a 250 was delivered;
  * truncated == 0: every delivered copy ends with its end marker;
  * every duplicated token was in flight (an 'active' queue entry) at one of
    the kills: duplicates are allowed only for deliveries interrupted
    between the hand-over and the status update, and are counted;
  * nothing was quarantined as corrupt, and the queue drained.
Messages that were delivered although the client never saw the 250 (the
kill came between the commit and the reply) are allowed and counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import smtplib
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pigeon.queue.store import QueueStore
from pigeon.testing.fakepeer import FakePeer
from pigeon.testing.live import PigeonProcess
from pigeon.vocab import QueueState, StoreError

TOKEN = re.compile(rb"X-Harness-Token: (\S+)")
LOCAL_DOMAIN = "localhost"
REMOTE_DOMAIN = "remote.test"
MAILBOXES = 8


@dataclass
class Summary:
    cycles: int = 0
    clients: int = 0
    sent: int = 0  # attempts started (DATA sent or not)
    acked: int = 0  # attempts that got a 250
    acked_copies: int = 0  # (token, recipient) pairs that got a 250
    delivered_copies: int = 0  # distinct (token, recipient) pairs delivered
    delivered_local: int = 0  # Maildir files (duplicates included)
    delivered_remote: int = 0  # fake-peer deliveries (per recipient, duplicates included)
    duplicates: int = 0  # extra copies of a (token, recipient) pair
    duplicates_not_in_flight: int = 0
    unacked_delivered: int = 0  # delivered although the client saw no 250
    lost: int = 0
    truncated: int = 0
    corrupt: int = 0
    queue_left: int = 0
    kills_in_data: int = 0  # kills with a spilled spool file open (DATA/BDAT of a large message)
    kills_in_local_delivery: int = 0
    kills_in_remote_delivery: int = 0
    kills_with_active_entries: int = 0
    kills_after_load: int = 0  # kills while only the queue manager was busy
    seconds: float = 0.0
    lost_examples: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def text(self) -> str:
        lines = [
            f"cycles={self.cycles} clients={self.clients} seconds={self.seconds:.1f}",
            f"sent={self.sent} acked={self.acked} acked_copies={self.acked_copies}",
            f"delivered_copies={self.delivered_copies} (maildir files={self.delivered_local}, "
            f"remote={self.delivered_remote}) duplicates={self.duplicates} "
            f"unacked_delivered={self.unacked_delivered}",
            f"lost={self.lost} truncated={self.truncated} corrupt={self.corrupt} "
            f"queue_left={self.queue_left}",
            f"kills: in_data={self.kills_in_data} in_local_delivery={self.kills_in_local_delivery} "
            f"in_remote_delivery={self.kills_in_remote_delivery} "
            f"with_active_entries={self.kills_with_active_entries} "
            f"after_load={self.kills_after_load}",
            "RESULT: " + ("PASS" if self.ok else "FAIL: " + "; ".join(self.failures)),
        ]
        return "\n".join(lines)


def message(token: str, rcpts: list[str], rng: random.Random) -> bytes:
    """A test message: its token in a header, filler, the end marker last."""
    lines = rng.choice((5, 50, 500, 2000))  # ~0.2 KB .. ~90 KB
    filler = b"".join(
        b"line %d of %s: the quick brown fox\r\n" % (i, token.encode()) for i in range(lines)
    )
    head = (
        f"From: load@example.org\r\nTo: {', '.join(rcpts)}\r\nSubject: {token}\r\n"
        f"X-Harness-Token: {token}\r\n\r\n"
    ).encode()
    # A line starting with "." exercises dot-stuffing on both hops.
    return head + filler + b".dot line\r\n" + f"END-OF-MESSAGE {token}\r\n".encode()


class Client(threading.Thread):
    """Sends numbered messages until stopped; logs each one that got a 250."""

    def __init__(self, harness: Harness, index: int, seed: int) -> None:
        super().__init__(daemon=True, name=f"client-{index}")
        self.harness, self.index = harness, index
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.n = 0

    def pick_rcpts(self) -> list[str]:
        k = self.rng.randrange(MAILBOXES)
        local, remote = f"u{k}@{LOCAL_DOMAIN}", f"r{k}@{REMOTE_DOMAIN}"
        return self.rng.choice(([local], [remote], [local, remote]))

    def run(self) -> None:
        h = self.harness
        while not self.stop.is_set() and not h.quota_reached():
            try:
                with smtplib.SMTP("127.0.0.1", h.server.port, timeout=10) as s:
                    s.ehlo(f"client{self.index}.example")
                    while not self.stop.is_set() and not h.quota_reached():
                        self.n += 1
                        token = f"c{h.cycle}-{self.index}-{self.n}"
                        rcpts = self.pick_rcpts()
                        h.note_sent()
                        refused = s.sendmail(
                            "load@example.org", rcpts, message(token, rcpts, self.rng)
                        )
                        # Only after the 250 (sendmail returned): the client-side log.
                        h.note_acked(token, [r for r in rcpts if r not in refused])
            except (OSError, smtplib.SMTPException):
                time.sleep(0.02)


class PeerThread(threading.Thread):
    """Runs the FakePeer (the remote MTA) on its own event loop."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="fakepeer")
        self.open_tx: set[int] = set()
        self.lock = threading.Lock()
        self.peer = FakePeer(self._handler, name="remote.fake")
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    def _handler(self, cmd, conn):
        with self.lock:
            if cmd.verb == "MAIL":
                self.open_tx.add(conn.index)
            elif cmd.verb in ("DATA-END", "RSET", "QUIT"):
                self.open_tx.discard(conn.index)
        return None

    def run(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.peer.start())
        self.ready.set()
        self.loop.run_forever()

    def messages(self) -> list:
        return list(self.peer.messages)

    def close(self) -> None:
        if self.loop is not None:
            fut = asyncio.run_coroutine_threadsafe(self.peer.stop(), self.loop)
            try:
                fut.result(10)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)


class Harness:
    def __init__(
        self,
        workdir: Path,
        *,
        cycles: int,
        clients: int,
        messages: int,
        seed: int,
        cycle_time: float = 3.0,
        drain_timeout: float = 180.0,
        verbose: bool = True,
        workers: int = 1,
    ) -> None:
        self.workdir = Path(workdir)
        self.workers = workers
        self.cycles, self.nclients, self.messages = cycles, clients, messages
        self.per_cycle = max(1, -(-messages // cycles))
        self.rng = random.Random(seed)
        self.seed = seed
        self.cycle_time = cycle_time
        self.drain_timeout = drain_timeout
        self.verbose = verbose
        self.cycle = 0
        self.lock = threading.Lock()
        self.sent = 0
        self.acked: dict[str, list[str]] = {}
        self.in_flight_tokens: set[str] = set()
        self.maildir_tmp_seen: set[Path] = set()
        self.summary = Summary(cycles=cycles, clients=clients)
        self.peer = PeerThread()
        self.server: PigeonProcess | None = None
        self._log = None

    # -- client bookkeeping ------------------------------------------------------

    def quota_reached(self) -> bool:
        """This cycle's share of `--messages` has been sent."""
        return self.sent >= (self.cycle + 1) * self.per_cycle

    def note_sent(self) -> None:
        with self.lock:
            self.sent += 1

    def note_acked(self, token: str, rcpts: list[str]) -> None:
        with self.lock:
            self.acked[token] = rcpts
            self._log.write(json.dumps({"token": token, "rcpts": rcpts, "t": time.time()}) + "\n")
            self._log.flush()

    def say(self, text: str) -> None:
        if self.verbose:
            print(text, flush=True)

    # -- the run -------------------------------------------------------------------

    def config(self) -> str:
        return (
            f'relay_networks = ["127.0.0.0/8"]\nworkers = {self.workers}\n'
            f'[domains."{LOCAL_DOMAIN}"]\n'
            f'[transports]\n"{REMOTE_DOMAIN}" = "smtp:[127.0.0.1]:{self.peer.peer.port}"\n'
            f'[delivery]\ntls = "none"\nconnect_timeout = 2.0\n'
            f"[queue]\nrun_interval = 0.5\nmin_backoff = 0.5\nmax_backoff = 1.0\n"
            f'[admin]\nmetrics_listen = ""\n'
            f'[log]\nlevel = "warning"\n'
        )

    def run(self) -> Summary:
        start = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.workdir / "clients.jsonl", "w")
        self.peer.start()
        self.peer.ready.wait(10)
        self.server = PigeonProcess(self.workdir / "pigeon", self.config(), hostname="pigeon.test")
        try:
            self.server.start(timeout=30)
            for cycle in range(self.cycles):
                self.cycle = cycle
                self._one_cycle(self.per_cycle)
            self._drain()
            self._check()
        finally:
            if self.server is not None:
                self.server.stop()
            self.peer.close()
            self._log.close()
            self.summary.seconds = time.monotonic() - start
            self.summary.sent = self.sent
        return self.summary

    def _one_cycle(self, per_cycle: int) -> None:
        s = self.summary
        clients = [Client(self, i, self.rng.randrange(1 << 30)) for i in range(self.nclients)]
        for c in clients:
            c.start()
        # Kill when a random share of this cycle's messages is acknowledged, or
        # at a random moment, whichever comes first.
        target = int((self.cycle + 1) * per_cycle * self.rng.uniform(0.8, 1.0))
        deadline = time.monotonic() + self.rng.uniform(0.2, self.cycle_time)
        while time.monotonic() < deadline and len(self.acked) < target and not self.quota_reached():
            time.sleep(0.005)
        after_load = self.rng.random() < 0.3
        if after_load:
            # Stop the load, let the queue manager work on the backlog, then kill.
            for c in clients:
                c.stop.set()
            for c in clients:
                c.join(15)
            time.sleep(self.rng.uniform(0.0, 0.3))
            s.kills_after_load += 1
        else:
            time.sleep(self.rng.uniform(0.0, 0.05))
        data_dir = self.server.data_dir
        spools = list((data_dir / "queue" / "tmp").glob("*"))
        # Maildir tmp/ files of killed deliveries stay behind: count new ones.
        local_tmp = set((data_dir / "mailboxes").glob("*/*/tmp/*")) - self.maildir_tmp_seen
        self.maildir_tmp_seen |= local_tmp
        with self.peer.lock:
            remote_open = len(self.peer.open_tx)
        self.server.kill()
        with self.peer.lock:
            self.peer.open_tx.clear()
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(15)
        active = self._active_tokens()
        self.in_flight_tokens |= active
        s.kills_in_data += bool(spools)
        s.kills_in_local_delivery += bool(local_tmp)
        s.kills_in_remote_delivery += bool(remote_open)
        s.kills_with_active_entries += bool(active)
        self.say(
            f"cycle {self.cycle + 1}/{self.cycles}: acked={len(self.acked)} "
            f"sent={self.sent} spools={len(spools)} maildir_tmp={len(local_tmp)} "
            f"remote_open={remote_open} active={len(active)}"
            f"{' (after load)' if after_load else ''}"
        )
        self.server.start(timeout=30)

    def _queue(self) -> QueueStore:
        """The server's queue, read through the queue interfaces (queue/api.py):
        not its owner, no recovery, so it is seen as the server left it."""
        store = QueueStore(self.server.data_dir / "queue", fsync=False)
        store.open()
        return store

    def _active_tokens(self) -> set[str]:
        """Tokens of the entries 'active' in the queue of the dead process."""
        try:
            store = self._queue()
        except StoreError as exc:
            self.summary.failures.append(f"cannot read queue.db after a kill: {exc}")
            return set()
        out = set()
        try:
            ids = [e.queue_id for e in store.list(QueueState.ACTIVE)]
            for qid in ids:
                try:
                    with store.content(qid).open() as fh:
                        m = TOKEN.search(fh.read(4096))
                except StoreError:
                    continue
                if m:
                    out.add(m.group(1).decode())
        except StoreError as exc:
            self.summary.failures.append(f"cannot read queue.db after a kill: {exc}")
        finally:
            store.close()
        return out

    # -- the verdict -----------------------------------------------------------------

    def delivered(self) -> tuple[Counter, dict[tuple[str, str], bytes], list[str]]:
        """(copies per (token, rcpt), one content per pair, truncated copies)."""
        copies: Counter = Counter()
        content: dict[tuple[str, str], bytes] = {}
        truncated: list[str] = []
        s = self.summary
        s.delivered_local = s.delivered_remote = 0

        def add(token: str, rcpt: str, data: bytes, where: str) -> None:
            copies[(token, rcpt)] += 1
            content[(token, rcpt)] = data
            text = data.replace(b"\r\n", b"\n")  # Maildir files use LF
            if (
                not text.rstrip(b"\n").endswith(f"END-OF-MESSAGE {token}".encode())
                or b"\n.dot line\n" not in text
            ):
                truncated.append(f"{token} -> {rcpt} ({where})")

        for path in (self.server.data_dir / "mailboxes" / LOCAL_DOMAIN).glob("*/new/*"):
            data = path.read_bytes()
            m = TOKEN.search(data)
            rcpt = f"{path.parent.parent.name}@{LOCAL_DOMAIN}"
            if not m:
                truncated.append(f"no token in {path}")
                continue
            s.delivered_local += 1
            add(m.group(1).decode(), rcpt, data, str(path))
        for msg in self.peer.messages():
            m = TOKEN.search(msg.content)
            if not m:
                truncated.append("no token in a remote message")
                continue
            for rcpt in msg.recipients:
                s.delivered_remote += 1
                add(m.group(1).decode(), rcpt.lower(), msg.content, "remote")
        return copies, content, truncated

    def _pending(self) -> set[tuple[str, str]]:
        copies, _, _ = self.delivered()
        want = {(t, r.lower()) for t, rcpts in self.acked.items() for r in rcpts}
        return want - set(copies)

    def _queue_rows(self) -> dict[str, int]:
        try:
            store = self._queue()
            try:
                return store.counts()
            finally:
                store.close()
        except StoreError:
            return {"unknown": 1}

    def _drain(self) -> None:
        deadline = time.monotonic() + self.drain_timeout
        while time.monotonic() < deadline:
            rows = self._queue_rows()
            live = sum(n for st, n in rows.items() if st != "corrupt")
            if not live and not self._pending():
                break
            time.sleep(0.25)
        # Stop pigeon (SIGTERM) so nothing changes while we count.
        self.server.stop()

    def _check(self) -> None:
        s = self.summary
        copies, _, truncated = self.delivered()
        want = {(t, r.lower()) for t, rcpts in self.acked.items() for r in rcpts}
        s.acked = len(self.acked)
        s.acked_copies = len(want)
        s.delivered_copies = len(copies)
        lost = sorted(want - set(copies))
        s.lost = len(lost)
        s.lost_examples = [f"{t} -> {r}" for t, r in lost[:10]]
        s.truncated = len(truncated)
        dups = {k: n - 1 for k, n in copies.items() if n > 1}
        s.duplicates = sum(dups.values())
        s.duplicates_not_in_flight = sum(1 for (t, _) in dups if t not in self.in_flight_tokens)
        delivered_tokens = {t for t, _ in copies}
        s.unacked_delivered = len(delivered_tokens - set(self.acked))
        rows = self._queue_rows()
        s.corrupt = rows.get("corrupt", 0)
        s.queue_left = sum(n for st, n in rows.items() if st != "corrupt")
        if s.lost:
            s.failures.append(f"{s.lost} acknowledged copies lost, e.g. {s.lost_examples[:3]}")
        if s.truncated:
            s.failures.append(f"{s.truncated} truncated copies, e.g. {truncated[:3]}")
        if s.duplicates_not_in_flight:
            s.failures.append(
                f"{s.duplicates_not_in_flight} duplicate(s) of messages that were "
                "not being delivered at any kill"
            )
        if s.corrupt:
            s.failures.append(f"{s.corrupt} queue entries quarantined as corrupt")
        if s.queue_left:
            s.failures.append(f"queue did not drain: {rows}")
        if s.acked < self.cycles:
            s.failures.append(f"the load did not get going: only {s.acked} acknowledged")
        (self.workdir / "summary.json").write_text(
            json.dumps(dict(asdict(self.summary), ok=self.summary.ok), indent=2)
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=20, help="SIGKILL/restart cycles (default 20)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent SMTP clients (default 8)")
    ap.add_argument(
        "--messages",
        type=int,
        default=3000,
        help="messages to send over the whole run (default 3000)",
    )
    ap.add_argument(
        "--cycle-time",
        type=float,
        default=3.0,
        help="longest time between restart and kill, seconds (default 3)",
    )
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep data, logs and clients.jsonl here (default: a temp dir)",
    )
    ap.add_argument("--drain-timeout", type=float, default=300.0)
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="pigeon worker processes (config `workers`); SIGKILL hits the main one",
    )
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pigeon-crash-"))
    print(f"crash harness: seed={seed} workdir={workdir}", flush=True)
    harness = Harness(
        workdir,
        cycles=args.cycles,
        clients=args.clients,
        messages=args.messages,
        seed=seed,
        cycle_time=args.cycle_time,
        drain_timeout=args.drain_timeout,
        workers=args.workers,
    )
    summary = harness.run()
    print(summary.text(), flush=True)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())

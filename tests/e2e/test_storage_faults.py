"""A full or failing disk never strands acknowledged mail (docs/admin.md, "Full or failing disk").

Real faults, started by the tests (tests/e2e/faultfs): pigeon's data
directory is a 64 MB tmpfs in a private mount namespace (nothing stays
mounted if the test dies), filled by four concurrent clients sending 1 MB
messages for a local mailbox and two remote domains whose next hops are
on loopback: one closed port, one that accepts and never answers. Then a
runaway writer takes the rest of the disk while mail is in delivery; then
the space comes back and the next hops answer (smtp-sink). Separately, an
LD_PRELOAD shim makes writes and fsyncs in the queue fail with EIO while
mail flows.

After the fault clears, every message that got a 250 is delivered within
60 s without a restart, intact (Message-ID and body hash), exactly once;
the queue is empty; the log names the fault once and the recovery once,
with no traceback; before the disk is exhausted pigeon refuses with
`452 4.3.1` at MAIL FROM once below its reserve.
"""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from faultfs import (
    Blackhole,
    FaultyPigeon,
    Filler,
    Letter,
    build_shim,
    letters_in,
    maildir_files,
    sink_files,
)

from pigeon.testing.live import free_port, wait_for
from pigeon.testing.sink import SmtpSink

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOCAL = "box@localhost"
CLOSED = "user@closed.test"
SILENT = "user@silent.test"
#: The recipients of successive letters: local, remote, both, and the silent hop.
MIX = ((LOCAL,), (CLOSED,), (LOCAL, CLOSED), (SILENT,), (LOCAL,), (SILENT, LOCAL))
DEADLINE = 60.0  # the promise: delivered within 60 s of the fault clearing
AREAS = ("queue", "mailbox")  # the storage areas whose faults are logged (queue/health.py)


def config(workdir: Path, closed: int, silent: int, metrics: int, extra: str = "") -> str:
    return f"""relay_networks = ["127.0.0.0/8"]
[domains."localhost"]
[transports]
"closed.test" = "smtp:[127.0.0.1]:{closed}"
"silent.test" = "smtp:[127.0.0.1]:{silent}"
[admin]
metrics_listen = "127.0.0.1:{metrics}"
control_socket = "{workdir}/control.sock"
{extra}"""


def wait_until(predicate, timeout: float, interval: float = 0.25):
    """wait_for, polling slower: some predicates ask `pigeon status` (a process)."""
    return wait_for(predicate, timeout, interval)


def send(port: int, letter: Letter) -> str:
    """'250', or the refusal: '<code> <MAIL|RCPT|DATA> <enhanced code>'."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
            s.ehlo("client.test")
            s.sendmail("flood@client.test", list(letter.recipients), letter.data)
        return "250"
    except smtplib.SMTPSenderRefused as e:
        return f"{e.smtp_code} MAIL {e.smtp_error[:5].decode()}"
    except smtplib.SMTPRecipientsRefused as e:
        return f"RCPT {e.recipients}"
    except smtplib.SMTPDataError as e:
        return f"{e.smtp_code} DATA {e.smtp_error[:5].decode()}"
    except (OSError, smtplib.SMTPException) as e:
        return f"error {e!r}"


class Flood:
    """Clients sending letters in parallel; every answer is recorded."""

    def __init__(self, server: FaultyPigeon, prefix: str) -> None:
        self.server, self.prefix = server, prefix
        self.results: list[tuple[Letter, str]] = []
        self._lock = threading.Lock()
        self._n = 0

    def run(
        self, clients: int, *, attempts: int, stop_after_refusals: int, size: int = 1_000_000
    ) -> None:
        def client() -> None:
            refused = 0
            for _ in range(attempts):
                with self._lock:
                    self._n += 1
                    n = self._n
                letter = Letter.make(f"{self.prefix}{n:03d}", MIX[n % len(MIX)], size)
                answer = send(self.server.port, letter)
                with self._lock:
                    self.results.append((letter, answer))
                refused = 0 if answer == "250" else refused + 1
                if refused >= stop_after_refusals:
                    return

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)

    def accepted(self) -> list[Letter]:
        return [letter for letter, answer in self.results if answer == "250"]

    def answers(self) -> Counter:
        return Counter(answer for _, answer in self.results)


def status(server: FaultyPigeon) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "pigeon", "status", "--json", "--config", str(server.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def delivered(server: FaultyPigeon, sinks: list) -> Counter:
    """(token, Message-ID, body hash) -> copies found, local and remote."""
    found = letters_in(maildir_files(server.data, LOCAL))
    for sink in sinks:
        found += [(t, m, h) for t, m, h in letters_in(sink_files(sink))]
    return Counter(found)


def expected(letters: list[Letter], *, local: bool = True) -> Counter:
    """What `delivered` must show: one copy in the Maildir (unless `local`
    is False: those were checked and removed already), one per remote hop."""
    want: Counter = Counter()
    for letter in letters:
        key = (letter.token, letter.message_id, letter.body_hash)
        copies = (local and LOCAL in letter.recipients) + sum(
            1 for r in letter.recipients if r != LOCAL
        )
        if copies:
            want[key] += copies
    return want


def check_all_delivered(server, sinks, want: Counter, since: float) -> Counter:

    def done():
        got = delivered(server, sinks)
        return all(got[k] >= n for k, n in want.items()) and status(server)["queue"] == {
            "incoming": 0,
            "active": 0,
            "deferred": 0,
            "hold": 0,
            "corrupt": 0,
            "capture": 0,
        }

    ok = wait_until(done, timeout=DEADLINE - (time.monotonic() - since) + 1.0, interval=0.5)
    got = delivered(server, sinks)
    missing = {k[0]: n - got[k] for k, n in want.items() if got[k] < n}
    assert ok and not missing, (
        f"not delivered within {DEADLINE:.0f}s of the fault clearing: "
        f"{sorted(missing)}; queue {status(server)['queue']}\n" + server.log()[-6000:]
    )
    took = time.monotonic() - since
    # Intact: every copy found carries the Message-ID and body hash it was sent with
    # (keys are (token, Message-ID, hash): a damaged copy would be a key not wanted).
    tokens = {k[0] for k in want}
    strays = [k for k in got if k[0] in tokens and k not in want]
    assert not strays, f"damaged copies: {strays}"
    twice = {k[0]: got[k] for k, n in want.items() if got[k] > n}
    assert not twice, f"delivered more than once: {twice}"
    return Counter(took=round(took, 1))


def around(log: str, text: str) -> str:
    """The part of the log around the first `text` (for assertion messages)."""
    at = log.find(text)
    return log[max(0, at - 3000) : at + 3000] if at >= 0 else log[-3000:]


def log_lines(server, text: str) -> int:
    return sum(1 for line in server.log().splitlines() if text in line)


@pytest.fixture
def hops():
    closed, silent = free_port(), free_port()
    hole = Blackhole(silent)
    sinks: list[SmtpSink] = []
    yield closed, silent, hole, sinks
    hole.close()
    for sink in sinks:
        sink.stop()


def test_full_disk_strands_no_acknowledged_mail(tmp_path, hops):
    closed, silent, hole, sinks = hops
    metrics_port = free_port()
    server = FaultyPigeon(tmp_path / "p", config(tmp_path / "p", closed, silent, metrics_port))
    server.start()
    filler = None
    try:
        # 1. Four clients flood the 64 MB disk with 1 MB letters. The reserve
        #    (1.5 x limits.message_size by default) stops them with 452 4.3.1
        #    at MAIL FROM while the disk still has room.
        first = Flood(server, "a")
        first.run(4, attempts=40, stop_after_refusals=3)
        answers = first.answers()
        refusals = {a for a in answers if a != "250"}
        # 452 at MAIL FROM, or at the DATA command for a client that passed
        # MAIL just before (never a failed commit: no storage fault below).
        assert "452 MAIL 4.3.1" in refusals and refusals <= {"452 MAIL 4.3.1", "452 DATA 4.3.1"}, (
            answers
        )
        free = server.free_bytes()
        reserve = status(server)["storage"]["space"]["reserve"]
        assert free > reserve // 2, (free, reserve)  # refused before the disk ran out
        assert log_lines(server, "below the reserve") == 1, server.log()[-3000:]
        assert log_lines(server, "storage failing") == 0, server.log()[-3000:]
        assert "pigeon_queue_below_reserve 1.0" in metrics(metrics_port)
        assert status(server)["storage"]["space"]["low"] is True
        local_first = [x for x in first.accepted() if LOCAL in x.recipients]
        assert wait_until(
            lambda: all(
                delivered(server, [])[(x.token, x.message_id, x.body_hash)] for x in local_first
            ),
            timeout=30,
        )

        # 2. The operator makes room (the local letters were checked above);
        #    then a runaway writer takes the rest of the disk while four
        #    clients flood again and mail is being delivered.
        for p in (server.data / "mailboxes" / "localhost" / "box" / "new").iterdir():
            p.unlink()
        assert wait_until(lambda: status(server)["storage"]["space"]["low"] is False, timeout=10)
        second = Flood(server, "b")
        runner = threading.Thread(
            target=second.run, args=(4,), kwargs=dict(attempts=40, stop_after_refusals=4)
        )
        runner.start()
        wait_until(lambda: len(second.accepted()) >= 6, timeout=60, interval=0.05)
        filler = Filler(server.data).start()
        runner.join(300)
        # Deliveries keep meeting the full disk: flush brings the closed hop's mail back.
        subprocess.run(
            [sys.executable, "-m", "pigeon", "queue", "flush", "--config", str(server.config_path)],
            capture_output=True,
            timeout=30,
        )

        # Where the disk ran out first depends on the race with the writer:
        # the queue (spool, commit, state change) or a Maildir, usually both.
        def failed() -> list[str]:
            return [a for a in AREAS if log_lines(server, f"{a} storage failing")]

        assert wait_until(failed, timeout=30), server.log()[-4000:]
        time.sleep(3)  # mail keeps failing against the full disk meanwhile
        areas, storage, text = failed(), status(server)["storage"], metrics(metrics_port)
        for area in areas:
            assert storage[area]["degraded"] is True, (area, storage)
            assert f'pigeon_storage_degraded{{area="{area}"}} 1.0' in text, area

        # 3. The space comes back and the next hops answer: no restart.
        filler.release()
        hole.close()
        sinks.append(SmtpSink("127.0.0.1", closed).start())
        sinks.append(SmtpSink("127.0.0.1", silent).start())
        since = time.monotonic()
        letters = first.accepted() + second.accepted()
        want = expected(first.accepted(), local=False) + expected(second.accepted())
        took = check_all_delivered(server, sinks, want, since)
        print(
            f"\nfull disk: first flood {dict(first.answers())}, second {dict(second.answers())}; "
            f"storage failing: {areas}; all {len(letters)} acknowledged letters delivered "
            f"{took['took']}s after the fault"
        )

        log = server.log()
        assert "Traceback" not in log, around(log, "Traceback")
        for area in AREAS:  # the fault once, the recovery once
            assert log_lines(server, f"{area} storage failing") == (area in areas), log[-6000:]
        assert wait_until(
            lambda: all(log_lines(server, f"{area} storage recovered") == 1 for area in areas),
            timeout=30,
        ), server.log()[-3000:]
        assert server.proc.poll() is None
        # And new mail is accepted and delivered again.
        after = Letter.make("after", (LOCAL,), 10_000)
        assert send(server.port, after) == "250"
        assert wait_until(
            lambda: delivered(server, [])[(after.token, after.message_id, after.body_hash)],
            timeout=20,
        )
    finally:
        if filler is not None:
            filler.release()
        server.stop()


@pytest.mark.parametrize(
    "area,spec",
    [("queue", "EIO"), ("queue", "EIO fsync"), ("mailbox", "ENOSPC write")],
    ids=["queue-write-and-fsync", "queue-fsync-only", "maildir-enospc"],
)
def test_write_errors_strand_no_acknowledged_mail(tmp_path, hops, area, spec):
    """The shim fails writes (and/or fsyncs) in the queue, or in the Maildirs,
    for a few seconds while two clients send local and remote mail."""
    closed, silent, hole, sinks = hops
    hole.close()
    # The remote hop is slow at DATA, so deliveries are in flight when the fault starts.
    sinks.append(SmtpSink("127.0.0.1", closed, extra_args=("-w", "1")).start())
    sinks.append(SmtpSink("127.0.0.1", silent).start())
    shim = build_shim(tmp_path)
    workdir = tmp_path / "p"
    where = workdir / "data" / ("queue" if area == "queue" else "mailboxes")
    server = FaultyPigeon(
        workdir,
        config(workdir, closed, silent, free_port()),
        fs_size="256m",
        shim=shim,
        fault_path=str(where),
    )
    server.start()
    try:
        flood = Flood(server, "e")
        runner = threading.Thread(
            target=flood.run,
            args=(2,),
            kwargs=dict(attempts=30, stop_after_refusals=6, size=200_000),
        )
        runner.start()
        wait_until(lambda: len(flood.accepted()) >= 6, timeout=60, interval=0.05)
        server.fault(True, spec)
        kept = 0
        for _ in range(16):  # deliveries end, commits and state changes fail
            storage = status(server)["storage"]
            kept = max(kept, storage["unsaved"] + storage["requeue"])
            time.sleep(0.25)
        assert storage[area]["degraded"] is True, storage
        if spec == "EIO":
            # Results of deliveries in flight could not be written: kept in memory.
            assert kept > 0, server.log()[-3000:]
        server.fault(False)
        since = time.monotonic()
        runner.join(300)
        letters = flood.accepted()
        answers = flood.answers()
        if area == "queue":
            assert any(a.startswith("451 DATA 4.3.0") for a in answers), answers
        else:  # the queue was fine: all accepted, none bounced
            assert set(answers) == {"250"}, answers
            assert "dsn=4.3.1, status=deferred" in server.log()
        took = check_all_delivered(server, sinks, expected(letters), since)
        print(
            f"\n{area} {spec}: answers {dict(answers)}; delivered {took['took']}s after the fault"
        )
        log = server.log()
        assert "Traceback" not in log and "status=bounced" not in log, around(log, "Traceback")
        assert log_lines(server, f"{area} storage failing") == 1, log[-6000:]
        assert wait_until(
            lambda: log_lines(server, f"{area} storage recovered") == 1, timeout=30
        ), server.log()[-3000:]
    finally:
        server.stop()

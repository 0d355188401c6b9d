"""Mail load spread over several SMTP servers, each message retried until acknowledged.

For issue 17's cluster tests (tests/e2e/test_cluster_kill.py,
test_cluster_outage.py): several `pigeon serve` nodes on one database, one
of them killed or the database stopped while this load runs.

    load = ClusterLoad([(host, port_a), (host, port_b)], "user@down.test", count=10_000)
    with load:
        load.wait_acked(5000)          # midway
        ...                            # kill a node, stop the database
        assert load.wait_done(300)     # every message acknowledged once
    report = load.report

Contract:
  * `connections` sessions per target, each a thread with one persistent
    SMTP session (EHLO once, then transaction after transaction), the
    MAIL/RCPT/DATA group pipelined (RFC 2920, section 3.1: DATA ends the
    group; the content waits for its 354). Messages carry a unique id in
    `Message-ID:`, `X-Load-Id:` and a last body line `end <id>`, so a copy
    that arrived cut short is told from a whole one (`delivered_ids`).
  * Each message is retried until a 250 after its content: the outcome of
    every attempt is recorded (`report.attempts`: id, target index, time
    the request was sent, time its reply came, code; times from
    time.monotonic, to be compared with the caller's own stamps).
      - 250 after the content: acknowledged (`report.acked`, first target).
      - 4xx: not taken; retried after `retry_pause`, on the same session
        (a 421 closes it: then a new session).
      - 5xx: refused for good (`report.rejected`), not retried: the tests
        say there must be none.
      - the session lost or silent (`timeout`) once the content or its end
        was sent: the server may have committed it without our hearing:
        `report.ambiguous` gets the id and it is retried elsewhere (a copy
        more is then possible, never one less); a silent one is also in
        `report.hangs`. Lost before that: retried, nothing noted.
  * A target that refuses connections is skipped: the session goes to the
    next one (a killed node), coming back to its own first each time.
  * Bounded: `count` messages (None: until `stop()`), every socket wait
    `timeout`, the threads stop at `stop()` or after `max_seconds`; a
    thread finishes the transaction in progress and leaves.
  * `delivered_ids(dump_dir)`: id -> whole copies found in smtp-sink's dump
    files (pigeon.testing.sink), for lost/duplicate counts.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Attempt", "ClusterLoad", "LoadReport", "delivered_ids"]

_ID_FIELD = re.compile(rb"^X-Load-Id: (\S+)\r?$", re.M)


@dataclass(frozen=True)
class Attempt:
    """One try of one message: its final reply (0: none, the session was lost)."""

    msg_id: str
    target: int
    sent: float
    replied: float
    code: int
    text: str


@dataclass
class LoadReport:
    acked: dict[str, int] = field(default_factory=dict)  # id -> target that said 250
    attempts: list[Attempt] = field(default_factory=list)
    rejected: list[Attempt] = field(default_factory=list)
    ambiguous: dict[str, int] = field(default_factory=dict)  # id -> target, see contract
    hangs: list[Attempt] = field(default_factory=list)
    refused_connects: int = 0
    session_errors: list[str] = field(default_factory=list)

    def codes(self) -> Counter[int]:
        return Counter(a.code for a in self.attempts)

    def summary(self) -> str:
        codes = ", ".join(f"{c}: {n}" for c, n in sorted(self.codes().items()))
        return (
            f"acked={len(self.acked)} attempts={len(self.attempts)} ({codes}) "
            f"rejected={len(self.rejected)} ambiguous={len(self.ambiguous)} "
            f"hangs={len(self.hangs)} refused_connects={self.refused_connects} "
            f"session_errors={len(self.session_errors)}"
        )


class _Lost(Exception):
    """The session broke (reset, closed, or silent for `timeout`)."""

    def __init__(self, why: str, silent: bool = False) -> None:
        super().__init__(why)
        self.silent = silent


class _Session:
    """One SMTP session on a socket; replies read as (code, text of the last line)."""

    def __init__(self, address: tuple[str, int], timeout: float) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def reply(self) -> tuple[int, str]:
        while True:
            while b"\r\n" not in self.buf:
                try:
                    chunk = self.sock.recv(65536)
                except TimeoutError as exc:
                    raise _Lost("no reply within the timeout", silent=True) from exc
                except OSError as exc:
                    raise _Lost(repr(exc)) from exc
                if not chunk:
                    raise _Lost("connection closed")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            if len(line) >= 4 and line[3:4] == b"-":
                continue  # a continuation line of a multi-line reply
            if len(line) < 3 or not line[:3].isdigit():
                raise _Lost(f"not a reply: {line[:80]!r}")
            return int(line[:3]), line[4:].decode("ascii", "replace")

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise _Lost(repr(exc)) from exc

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class ClusterLoad:
    """See the module contract."""

    def __init__(
        self,
        targets: Sequence[tuple[str, int]],
        recipient: str,
        *,
        sender: str = "load@localhost",
        count: int | None = None,
        connections: int = 2,
        timeout: float = 60.0,
        retry_pause: float = 0.2,
        max_seconds: float = 600.0,
    ) -> None:
        self.targets = list(targets)
        self.recipient, self.sender = recipient, sender
        self.count, self.timeout, self.retry_pause = count, timeout, retry_pause
        self.deadline = time.monotonic() + max_seconds
        self.report = LoadReport()
        self.run_id = uuid.uuid4().hex[:8]
        self._issued = 0
        self._retry: deque[str] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._worker, args=(i % len(self.targets),), daemon=True)
            for i in range(connections * len(self.targets))
        ]

    # --- control ----------------------------------------------------------------

    def __enter__(self) -> ClusterLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadReport:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout * 3)  # the transaction in progress ends within its timeouts
        return self.report

    def acked_count(self) -> int:
        with self._lock:
            return len(self.report.acked)

    def wait_acked(self, n: int, timeout: float) -> bool:
        """Poll (bounded) until `n` messages were acknowledged."""
        end = time.monotonic() + timeout
        while self.acked_count() < n:
            if time.monotonic() > end or self._stop.is_set():
                return False
            time.sleep(0.05)
        return True

    def wait_done(self, timeout: float) -> bool:
        """With `count`: poll (bounded) until all `count` were acknowledged."""
        assert self.count is not None, "wait_done needs a count"
        return self.wait_acked(self.count, timeout)

    def ids(self) -> list[str]:
        """Every id handed out so far (acknowledged or not)."""
        with self._lock:
            return [self._id(n) for n in range(self._issued)]

    # --- the sessions -----------------------------------------------------------

    def _id(self, n: int) -> str:
        return f"{self.run_id}-{n:05d}"

    def _next(self) -> str | None:
        """A message to send: a retry first, else a new one; None when done."""
        if self._stop.is_set() or time.monotonic() > self.deadline:
            return None
        with self._lock:
            if self._retry:
                return self._retry.popleft()
            if self.count is not None and self._issued >= self.count:
                return ""  # nothing new: wait for retries or the end
            self._issued += 1
            return self._id(self._issued - 1)

    def _content(self, msg_id: str) -> bytes:
        return (
            f"From: <{self.sender}>\r\nTo: <{self.recipient}>\r\n"
            f"Message-ID: <{msg_id}@load.test>\r\nSubject: load {msg_id}\r\n"
            f"X-Load-Id: {msg_id}\r\n\r\nbody of {msg_id}\r\nend {msg_id}\r\n.\r\n"
        ).encode()

    def _connect(self, home: int) -> tuple[_Session, int] | None:
        """A session on `home`, else on the next target that answers 220."""
        n = len(self.targets)
        for k in range(n):
            target = (home + k) % n
            try:
                s = _Session(self.targets[target], self.timeout)
            except OSError:
                with self._lock:
                    self.report.refused_connects += 1
                continue
            try:
                code, _ = s.reply()
                if code == 220:
                    s.send(b"EHLO load.test\r\n")
                    if s.reply()[0] == 250:
                        return s, target
            except _Lost:
                pass
            s.close()
        return None

    def _worker(self, home: int) -> None:
        session: tuple[_Session, int] | None = None
        while (msg_id := self._next()) is not None:
            if msg_id == "":
                time.sleep(0.05)
                continue
            if session is None:
                session = self._connect(home)
                if session is None:
                    self._again(msg_id)
                    time.sleep(self.retry_pause)
                    continue
            s, target = session
            try:
                keep = self._transaction(s, target, msg_id)
            except _Lost as exc:
                with self._lock:
                    self.report.session_errors.append(f"{self.targets[target]}: {exc}")
                keep = False
            if not keep:
                s.close()
                session = None
        if session is not None:
            try:
                session[0].send(b"QUIT\r\n")
            except _Lost:
                pass
            session[0].close()

    def _again(self, msg_id: str) -> None:
        with self._lock:
            self._retry.append(msg_id)

    def _record(self, a: Attempt) -> None:
        with self._lock:
            self.report.attempts.append(a)
            if a.code == 250:
                self.report.acked.setdefault(a.msg_id, a.target)
            elif a.code >= 500:
                self.report.rejected.append(a)
            else:
                self._retry.append(a.msg_id)

    def _transaction(self, s: _Session, target: int, msg_id: str) -> bool:
        """One try; False when the session must be closed. Raises _Lost after
        recording what the loss means for the message (see the contract)."""
        sent = time.monotonic()
        replies: list[tuple[int, str]] = []
        try:
            s.send(f"MAIL FROM:<{self.sender}>\r\nRCPT TO:<{self.recipient}>\r\nDATA\r\n".encode())
            while len(replies) < 3 and (not replies or replies[-1][0] != 421):
                replies.append(s.reply())
        except _Lost:
            self._again(msg_id)  # nothing of the content was sent: no copy can exist
            raise
        if replies[-1][0] == 421:  # the server closes the session (RFC 5321, 3.8)
            self._record(Attempt(msg_id, target, sent, time.monotonic(), *replies[-1]))
            self._pause_after(421)
            return False
        failed = next((r for r in replies[:2] if r[0] != 250), None)
        if replies[2][0] != 354 or failed is not None:
            code, text = failed or replies[2]
            self._record(Attempt(msg_id, target, sent, time.monotonic(), code, text))
            if replies[2][0] == 354:  # cannot happen after a failed RCPT; be safe
                s.send(b".\r\n")
                s.reply()
            s.send(b"RSET\r\n")
            s.reply()
            self._pause_after(code)
            return code != 421
        sent = time.monotonic()
        try:
            s.send(self._content(msg_id))
            code, text = s.reply()
        except _Lost as exc:
            lost = Attempt(msg_id, target, sent, time.monotonic(), 0, str(exc))
            with self._lock:
                self.report.attempts.append(lost)
                self.report.ambiguous.setdefault(msg_id, target)
                if exc.silent:
                    self.report.hangs.append(lost)
                self._retry.append(msg_id)
            raise
        self._record(Attempt(msg_id, target, sent, time.monotonic(), code, text))
        self._pause_after(code)
        return code != 421

    def _pause_after(self, code: int) -> None:
        if 400 <= code < 500:
            time.sleep(self.retry_pause)  # a client backs off after a temporary failure


def delivered_ids(dump_dir: Path) -> Counter[str]:
    """id -> whole copies in smtp-sink's dump files: a file counts when it has
    the id's `X-Load-Id:` and ends with the last body line `end <id>` and the
    empty line smtp-sink adds once the data ended (a transaction still being
    written, or cut short by a killed node, is no delivery: the sink never
    said 250 to it, and it removes the file of an aborted one)."""
    found: Counter[str] = Counter()
    for path in Path(dump_dir).iterdir():
        try:
            data = path.read_bytes()
        except OSError:
            continue
        m = _ID_FIELD.search(data)
        if m and data.endswith(b"\nend " + m.group(1) + b"\n\n"):
            found[m.group(1).decode()] += 1
    return found

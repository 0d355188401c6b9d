"""A loader: SMTP clients that connect and send without a pause, counting what a restart costs.

    with Loader("127.0.0.1", port, "load@localhost", clients=4) as load:
        load.wait_acked(50)                 # some mail before the restart
        proc.restart()
        load.wait_acked(load.acked_count() + 50)
    report = load.report                    # refused, failed, acked tokens, slowest greeting
    assert report.delivery(maildir_files) == ({}, {})   # nothing lost, nothing twice

Contract:
  * `clients` threads each run one SMTP session after another (smtplib:
    connect, EHLO, one message, QUIT) until `stop()`, `max_messages` sessions
    in all, or `max_seconds`: every loop is bounded in count and time. Each
    message carries a unique `X-Load-Token:` header field.
  * Every session ends in exactly one of:
      - refused: the connection was refused or reset before a greeting, or
        the greeting was not 220 (a 421 is a refusal too);
      - failed: any other unexpected reply, or the connection lost, after
        the greeting (the step and the reply are kept);
      - acked: 250 after the end of the data: the message is ours to deliver
        (its token is kept). A QUIT not answered 221 after that still
        counts as acked (the message was acknowledged) and is noted.
  * `report.greeting_waits` holds, for each session, the seconds from the
    start of connect() to the greeting: the slowest is the gap a restart
    made a client wait (a measurement for reports, never asserted on).
  * `report.delivery(files)` compares the acked tokens with the messages
    found: (lost, duplicated), token -> count.
"""

from __future__ import annotations

import itertools
import smtplib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LoadReport", "Loader", "tokens_in"]

TOKEN_FIELD = b"X-Load-Token: "


@dataclass
class LoadReport:
    sessions: int = 0
    refused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    quit_not_221: int = 0
    greeting_waits: list[float] = field(default_factory=list)

    def delivery(self, files: Iterable[Path]) -> tuple[dict[str, int], dict[str, int]]:
        """(lost, duplicated): acked tokens found 0 times, tokens found more than once."""
        found = tokens_in(files)
        lost = {t: 0 for t in self.acked if found[t] == 0}
        twice = {t: n for t, n in found.items() if n > 1}
        return lost, twice

    def summary(self) -> str:
        slowest = max(self.greeting_waits, default=0.0)
        return (
            f"sessions={self.sessions} acked={len(self.acked)} refused={len(self.refused)} "
            f"failed={len(self.failed)} quit_not_221={self.quit_not_221} "
            f"slowest_greeting={slowest:.3f}s"
        )


def tokens_in(files: Iterable[Path]) -> Counter[str]:
    """Token -> number of messages carrying it."""
    out: Counter[str] = Counter()
    for path in files:
        for line in path.read_bytes().split(b"\n", 60)[:60]:
            if line.startswith(TOKEN_FIELD):
                out[line[len(TOKEN_FIELD) :].strip().decode()] += 1
                break
    return out


class Loader:
    """See the module contract."""

    def __init__(
        self,
        host: str,
        port: int,
        recipient: str,
        *,
        clients: int = 4,
        max_messages: int = 5000,
        max_seconds: float = 180.0,
        timeout: float = 30.0,
    ) -> None:
        self.host, self.port, self.recipient = host, port, recipient
        self.clients, self.max_messages, self.timeout = clients, max_messages, timeout
        self.deadline = time.monotonic() + max_seconds
        self.report = LoadReport()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._numbers = itertools.count()
        self._run = uuid.uuid4().hex[:8]
        self._threads = [
            threading.Thread(target=self._client, name=f"loader-{i}", daemon=True)
            for i in range(clients)
        ]

    def __enter__(self) -> Loader:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadReport:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout * 4)  # a session in progress finishes
        return self.report

    def acked_count(self) -> int:
        with self._lock:
            return len(self.report.acked)

    def wait_acked(self, count: int, timeout: float = 60.0) -> bool:
        """Bounded polling until `count` messages were acknowledged."""
        deadline = time.monotonic() + timeout
        while self.acked_count() < count:
            if time.monotonic() > deadline or self._stop.is_set():
                return False
            time.sleep(0.05)
        return True

    def _more(self) -> int | None:
        if self._stop.is_set() or time.monotonic() > self.deadline:
            return None
        n = next(self._numbers)
        return n if n < self.max_messages else None

    def _client(self) -> None:
        while (n := self._more()) is not None:
            self._session(f"{self._run}-{n}")

    def _note(self, kind: str, what: str) -> None:
        with self._lock:
            getattr(self.report, kind).append(what)

    def _session(self, token: str) -> None:
        started = time.monotonic()
        with self._lock:
            self.report.sessions += 1
        try:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except smtplib.SMTPConnectError as exc:  # a greeting other than 220
            self._note("refused", f"{token}: greeting {exc.smtp_code} {exc.smtp_error!r}")
            return
        except (OSError, smtplib.SMTPException) as exc:
            self._note("refused", f"{token}: {exc!r}")
            return
        with self._lock:
            self.report.greeting_waits.append(time.monotonic() - started)
        message = (
            f"From: <loader@example.org>\r\nTo: <{self.recipient}>\r\n"
            f"Subject: load {token}\r\nX-Load-Token: {token}\r\n\r\nbody {token}\r\n"
        ).encode()
        try:
            client.ehlo("loader.example.org")
            client.sendmail("loader@example.org", [self.recipient], message)
        except (OSError, smtplib.SMTPException) as exc:
            self._note("failed", f"{token}: {exc!r}")
            client.close()
            return
        self._note("acked", token)
        try:
            code, _ = client.docmd("QUIT")
        except (OSError, smtplib.SMTPException):
            code = 0
        client.close()
        if code != 221:
            with self._lock:
                self.report.quit_not_221 += 1

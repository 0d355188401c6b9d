"""Shared helpers for proto unit tests: drive a ServerSession with a trivial policy."""

from __future__ import annotations

from dataclasses import dataclass, field

from pigeon.proto import reply as R
from pigeon.proto.events import (
    NEED_DATA,
    DataFinished,
    DataReceived,
    DataStarted,
    Event,
    MailRequested,
    RcptRequested,
)
from pigeon.proto.server import ServerSession, SessionConfig


@dataclass
class Drive:
    """A session plus what came out of it (content joined, other events listed)."""

    session: ServerSession
    now: float = 0.0
    content: bytearray = field(default_factory=bytearray)
    events: list[Event] = field(default_factory=list)
    out: bytearray = field(default_factory=bytearray)
    auto: bool = True

    def pump(self) -> None:
        while True:
            ev = self.session.next_event()
            if ev is NEED_DATA:
                break
            if isinstance(ev, DataReceived):
                self.content += ev.data
            else:
                self.events.append(ev)
            if self.auto and isinstance(ev, (MailRequested, RcptRequested, DataStarted)):
                self.session.respond(None, now=self.now)
            elif self.auto and isinstance(ev, DataFinished):
                self.session.respond(R.queued("Q1"), now=self.now)
        self.out += self.session.data_to_send()

    def send(self, data: bytes) -> Drive:
        self.session.receive_data(data, self.now)
        self.pump()
        return self

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events]


def session(**cfg: object) -> Drive:
    d = Drive(ServerSession(SessionConfig(**cfg), now=0.0))  # type: ignore[arg-type]
    d.session.start(0.0)
    d.pump()
    return d


def in_data(**cfg: object) -> Drive:
    """A session that has just answered 354 to DATA (output cleared)."""
    d = session(**cfg)
    d.send(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    assert d.out.endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n"), d.out
    d.out.clear()
    d.events.clear()
    return d


def in_bdat(**cfg: object) -> Drive:
    """A session after EHLO, MAIL and RCPT (ready for BDAT), output cleared."""
    d = session(**cfg)
    d.send(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n")
    d.out.clear()
    d.events.clear()
    return d

"""Test doubles shipped with pigeon (STYLE 3.15: seams are injected).

Contract:
  * Fakes are deterministic and record what they were asked, so tests assert
    on calls instead of reading log files or sleeping.
  * They implement the same narrow interfaces as the real objects
    (`RecordingMaillog` ~ pigeon.obs.maillog, `FakeClock` ~ `time.time`), and
    never do I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class MaillogCall:
    queue_id: str
    fields: dict
    detail: str | None


@dataclass(slots=True)
class RecordingMaillog:
    """A maillog that keeps every `log()` call in `calls`, in order."""

    calls: list[MaillogCall] = field(default_factory=list)

    def log(self, queue_id: str, fields: dict, detail: str | None = None) -> None:
        self.calls.append(MaillogCall(queue_id, dict(fields), detail))

    def for_id(self, queue_id: str) -> list[MaillogCall]:
        return [c for c in self.calls if c.queue_id == queue_id]

    def statuses(self, queue_id: str) -> list[str]:
        return [c.fields.get("status", "") for c in self.for_id(queue_id)]


class FakeClock:
    """A callable clock (`clock()` -> seconds) that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

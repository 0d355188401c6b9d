"""What the operator sees of a queue entry: filters, summaries, headers.

Contract:
  * Pure functions over `QueueEntry`/`Envelope` values (and, for
    `read_headers`, one bounded read of a content file). The running
    server (control socket, `list`/`show` ops) and the CLI's fallback when
    the server is down (reading the store directly) use the same code, so
    `pigeon queue list` prints the same thing either way.
  * `Filters` selects entries: state, recipient domain (a recipient not yet
    final at that domain, or at a subdomain when written ".example.org"),
    sender (case-insensitive substring; "<>" is the null sender) and age
    (older than N seconds). Empty filters select everything.
  * `summary(entry, now)` is a JSON-ready dict with the `pigeon queue list`
    columns: id, size, arrival, sender, recipients (with status), state,
    next attempt, last deferral reason. An entry whose envelope cannot be
    read shows state and id only ("corrupt" entries).
  * `parse_age("2h")` accepts seconds or a number with s/m/h/d; ValueError
    otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pigeon.msgfile import open_message
from pigeon.qmgr.operator import has_domain
from pigeon.queue.model import Envelope, RecipientStatus
from pigeon.queue.store import QueueEntry

__all__ = ["Filters", "MAX_HEADER_BYTES", "last_reason", "parse_age", "read_headers", "summary"]

#: `show` reads at most this much of a content file looking for the header end.
MAX_HEADER_BYTES = 64 * 1024

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> float:
    """ "90", "90s", "15m", "2h", "3d" -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if not m:
        raise ValueError(f"not an age: {text!r} (use e.g. 90, 15m, 2h, 3d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True, slots=True)
class Filters:
    state: str | None = None
    domain: str | None = None
    sender: str | None = None
    older_than: float | None = None  # seconds

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Filters:
        d = d or {}
        older = d.get("older_than")
        return cls(
            d.get("state") or None,
            (d.get("domain") or "").lower() or None,
            d.get("sender") or None,
            float(older) if older is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (
                ("state", self.state),
                ("domain", self.domain),
                ("sender", self.sender),
                ("older_than", self.older_than),
            )
            if v is not None
        }

    def match(self, entry: QueueEntry, now: float) -> bool:
        if self.state is not None and entry.state != self.state:
            return False
        env = entry.envelope
        if env is None:
            # Unreadable: only a state filter (or none) can select it.
            return self.domain is None and self.sender is None and self.older_than is None
        if self.domain is not None and not has_domain(env, self.domain):
            return False
        if self.sender is not None:
            wanted = self.sender.lower()
            if wanted == "<>" and env.sender:
                return False
            if wanted != "<>" and wanted not in env.sender.lower():
                return False
        if self.older_than is not None and now - env.received_at < self.older_than:
            return False
        return True


def last_reason(env: Envelope) -> str:
    """The diagnostic of the most recent failed attempt ("" before any)."""
    failed = [r for r in env.recipients if r.status is RecipientStatus.DEFERRED and r.diagnostic]
    if not failed:
        return ""
    latest = max(failed, key=lambda r: r.last_attempt)
    return f"{latest.dsn_status} {latest.diagnostic}".strip()


def summary(entry: QueueEntry, now: float) -> dict[str, Any]:
    """The `pigeon queue list` row of `entry`, JSON-ready (see the contract)."""
    env = entry.envelope
    if env is None:
        return {"id": entry.queue_id, "state": entry.state, "readable": False}
    return {
        "id": entry.queue_id,
        "state": entry.state,
        "readable": True,
        "size": env.size,
        "arrival": env.received_at,
        "age": max(0.0, now - env.received_at),
        "sender": env.sender,
        "attempts": env.attempts,
        "next_attempt": entry.next_attempt if entry.state == "deferred" else None,
        "recipients": [
            {
                "address": r.address,
                "status": r.status.value,
                **({"dsn": r.dsn_status} if r.dsn_status else {}),
                **({"diagnostic": r.diagnostic} if r.diagnostic else {}),
            }
            for r in env.recipients
        ],
        "reason": last_reason(env),
        "dsn_kind": env.dsn_kind,
    }


def read_headers(path: Path, limit: int = MAX_HEADER_BYTES) -> str:
    """The header section of the content file (text, CRLF -> LF), bounded to `limit` bytes."""
    fh, _ = open_message(path)  # past the queue file's preamble (pigeon/msgfile.py)
    with fh:
        data = fh.read(limit)
    end = data.find(b"\r\n\r\n")
    head = data[:end] if end >= 0 else data
    return head.decode("utf-8", "replace").replace("\r\n", "\n")

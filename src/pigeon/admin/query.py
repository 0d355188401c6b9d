"""What the operator sees of a queue entry: filters, summaries, headers.

Contract:
  * Pure functions over `QueueEntry`/`Envelope` values (and, for
    `read_headers`, one bounded read of a message's content, through the
    queue's `MessageContent` stream: queue/api.py). The running
    server (control socket, `list`/`show` ops) and the CLI's fallback when
    the server is down (reading the store directly) use the same code, so
    `pigeon queue list` prints the same thing either way.
  * `Filters` selects entries (pigeon/queue/filters.py, re-exported here).
  * `summary(entry, now)` is a JSON-ready dict with the `pigeon queue list`
    columns: id, size, arrival, sender, recipients (with status), state,
    next attempt, last deferral reason. An entry whose envelope cannot be
    read shows state and id only ("corrupt" entries).
  * `cluster_view(store)`: for a queue several nodes share (a store with
    `nodes()`, store/pg/nodes.py) {"node": this node's name, "nodes": every
    node with its state and heartbeat}; None for the embedded store. A
    database that cannot be read gives {"node", "error"}: status still
    answers.
  * `parse_age("2h")` accepts seconds or a number with s/m/h/d; ValueError
    otherwise.
"""

from __future__ import annotations

import re
from typing import Any

from pigeon.queue.api import MessageContent, QueueEntry
from pigeon.queue.filters import Filters, has_domain
from pigeon.queue.model import Envelope, RecipientStatus

__all__ = [
    "Filters",
    "cluster_view",
    "MAX_HEADER_BYTES",
    "has_domain",
    "last_reason",
    "parse_age",
    "read_headers",
    "summary",
]


def cluster_view(store: Any) -> dict[str, Any] | None:
    """The cluster part of `pigeon status` (module contract); blocking."""
    from pigeon.vocab.errors import StoreError

    nodes = getattr(store, "nodes", None)
    if nodes is None:
        return None
    try:
        return {"node": store.node, "nodes": nodes()}
    except StoreError as exc:
        return {"node": store.node, "error": str(exc)}


#: `show` reads at most this much of a content file looking for the header end.
MAX_HEADER_BYTES = 64 * 1024

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> float:
    """ "90", "90s", "15m", "2h", "3d" -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if not m:
        raise ValueError(f"not an age: {text!r} (use e.g. 90, 15m, 2h, 3d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


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


def read_headers(content: MessageContent, limit: int = MAX_HEADER_BYTES) -> str:
    """The header section of the message (text, CRLF -> LF), bounded to
    `limit` bytes. StoreError when the content cannot be read."""
    with content.open() as fh:
        data = fh.read(limit)
    end = data.find(b"\r\n\r\n")
    head = data[:end] if end >= 0 else data
    return head.decode("utf-8", "replace").replace("\r\n", "\n")

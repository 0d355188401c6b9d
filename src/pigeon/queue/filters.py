"""Which queue entries an operator means: state, recipient domain, sender, age.

Contract:
  * `Filters` selects `QueueEntry` values (queue/api.py): state, recipient
    domain (a recipient not yet final at that domain, or at a subdomain
    when written ".example.org"), sender (case-insensitive substring; "<>"
    is the null sender) and age (older than N seconds). Empty filters
    select everything. An entry whose envelope cannot be read matches only
    filters on state (or none).
  * Pure: values in, a verdict out; `now` is an argument. It sits with the
    queue's interfaces so every layer above may select entries the same
    way: the operator's listings (pigeon.admin) and the manager's actions
    (flush by domain), over any backend.
  * `from_dict`/`to_dict`: the JSON form the control socket carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pigeon.queue.api import QueueEntry
from pigeon.queue.model import Envelope

__all__ = ["Filters", "has_domain"]


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


def has_domain(env: Envelope, domain: str) -> bool:
    """True if a recipient not yet final is at `domain` (".example.org": its subdomains)."""
    domain = domain.lower()
    for r in env.recipients:
        if r.final:
            continue
        rd = r.address.rpartition("@")[2].lower()
        if rd == domain or (domain.startswith(".") and rd.endswith(domain)):
            return True
    return False

"""The schema of `[[webhooks]]`: HTTP endpoints told of mail events (docs/webhooks.md).

Contract: like `pigeon.config.schema` (which holds these as the `Config`
field `webhooks`): a frozen dataclass, one documented field each, the TOML
key, default and unit in its comment; docs/config.md agrees. The value
checks are `pigeon.config._webhooks`; the code that uses them is
`pigeon.webhooks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["WEBHOOK_EVENTS", "WebhookConfig"]

#: The events a webhook may hear, in the order a message meets them.
WEBHOOK_EVENTS: tuple[str, ...] = ("received", "delivered", "deferred", "bounced", "expired")


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """One `[[webhooks]]` entry (checked by pigeon.config._webhooks)."""

    url: str  # url: where events are POSTed, "http://" or "https://" (certificates verified)
    #: events: the kinds POSTed; default all of WEBHOOK_EVENTS.
    events: tuple[str, ...] = WEBHOOK_EVENTS
    secret: str = ""  # secret: the HMAC-SHA256 key (text); this or secret_file is required
    #: secret_file: an absolute path to a file holding the key (its first line,
    #: read at start-up); this or secret is required.
    secret_file: Path | None = None
    #: ca_file: an absolute path to PEM CA certificates trusted for an https
    #: url instead of the system's; None = the system's.
    ca_file: Path | None = None
    timeout: float = 10.0  # timeout, seconds: for one POST (connect, send, the answer's head)
    #: max_age, seconds: an event not taken by then is dropped (logged); default 3 days.
    max_age: float = 259200.0
    #: max_pending: events waiting for this URL at most; past it new ones are dropped (logged).
    max_pending: int = 10000

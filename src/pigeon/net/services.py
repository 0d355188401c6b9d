"""What a server connection is given: its services and its listener's settings.

Contract:
  * `ReceiveServices` holds the long-lived collaborators every connection
    of a server shares: the queue intake (`store`), the receive pipeline
    (`pigeon.policy.pipeline`), the login rules (`pigeon.auth.login`), the
    TLS context provider, the DKIM signing, the mail log and metrics, the hand-over to the
    queue manager (`on_queued`), the webhooks (`on_received`), the ETRN flush, the clocks and a few
    timeouts. It is immutable: a reload makes a new one
    (`dataclasses.replace`) and sessions in progress keep theirs.
  * `ConnectionContext` is one connection's whole configuration: the
    services plus its listener role's `SessionConfig`. `Connection` takes
    exactly this (and the stream).
  * Nothing here decides anything; it is wiring, built by the listener
    (`pigeon.net.listener`) from what the composition root passed in.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pigeon.auth.login import Logins
from pigeon.config.abuse import PostscreenConfig
from pigeon.policy.capture import CaptureRules
from pigeon.policy.pipeline import ReceivePipeline
from pigeon.proto.server import SessionConfig
from pigeon.queue.api import Spool
from pigeon.queue.model import Envelope

__all__ = ["ConnectionContext", "NO_METRICS", "ReceiveServices", "StoreForIntake"]


class _NoMetrics:
    """Stands in when no metrics are collected (unit tests, tools)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


NO_METRICS: Any = _NoMetrics()


class _Health(Protocol):
    def failed(self, exc: BaseException) -> object: ...


class _Space(Protocol):
    def consumed(self, octets: int) -> None: ...


class StoreForIntake(Protocol):
    """The queue as the SMTP side uses it (`pigeon.queue.api.Intake`, plus the
    storage health it reports write faults to and the reserve it charges)."""

    @property
    def health(self) -> _Health: ...

    @property
    def space(self) -> _Space: ...

    def new_spool(self, envelope: Envelope | None = None) -> Spool: ...

    def commit_async(
        self, spool: Any, envelope: Envelope, *, hold: bool = False
    ) -> concurrent.futures.Future[None]: ...


@dataclass(frozen=True)
class ReceiveServices:
    """Shared by every connection of a server (module contract)."""

    store: StoreForIntake
    pipeline: ReceivePipeline
    maillog: Any  # pigeon.obs.maillog.MailLog
    on_queued: Callable[[Envelope], None]
    #: Told of every message once it is durable (net/intake.py): the webhooks'
    #: "received" (pigeon/webhooks/service.py), or None (no cost).
    on_received: Callable[[Envelope], None] | None = None
    logins: Logins | None = None
    tls: Any = None  # pigeon.net.tls.TlsProvider (its .context) | None
    metrics: Any = NO_METRICS  # pigeon.obs.metrics.Metrics
    on_etrn: Callable[[str], Awaitable[int]] | None = None
    #: Local delivery at the accept (qmgr/direct.py `DirectDelivery`), or None.
    direct: Any = None
    #: DKIM signing of our users' mail (net/signmail.py `OutboundSigning`), or None.
    signing: Any = None
    #: Which mail is captured instead of delivered (policy/capture.py, docs/capture.md).
    capture: CaptureRules = CaptureRules.NONE
    greet_pause: float = 0.0
    postscreen: PostscreenConfig = PostscreenConfig()  # port 25 tests (net/postscreen.py)
    handshake_timeout: float = 30.0
    clock: Callable[[], float] = time.monotonic
    wallclock: Callable[[], float] = time.time


@dataclass(frozen=True)
class ConnectionContext:
    """One connection's configuration (module contract)."""

    services: ReceiveServices
    session_config: SessionConfig
    role: str = "smtp"

    @property
    def implicit_tls(self) -> bool:
        """RFC 8314: the submissions role begins with the TLS handshake."""
        return self.role == "submissions"

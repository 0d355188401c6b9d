"""The mail-log lines of one SMTP session: rejections and abnormal ends.

Contract:
  * `SessionLog.reject(stage, reply, address, ...)` writes one Postfix-form
    reject line (obs.maillog) and counts the rejection in the metrics. The
    fields keep Postfix's meanings: `address` is what the refused command
    named, the sender at MAIL (`from=`, no `to=`), the recipient at RCPT
    (`to=`, with the transaction's sender as `from=`). At END-OF-MESSAGE
    the caller passes the transaction's `sender` and `recipients` (`to=`
    only for exactly one, as Postfix does).
  * `session_end(reason)` writes Postfix's line for a session that did not
    end with QUIT (timeout, lost connection, too many errors, pregreet).
  * `IntakeSession` is what this log and `net.intake` read of the sans-IO
    session; the HTTP API's submission (net/apisession.py) gives the same.
  * It reads the sans-IO session for the protocol stage, the HELO name and
    ESMTP; it decides nothing.
"""

from __future__ import annotations

from typing import Any, Protocol

from pigeon.proto import reply as R
from pigeon.proto.server import ServerSession


class IntakeSession(Protocol):
    """What the intake reads of the sans-IO session (`ServerSession` has it;
    the HTTP API's submission, net/apisession.py, gives the same facts)."""

    @property
    def config(self) -> Any: ...  # hostname, max_header_size
    @property
    def sender(self) -> Any: ...  # Address | None
    @property
    def recipients(self) -> Any: ...  # [(Address, RcptParams)]
    @property
    def mail_params(self) -> Any: ...
    @property
    def helo_name(self) -> str | None: ...
    @property
    def esmtp(self) -> bool: ...
    @property
    def tls(self) -> Any: ...
    @property
    def auth_user(self) -> str | None: ...
    @property
    def where(self) -> str: ...


class SessionLog:
    """Reject and session-end lines of one connection (module contract)."""

    __slots__ = ("maillog", "metrics", "client_ip", "session")

    def __init__(
        self, maillog: Any, metrics: Any, client_ip: str, session: ServerSession | IntakeSession
    ) -> None:
        self.maillog = maillog
        self.metrics = metrics
        self.client_ip = client_ip
        self.session = session

    def reject(
        self,
        stage: str,
        verdict: R.Reply,
        address: str | None,
        *,
        queue_id: str | None = None,
        sender: str | None = None,
        recipients: list[str] | None = None,
    ) -> None:
        self.metrics.rejected(verdict.code)
        session = self.session
        recipient = None
        if stage == "MAIL":
            sender = address or ""
        elif stage == "RCPT":
            sender = str(session.sender) if session.sender is not None else ""
            recipient = address
        elif recipients is not None and len(recipients) == 1:
            recipient = recipients[0]
        self.maillog.reject(
            queue_id,
            stage,
            self.client_ip,
            verdict,
            sender=sender,
            recipient=recipient,
            proto="ESMTP" if session.esmtp else "SMTP",
            helo=session.helo_name,
        )

    def session_end(self, reason: str) -> None:
        where = self.session.where
        if reason == "pregreet":
            self.reject("CONNECT", R.PREGREET, None)
        elif reason in ("timeout", "too many errors", "too many junk commands"):
            self.maillog.session_end(reason, where, None, self.client_ip)
        elif reason == "client closed the connection":
            self.maillog.session_end("lost connection", where, None, self.client_ip)

"""Mail sent through the HTTP API (POST /api/send), queued as local submission is.

Contract:
  * `ApiSubmitter.send(message, sender=, recipients=, extract=, via=)`
    queues one message and returns its envelope once it is durable (the
    same spool, DKIM signing, group commit and fsync as `sendmail` and
    SMTP mail: admin/localsubmit.py `spool_message`, admin/submitsock.py
    `commit_submitted`), after which the queue manager has it. The 202 of
    the API is sent only after this returns (CONTRIBUTING.md, rule 9).
  * The checks, each a `SubmitError` with a sysexits code the API maps to
    a status: the size against `limits.message_size` (EX_DATAERR), every
    address an RFC 5321 path (EX_NOUSER), at least one recipient and at
    most `limits.recipients` (EX_USAGE), the envelope sender (the given
    one, else the message's From:) at one of our local domains
    (EX_NOPERM: a token is not an account, so it may send as any address
    of ours, none other), a store that fails (EX_TEMPFAIL). The message is
    fixed up as local submission does (`localsubmit.prepare`: CRLF, Date,
    Message-ID; with `extract`, the recipients from To/Cc/Bcc and Bcc
    removed).
  * Its Received: field says "from HTTP API (token NAME)"; the mail log's
    "(queued)" line names the token (`via`).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pigeon.admin import localsubmit as L
from pigeon.admin.submitsock import commit_submitted
from pigeon.policy.capture import CaptureRules
from pigeon.queue.model import Envelope

__all__ = ["ApiSubmitter"]


class ApiSubmitter:
    def __init__(
        self,
        *,
        config: Any,
        store: Any,
        on_queued: Callable[[Any], None],
        maillog: Any = None,
        signer: Callable[[], Any] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from pigeon.routing.resolve import Router

        self.config = config
        self.store = store
        self.on_queued = on_queued
        self.maillog = maillog
        self.signer = signer
        self.clock = clock
        self.router = Router(config)

    async def send(
        self, message: bytes, *, sender: str | None, recipients: list[str], extract: bool, via: str
    ) -> Envelope:
        spool, env = await asyncio.to_thread(self._spool, message, sender, recipients, extract, via)
        await commit_submitted(
            self.store,
            spool,
            env,
            maillog=self.maillog,
            on_queued=self.on_queued,
            who={"token": via},
            capture=CaptureRules.of(self.config),  # a capture domain (docs/capture.md)
        )
        return env

    def _spool(
        self, message: bytes, sender: str | None, recipients: list[str], extract: bool, via: str
    ) -> tuple[Any, Envelope]:
        cfg = self.config
        domain = self.router.primary_domain
        limit = cfg.limits.message_size
        if limit and len(message) > limit:
            raise L.SubmitError(
                f"message too big: {len(message)} octets, the limit is {limit}", L.EX_DATAERR
            )
        if sender is None:
            fields, _, _ = L.split_message(L.to_crlf(message))
            values = [L._value(f) for f in fields if L._name(f) == "from"]  # unfolded
            found = [addr for _, addr in email.utils.getaddresses(values) if addr]
            if not found:
                raise L.SubmitError("from: no sender given and no From: in the message", L.EX_USAGE)
            sender = found[0]
        sender = L.normalize_address(sender, domain)
        if not self.router.is_local_domain(sender.rpartition("@")[2]):
            raise L.SubmitError(
                f"from: {sender} is not at one of this server's domains", L.EX_NOPERM
            )
        prepared = L.prepare(
            message,
            recipients=recipients,
            extract=extract,
            sender=sender,
            fullname="",
            hostname=cfg.hostname,
            domain=domain,
        )
        if len(prepared.recipients) > cfg.limits.recipients:
            raise L.SubmitError(
                f"too many recipients: {len(prepared.recipients)}, the limit is "
                f"{cfg.limits.recipients}",
                L.EX_USAGE,
            )
        now = self.clock()

        def trace(queue_id: str) -> bytes:
            date = email.utils.format_datetime(datetime.fromtimestamp(now, UTC))
            return (
                f"Received: from HTTP API (token {via})\r\n\tby {cfg.hostname} (pigeon) "
                f"with HTTP id {queue_id};\r\n\t{date}\r\n"
            ).encode()

        return L.spool_message(
            self.store,
            prepared,
            sender=sender,
            hostname=cfg.hostname,
            uid=-1,
            now=now,
            max_size=limit,
            signer=self.signer(),
            trace=trace,
            protocol="http",
        )

"""Mail sent through the HTTP API (POST /api/send): who a token sends as, and how it is queued.

Contract:
  * `ApiSubmitter.send(message, sender=, recipients=, extract=, via=,
    account=, client=)` queues one message and returns its envelope (queue
    ID, sender, recipients) once it is durable; the 202 of the API is sent
    only after this returns (CONTRIBUTING.md, rule 9). The message is
    fixed up as local submission does first (`localsubmit.prepare`: CRLF,
    Date, Message-ID; with `extract`, the recipients from To/Cc/Bcc and
    Bcc removed); the envelope sender is the given one, else the
    message's first From: address. Every address must be an RFC 5321
    path (EX_NOUSER), and one recipient at least is needed (EX_USAGE).
  * A token bound to an account (`account`, web/tokens.py; docs/api.md
    "Who a token sends as") is that account logged in on the submission
    port: the message goes through the receive pipeline as SMTP
    submission's does (net/apisession.py `submit_message`, with the
    submission role's settings in force: rate limits, sender and From:
    ownership, relay and recipient checks, milters, plugins, size and
    content limits, the Received: field, DKIM signing, capture, commit).
    A refusal is `net.apisession.Refused`, carrying the SMTP reply. An
    account that no longer exists is EX_NOPERM; accounts.db failing,
    EX_TEMPFAIL.
  * A token without an account is local submission by an administrator,
    as `sendmail` is (Postfix's pickup path: no smtpd restrictions): the
    envelope sender must be at one of our local domains (EX_NOPERM), the
    size within `limits.message_size` (EX_DATAERR), at most
    `limits.recipients` recipients (EX_USAGE); then the same spool, DKIM
    signing, group commit and fsync as `sendmail` (admin/localsubmit.py
    `spool_message`, admin/submitsock.py `commit_submitted`); the capture
    rules apply; a store that fails is EX_TEMPFAIL. Its Received: field
    says "from HTTP API (token NAME)"; the mail log's "(queued)" line
    names the token (`via`).
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
from pigeon.auth.service import AuthUnavailable
from pigeon.net.apisession import PROTOCOL, submit_message
from pigeon.policy.capture import CaptureRules
from pigeon.queue.model import Envelope, Recipient
from pigeon.vocab.address import Address, PathError, parse_path

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
        auth: Any = None,  # pigeon.auth.service.AuthService: the tokens' accounts
        submission: Callable[[], Any] | None = None,  # the submission ConnectionContext now
        metrics: Any = None,  # obs/metrics.py Metrics: local submissions counted as SMTP mail
    ) -> None:
        from pigeon.routing.resolve import Router

        self.config = config
        self.store = store
        self.on_queued = on_queued
        self.maillog = maillog
        self.signer = signer
        self.clock = clock
        self.auth = auth
        self.submission = submission
        self.metrics = metrics
        self.router = Router(config)

    async def send(
        self,
        message: bytes,
        *,
        sender: str | None,
        recipients: list[str],
        extract: bool,
        via: str,
        account: str | None = None,
        client: tuple[str, int] = ("", 0),
    ) -> Envelope:
        if account is not None:
            prepared, envelope_from = self._prepare(message, sender, recipients, extract)
            return await self._as_account(prepared, envelope_from, via, account, client)
        spool, env = await asyncio.to_thread(self._spool, message, sender, recipients, extract, via)
        await commit_submitted(
            self.store,
            spool,
            env,
            maillog=self.maillog,
            on_queued=self.on_queued,
            who={"token": via},
            capture=CaptureRules.of(self.config),  # a capture domain (docs/capture.md)
            metrics=self.metrics,
        )
        return env

    # -- a token bound to an account: SMTP submission's pipeline ----------------

    async def _as_account(
        self, prepared: L.Prepared, envelope_from: str, via: str, name: str, client: tuple[str, int]
    ) -> Envelope:
        if self.auth is None or self.submission is None:
            raise L.SubmitError("accounts are not available in this process", L.EX_TEMPFAIL)
        try:
            account = await self.auth.run(self.auth.account, name)
        except AuthUnavailable:
            raise L.SubmitError("the accounts cannot be read now", L.EX_TEMPFAIL) from None
        if account is None:
            raise L.SubmitError(
                f"the token's account {name} does not exist (pigeon user list)", L.EX_NOPERM
            )
        queue_id = await submit_message(
            self.submission(),
            L.message_bytes(prepared),
            sender=_path(envelope_from),
            recipients=[_path(r) for r in prepared.recipients],
            user=account.name,
            owned=frozenset(account.addresses),
            client=client,
            helo=via,
        )
        return Envelope(
            queue_id,
            envelope_from,
            [Recipient(r) for r in prepared.recipients],
            protocol=PROTOCOL,
        )

    # -- shared -------------------------------------------------------------------

    def _prepare(
        self, message: bytes, sender: str | None, recipients: list[str], extract: bool
    ) -> tuple[L.Prepared, str]:
        """The message fixed up as local submission does, and its envelope sender."""
        domain = self.router.primary_domain
        if sender is None:
            fields, _, _ = L.split_message(L.to_crlf(message))
            values = [L._value(f) for f in fields if L._name(f) == "from"]  # unfolded
            found = [addr for _, addr in email.utils.getaddresses(values) if addr]
            if not found:
                raise L.SubmitError("from: no sender given and no From: in the message", L.EX_USAGE)
            sender = found[0]
        sender = L.normalize_address(sender, domain)
        prepared = L.prepare(
            message,
            recipients=recipients,
            extract=extract,
            sender=sender,
            fullname="",
            hostname=self.config.hostname,
            domain=domain,
        )
        return prepared, sender

    # -- a token without an account: local submission ------------------------------

    def _spool(
        self, message: bytes, sender: str | None, recipients: list[str], extract: bool, via: str
    ) -> tuple[Any, Envelope]:
        cfg = self.config
        limit = cfg.limits.message_size
        if limit and len(message) > limit:
            raise L.SubmitError(
                f"message too big: {len(message)} octets, the limit is {limit}", L.EX_DATAERR
            )
        prepared, sender = self._prepare(message, sender, recipients, extract)
        if not self.router.is_local_domain(sender.rpartition("@")[2]):
            raise L.SubmitError(
                f"from: {sender} is not at one of this server's domains", L.EX_NOPERM
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


def _path(address: str) -> Address:
    """A queue address (localsubmit.normalize_address checked it) as the pipeline's Address."""
    try:
        parsed = parse_path(f"<{address}>", allow_null=False, smtputf8=True)
    except PathError as exc:  # normalize_address accepted it: not expected
        raise L.SubmitError(f"{address}: bad address ({exc})", L.EX_NOUSER) from None
    assert parsed is not None
    return parsed

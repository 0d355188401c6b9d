"""A message from the HTTP API through the receive pipeline, as SMTP submission brings it.

POST /api/send with a token bound to an account (docs/api.md, "Sending")
is an authenticated submission session in one step: the same stages in
the same order as `net.smtpd` asks them for a client on the submission
port that logged in as that account, the same content checks as the
SMTP session's DATA reader, and the same spool, end-of-data effects,
DKIM signing and commit (`net.intake.MessageIntake`).

Contract:
  * `submit_message(context, message, ...)` takes the submission role's
    `ConnectionContext` in force (net/smtp_service.py `SmtpService.context`:
    after a reload, the new pipeline), the message (CRLF line endings, as
    it is to be queued), the envelope as parsed `Address`es, the account
    (`user`, `owned`: its addresses, lowercased) and the HTTP client's
    address. It runs: connect, helo (`helo`: the token's name), auth (the
    account; its refusal is the answer), mail (SIZE= the message's size,
    BODY=8BITMIME / SMTPUTF8 as the content needs, as a client would
    declare them), rcpt for each recipient in order, the protocol's
    recipient bound (`limits.recipients`: 452 4.5.3), data, the content
    checks of DATA (`proto.content.scanner_for`: line length, NUL, size,
    header size, hop count), then the intake's end of data (end-of-data
    checks, milters and plugins, their edits, DKIM signing, commit).
  * All or nothing: the first refusal ends the submission, nothing is
    queued, and it is raised as `Refused(stage, reply, address)` with the
    stage as Postfix logs it (CONNECT, AUTH, MAIL, RCPT, DATA,
    END-OF-MESSAGE). Refusals held at connect or helo are answered at the
    first RCPT (policy/pipeline.py, smtpd_delay_reject), as for SMTP. The
    rejections are logged in the mail log as the SMTP session logs them.
  * Returns the queue ID once the message is durable (or delivered at the
    accept, or discarded by a check: the ID a 250 would name): rule 9. A
    store failure is a `Refused` with the intake's 451/452.
  * The connection's checks are told it ended (`disconnect`: a milter's
    socket is closed) and the spool is discarded on every way out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pigeon.net.intake import MessageIntake
from pigeon.net.services import ConnectionContext
from pigeon.net.sessionlog import SessionLog
from pigeon.policy.api import Verdict
from pigeon.policy.pipeline import StageAnswer
from pigeon.proto import reply as R
from pigeon.proto.content import scanner_for
from pigeon.proto.events import DataFinished
from pigeon.proto.params import MailParams, RcptParams
from pigeon.proto.reply import Reply
from pigeon.vocab.address import Address

__all__ = ["PROTOCOL", "Refused", "submit_message"]

log = logging.getLogger("pigeon.smtpd")

#: The Received: field's and the envelope's protocol (the mail log's proto=).
PROTOCOL = "HTTP"


class Refused(Exception):
    """A stage refused the message (module contract)."""

    def __init__(self, stage: str, reply: Reply, address: str | None = None) -> None:
        super().__init__(f"{stage}: {reply.code} {reply.enhanced or ''} {' '.join(reply.lines)}")
        self.stage = stage
        self.reply = reply
        self.address = address


@dataclass
class _Transaction:
    """The facts `MessageIntake` and `SessionLog` read of an SMTP session
    (net/sessionlog.py `IntakeSession`), for the one transaction of a request."""

    config: Any  # the submission role's SessionConfig
    helo_name: str
    auth_user: str | None
    esmtp: bool = True
    tls: Any = None  # the HTTP listener's TLS is not the message's: none is claimed
    sender: Address | None = None
    mail_params: MailParams | None = None
    recipients: list[tuple[Address, RcptParams]] = field(default_factory=list)
    where: str = "CONNECT"


async def _answer(answer: StageAnswer) -> Verdict:
    return answer if isinstance(answer, Verdict) else await answer


async def submit_message(
    context: ConnectionContext,
    message: bytes,
    *,
    sender: Address | None,
    recipients: list[Address],
    user: str,
    owned: frozenset[str],
    client: tuple[str, int],
    helo: str,
) -> str:
    """Queue `message` as a submission session of `user` would (module contract)."""
    services, cfg = context.services, context.session_config
    client_ip, client_port = client
    eight_bit = not message.isascii()
    utf8 = any(a is not None and a.needs_smtputf8 for a in (sender, *recipients))
    params = MailParams(size=len(message), body="8BITMIME" if eight_bit else None, smtputf8=utf8)
    tx = _Transaction(cfg, helo, user)
    policy = services.pipeline.session(client_ip, client_port, context.role)
    journal = SessionLog(services.maillog, services.metrics, client_ip, tx)
    intake = MessageIntake(services, tx, policy, journal, client_port, protocol=PROTOCOL)

    def refuse(stage: str, reply: Reply, address: str | None = None) -> Refused:
        tx.where = stage
        if stage in ("MAIL", "RCPT"):
            journal.reject(stage, reply, address)
        elif stage != "END-OF-MESSAGE":  # the intake logged its own
            journal.reject(stage, reply, None, sender=str(sender or ""))
        log.info("[%s]: HTTP API message of %s refused at %s: %s", client_ip, user, stage, reply)
        return Refused(stage, reply, address)

    try:
        refusal = (await _answer(policy.connect())).reply
        if refusal is not None:
            raise refuse("CONNECT", refusal)
        await _answer(policy.helo(helo, True))  # a refusal is held for RCPT
        tx.where = "AUTH"
        refusal = (await _answer(policy.auth(user, owned))).reply
        if refusal is not None:
            raise refuse("AUTH", refusal)
        policy.authenticated()
        tx.where = "MAIL"
        refusal = (await _answer(policy.mail(sender, params))).reply
        if refusal is not None:
            raise refuse("MAIL", refusal, str(sender or ""))
        tx.sender, tx.mail_params = sender, params
        tx.where = "RCPT"
        for rcpt in recipients:
            if len(tx.recipients) >= cfg.max_recipients:  # RFC 5321 §4.5.3.1.8
                raise refuse("RCPT", R.TOO_MANY_RECIPIENTS, str(rcpt))
            refusal = (await _answer(policy.rcpt(rcpt, RcptParams()))).reply
            if refusal is not None:
                raise refuse("RCPT", refusal, str(rcpt))
            tx.recipients.append((rcpt, RcptParams()))
        tx.where = "DATA"
        refusal = await intake.open()
        if refusal is not None:
            raise Refused("DATA", refusal)  # logged by the intake
        # The checks the DATA reader makes as content streams (proto/content.py).
        scanner = scanner_for(cfg, params)
        if not (scanner.feed(message) and scanner.finish()):
            raise refuse("DATA", R.BARE_NEWLINE)
        if scanner.failure is not None:
            tx.where = "END-OF-MESSAGE"
            intake.refused(scanner.failure)
            raise refuse("END-OF-MESSAGE", scanner.failure)
        intake.write(message)
        tx.where = "END-OF-MESSAGE"
        done = DataFinished(
            size=len(message), eight_bit=scanner.eight_bit, received_headers=scanner.received
        )
        answer = await intake.finish(done)
        if not answer.positive:
            raise refuse("END-OF-MESSAGE", answer)
        return intake.queue_id
    finally:
        intake.discard()
        policy.disconnect()  # a milter's socket closes with the "connection"

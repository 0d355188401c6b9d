"""One connection's messages on their way into the queue: spool, last checks, commit.

Contract:
  * `MessageIntake.open()` (DataStarted) asks the pipeline's data stage,
    then opens a spool (`store.new_spool()`: allocates the queue ID, no
    system call) with the envelope as known now (the recipients as the
    pipeline will queue them: each once), and writes our Received: field
    first. A refusal of the data stage is logged as a DATA reject and
    returned; a spool that cannot be made is 452 4.3.1 (disk full) or
    451 4.3.0.
  * `write()` appends content. A write error does not stop the protocol
    (the client's data must still be read to stay in step): it is kept and
    answered 452/451 at the end instead of 250; a storage fault is reported
    to the store's health (logged once per episode, queue/health.py).
  * `finish()` (DataFinished) asks the pipeline's end_of_data stage with a
    view of the spool (`policy.message.SpoolMessage`: the header section
    read back, the body as a stream, no second copy of the body). A refusal
    discards the spool (a 5xx is logged as a rejection). A discard (a
    check's, or a milter's SMFIR_DISCARD) answers 250 with the queue ID,
    drops the spool and logs a "discard" line with the reason: nothing is
    queued (Postfix's DISCARD). Otherwise the verdict's header fields to
    remove are removed from the client's header section (net/respool.py:
    the spool written again, its queue ID new), its header edits or new
    body rewrite the content (`policy.edits`), its header fields are
    prepended (above Received:), the DKIM signatures of our users' mail
    are made over that result and prepended below them (`services.signing`,
    net/signmail.py; a failure is 451 4.3.0), its new sender replaces the envelope's,
    its recipient list replaces the envelope's, each recipient gets the
    transport chosen for it at RCPT, or else for the message
    (`Recipient.route`, honoured by the queue manager's dispatch), and the
    spool is committed, on hold when the verdict quarantines it.
  * Rule 1 (promise 1, CONTRIBUTING.md rule 9): the 250 `finish()` returns
    is only made once `store.commit_async()` resolved, i.e. content,
    directory entry and envelope are fsync'ed. Any failure before that is a
    4xx (452 4.3.1 when the disk is full), never a 250.
  * Local delivery at the accept (`services.direct`, qmgr/direct.py): a
    message not on hold whose content is whole in memory is first offered
    to it. Delivered in full: the 250 follows the fsync of every Maildir
    copy, the "queued" line and the copies' lines are written, the spool
    is discarded and nothing is queued. Delivered in part: the envelope,
    with those recipients final, is committed as below and their lines
    follow the "queued" line. Not taken: the commit as below.
  * After the commit: the reserve is charged (`store.space.consumed`), the
    "queued" line written, `on_received` told (the webhooks; also for a
    message delivered in full at the accept or put on hold), and the
    envelope handed to the queue manager
    (`on_queued`) unless it is quarantined (it then waits on hold for an
    operator: `pigeon queue release`).
  * Capture mode (policy/capture.py, docs/capture.md): a message the
    capture rules mark (and no check quarantined: that one is held) gets `Envelope.capture` (its tenant), skips local
    delivery at the accept, and is committed in state 'capture' with the
    same durability as any 250; it is logged "captured" and never handed
    to the queue manager, which never schedules that state.
  * A spool ends exactly one way: committed or `discard()`ed (idempotent).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any

from pigeon.net.respool import respool
from pigeon.net.services import ReceiveServices
from pigeon.net.sessionlog import IntakeSession, SessionLog
from pigeon.net.signmail import SigningFailed
from pigeon.policy.api import Verdict
from pigeon.policy.edits import apply_content_changes
from pigeon.policy.message import SpoolMessage
from pigeon.policy.pipeline import ReceiveSession
from pigeon.proto import reply as R
from pigeon.proto.events import DataFinished
from pigeon.proto.params import MailParams
from pigeon.proto.server import ServerSession
from pigeon.queue.health import is_storage_fault
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.trace import received_header, transmission_type
from pigeon.vocab.errors import StoreError

log = logging.getLogger("pigeon.smtpd")


class _NotTaken:
    """The outcome of a message local delivery at the accept did not take."""

    done = False
    logs: tuple[()] = ()


_NOT_TAKEN = _NotTaken()


class MessageIntake:
    """The spool of the transaction in progress, if any (module contract)."""

    __slots__ = (
        "services",
        "session",
        "policy",
        "log",
        "client_ip",
        "client_port",
        "messages",
        "_spool",
        "_spool_error",
        "_received_len",
        "_transaction",
        "local",
        "protocol",
        "queue_id",
    )

    def __init__(
        self,
        services: ReceiveServices,
        session: ServerSession | IntakeSession,
        policy: ReceiveSession,
        log_: SessionLog,
        client_port: int,
        *,
        protocol: str = "",
    ) -> None:
        self.services = services
        self.session = session
        self.policy = policy
        self.log = log_
        self.client_ip = log_.client_ip
        self.client_port = client_port
        self.messages = 0
        self._spool: Any = None
        self._spool_error: OSError | StoreError | None = None
        self._received_len = 0
        # Kept for the log: the session forgets the transaction when it refuses the content.
        self._transaction: tuple[str, list[str]] = ("", [])
        #: The connection's local (address, port): for capture listeners.
        self.local: Any = None
        #: The Received: and envelope protocol; "" for SMTP's (RFC 3848 types).
        self.protocol = protocol
        #: The queue ID of the last message answered 250 (queued, delivered or discarded).
        self.queue_id = ""

    async def open(self) -> R.Reply | None:
        self.discard()
        session, services = self.session, self.services
        sender = str(session.sender) if session.sender is not None else ""
        verdict = self.policy.data()
        if not isinstance(verdict, Verdict):
            verdict = await verdict
        if verdict.reply is not None:
            recipients = [str(a) for a, _ in session.recipients]
            self.log.reject("DATA", verdict.reply, None, sender=sender, recipients=recipients)
            return verdict.reply
        protocol = self._protocol()
        # The envelope as known now (the RCPTs are done): a spool that spills
        # to disk writes it into its file, so the queue can be rebuilt from
        # the files (pigeon/msgfile.py). finish() completes this object.
        envelope = Envelope(
            queue_id="",
            sender=sender,
            recipients=[Recipient(str(a), p) for a, p in self.policy.facts.recipients],
            params=session.mail_params or MailParams(),
            received_at=services.wallclock(),
            client_address=self.client_ip,
            client_helo=session.helo_name or "",
            protocol=protocol,
        )
        try:
            spool = services.store.new_spool(envelope)
        except Exception as exc:  # OSError or StoreError: answer 452/451, never a traceback
            log.error("cannot create spool file: %s", exc)
            return R.INSUFFICIENT_STORAGE if _is_disk_full(exc) else R.LOCAL_ERROR
        self._spool, self._spool_error = spool, None
        self._transaction = (sender, [str(a) for a, _ in session.recipients])
        received = received_header(
            helo=session.helo_name or "",
            client_ip=self.client_ip,
            hostname=session.config.hostname,
            protocol=protocol,
            queue_id=spool.queue_id,
            tls=session.tls,
            recipients=[r.address for r in envelope.recipients],
            timestamp=services.wallclock(),
        )
        self._received_len = len(received)
        self.write(received)
        return None

    def write(self, data: bytes) -> None:
        if self._spool is None or self._spool_error is not None:
            return
        try:
            self._spool.write(data)
        except (OSError, StoreError) as exc:
            # SpoolFile.write raises StoreError (.disk_full on ENOSPC). Keep
            # reading the client's data and answer 452/451 at the end.
            self._spool_error = exc
            if is_storage_fault(exc):
                self.services.store.health.failed(exc)  # logged once per episode
            else:
                log.error("spool write failed for %s: %s", self._spool.queue_id, exc)

    def discard(self) -> None:
        if self._spool is not None:
            try:
                self._spool.discard()
            except OSError as exc:
                log.warning("discarding spool %s: %s", self._spool.queue_id, exc)
            self._spool = None

    def refused(self, reply: R.Reply) -> None:
        """Log a refused message (at the end of the data, or mid-data for a bare LF)."""
        sender, recipients = self._transaction
        queue_id = self._spool.queue_id if self._spool is not None else None
        self.log.reject(
            self.session.where, reply, None, queue_id=queue_id, sender=sender, recipients=recipients
        )

    async def finish(self, event: DataFinished) -> R.Reply:
        spool, services = self._spool, self.services
        if spool is None:
            return R.LOCAL_ERROR
        if self._spool_error is not None:
            refusal = R.INSUFFICIENT_STORAGE if _is_disk_full(self._spool_error) else R.LOCAL_ERROR
            self.discard()
            log.info("[%s]: message refused: %s", self.client_ip, refusal)
            return refusal
        # The whole header section: ours, then the client's, which the
        # session bounded by limits.header_size (+ the empty line).
        limit = self._received_len + (self.session.config.max_header_size or spool.size) + 2
        message = SpoolMessage(spool, header_limit=limit, eight_bit=event.eight_bit)
        verdict = self.policy.end_of_data(message)
        if not isinstance(verdict, Verdict):
            verdict = await verdict
        if verdict.reply is not None:
            if verdict.reply.permanent:
                self.refused(verdict.reply)
            else:
                log.info("[%s]: message refused: %s", self.client_ip, verdict.reply)
            self.discard()
            return verdict.reply
        if verdict.discard is not None:
            return self._discarded(verdict.discard)
        if verdict.remove_headers:
            try:
                spool = respool(
                    services.store.new_spool,
                    spool,
                    verdict.remove_headers,
                    self._received_len,
                    limit,
                )
            except (OSError, StoreError) as exc:
                log.error("cannot remove header fields from %s: %s", spool.queue_id, exc)
                self.discard()
                return R.INSUFFICIENT_STORAGE if _is_disk_full(exc) else R.LOCAL_ERROR
            self._spool = spool
            if verdict.header_edits or verdict.body is not None:
                # The content changes read the header section again: of the new spool.
                message = SpoolMessage(
                    spool, header_limit=self._received_len + limit + 2, eight_bit=event.eight_bit
                )
        envelope = spool.envelope  # made by open(), now final
        try:
            replaced = apply_content_changes(spool, message, verdict)  # before the prepends
        except (OSError, StoreError) as exc:
            log.error("changing the content of %s failed: %s", spool.queue_id, exc)
            self.discard()
            return R.LOCAL_ERROR
        if verdict.sender is not None:
            new = verdict.sender.address
            envelope.sender = str(new) if new is not None else ""
            if verdict.sender.params is not None:
                envelope.params = verdict.sender.params
        if verdict.recipients is not None:
            envelope.recipients = [Recipient(str(a), p) for a, p in verdict.recipients]
        if verdict.transport is not None or self.policy.routes:
            routes = self.policy.routes
            for rcpt in envelope.recipients:
                rcpt.route = routes.get(rcpt.address) or verdict.transport or ""
        prepended = [header.to_bytes() for header in verdict.headers]
        for field in prepended:
            spool.prepend(field)  # above our Received:
        signing = services.signing
        if signing is not None and signing.applies(self.policy.facts):
            # Last, over the message as it will be stored (net/signmail.py).
            try:
                signatures = await signing.signatures(spool, prepended, replaced)
            except SigningFailed as exc:
                log.error("%s", exc)
                self.discard()
                return R.LOCAL_ERROR
            for field in signatures:
                spool.prepend(field)
        envelope.received_at, envelope.size = services.wallclock(), spool.size
        envelope.eight_bit = event.eight_bit
        hold = verdict.quarantine is not None
        # A quarantine wins: held for an operator, not captured for a tenant to release.
        envelope.capture = "" if hold else self._capture_tenant(envelope)
        self._spool = None  # the store owns it from here on
        direct = services.direct
        outcome, nrcpt = None, len(envelope.recipients)  # as received, before aliases
        if direct is not None and not hold and not envelope.capture:
            content = spool.memory_content()
            if content is not None:
                # Shielded like the commit below: a session cut off at the
                # stop stops waiting, the copies and their log lines go on.
                outcome = await asyncio.shield(self._deliver_now(direct, spool, envelope, content))
                if outcome.done:
                    return R.queued(envelope.queue_id)
        try:
            # Shielded: a session cut off at the stop (net/smtpd.py Rule 6)
            # stops waiting, but never cancels the committer's future.
            commit = services.store.commit_async(spool, envelope, hold=hold)
            await asyncio.shield(asyncio.wrap_future(commit))
        except Exception as exc:  # StoreError and anything else: not durable -> 4xx
            refusal = R.INSUFFICIENT_STORAGE if getattr(exc, "disk_full", False) else R.LOCAL_ERROR
            if is_storage_fault(exc):
                # The committer logged the fault once for the episode.
                log.info("[%s]: message refused: %s", self.client_ip, refusal)
            else:
                log.error("commit of %s failed: %s", envelope.queue_id, exc)
            try:
                spool.discard()
            except OSError:
                pass
            return refusal
        self._queued(envelope, nrcpt, verdict.quarantine, outcome)
        return R.queued(envelope.queue_id)

    def _discarded(self, reason: str) -> R.Reply:
        """Accepted and dropped (Postfix DISCARD): 250, nothing queued, logged."""
        queue_id = self._spool.queue_id if self._spool is not None else ""
        sender, recipients = self._transaction
        self.discard()
        self.queue_id = queue_id
        self.services.maillog.log(
            queue_id,
            {"from": sender, "to": ",".join(recipients), "reason": reason},
            "discard",
        )
        return R.queued(queue_id)

    async def _deliver_now(self, direct: Any, spool: Any, envelope: Envelope, content: Any) -> Any:
        """Local delivery at the accept (qmgr/direct.py): its outcome, whose
        `done` means delivered, logged and the spool discarded; else the
        queue commit follows. A message the path does not take is an
        outcome that is not done with nothing to log."""
        nrcpt = len(envelope.recipients)  # as received: the path expands aliases
        outcome = await direct.deliver(envelope, content)
        if outcome is None:
            return _NOT_TAKEN
        if outcome.done:
            spool.discard()  # the copies are durable: no queue entry
            self._queued(envelope, nrcpt, None, outcome)
        return outcome

    def _queued(
        self, envelope: Envelope, nrcpt: int, quarantine: str | None, direct: Any = None
    ) -> None:
        services = self.services
        self.messages += 1
        self.queue_id = envelope.queue_id
        services.store.space.consumed(envelope.size)
        services.metrics.message_accepted(envelope.size)
        services.maillog.log(
            envelope.queue_id,
            {
                "client": f"[{self.client_ip}]:{self.client_port}",
                "helo": envelope.client_helo,
                "from": envelope.sender,
                "size": envelope.size,
                "nrcpt": nrcpt,
                "proto": envelope.protocol,
            },
            "queued",
        )
        if services.on_received is not None:  # durable now: the webhooks' "received"
            services.on_received(envelope)
        if envelope.capture:
            # Capture mode: kept in 'capture', never handed to the manager.
            services.maillog.log(envelope.queue_id, {"tenant": envelope.capture}, "captured")
            return
        if quarantine is not None:
            # Postfix's HOLD action: accepted, kept until an operator releases it.
            services.maillog.log(envelope.queue_id, {"reason": quarantine}, "hold")
            return
        if direct is not None and direct.logs:
            services.direct.record(direct)  # the copies written at the accept
            if direct.done:
                return
        services.on_queued(envelope)

    def _capture_tenant(self, envelope: Envelope) -> str:
        """The capture tenant of this message, "" when it is not captured."""
        local = self.local if isinstance(self.local, tuple) and len(self.local) >= 2 else None
        tenant = self.services.capture.tenant(
            user=self.session.auth_user,
            local=local,
            recipients=(r.address for r in envelope.recipients),
        )
        return tenant or ""

    def _protocol(self) -> str:
        if self.protocol:
            return self.protocol
        session = self.session
        params = session.mail_params
        return transmission_type(
            session.esmtp,
            bool(params and params.smtputf8),
            tls=session.tls is not None,
            auth=session.auth_user is not None,
        )


def _is_disk_full(exc: BaseException) -> bool:
    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or getattr(
        exc, "disk_full", False
    )

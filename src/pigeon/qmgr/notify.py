"""Which notifications a finished (or long-waiting) message owes, and enqueueing them.

Contract:
  * `plan_notices(envelope, ...)` decides, from the recipient statuses the
    manager recorded, which reports (RFC 3464, built by `bounce.build_dsn`)
    a message owes at this point, and returns them as `Notice`s ready to be
    enqueued. It changes nothing but `envelope.delay_warned` (Rule 4).
  * `enqueue_notice(store, notice, now)` commits one report as a NEW queue
    entry through the store's intake (`new_spool` + `commit`, queue/api.py), with
    the null reverse-path (RFC 5321 §4.5.5: reports are sent from <>) and
    `Envelope.dsn_kind` set, DKIM-signed first by `sign` when the manager has
    one (`Qmgr.set_notice_signer`: the keys of our hostname's domain or
    of its parent, signing/signer.py). Blocking (it waits for the group commit): the
    manager runs it in a worker thread, and BEFORE it removes or updates
    the original, so a crash can duplicate a report but never lose one.

Rules:
  Rule 1 (finished message): a failure report to the sender lists every
    BOUNCED recipient whose NOTIFY allows FAILURE; a success report lists
    DELIVERED recipients with NOTIFY=SUCCESS for which we are the last word
    (`bounce.wants_success`). Both go out only when every recipient is final,
    so one report covers every failure of the message (as Postfix does).
  Rule 2 (null sender): a message from <> never gets a report. If it is a
    report WE generated (`dsn_kind` failure/delay/success/relayed) and some
    recipient bounced, postmaster of the primary domain gets one copy
    ("double bounce", `dsn_kind="double-bounce"`, the failed report
    attached). A failed double bounce is dropped with a log line: nothing
    ever loops. Someone else's null-sender mail that bounces is only logged.
  Rule 3 (delay warning): while recipients are still deferred and the
    message has waited `delay_warning` seconds, one report with Action:
    delayed goes to the sender for recipients with NOTIFY=DELAY, and for
    recipients without NOTIFY when delay warnings are on (delay_warning >
    0); RFC 3461 §4.1 leaves the absent case to the MTA. With warnings off,
    an explicit NOTIFY=DELAY is still honoured after DEFAULT_DELAY_WARNING.
  Rule 4: the delay warning is sent at most once per message:
    `envelope.delay_warned` is set when it becomes due, and the manager
    stores it with the envelope's next update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pigeon.qmgr.bounce import (
    DsnRecipient,
    Kind,
    build_dsn,
    dsn_params,
    dsn_recipient,
    wants_delay,
    wants_failure,
    wants_success,
)
from pigeon.qmgr.timing import delay_warning_due
from pigeon.queue.api import Intake, MessageContent
from pigeon.queue.model import Envelope, Recipient, RecipientStatus

__all__ = ["DEFAULT_DELAY_WARNING", "Notice", "enqueue_notice", "plan_notices"]

DEFAULT_DELAY_WARNING = 14400.0  # s; for explicit NOTIFY=DELAY with warnings off
REPORT_KINDS = frozenset({"failure", "delay", "success", "relayed"})

_LOG_TEXT = {
    "failure": "sender non-delivery notification",
    "delay": "sender delay notification",
    "success": "sender delivery status notification",
    "double-bounce": "postmaster non-delivery notification",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """One report to enqueue: `kind` is what `Envelope.dsn_kind` will say."""

    kind: str  # failure | delay | success | double-bounce
    to: str
    data: bytes
    log_text: str  # "sender non-delivery notification" (+ ": <new id>")


@dataclass(frozen=True, slots=True)
class Plan:
    notices: list[Notice]
    #: Log lines for reports NOT sent (null sender, dropped double bounce).
    remarks: list[str]


def plan_notices(
    env: Envelope,
    *,
    done: bool,
    now: float,
    reporting_mta: str,
    postmaster: str,
    content: MessageContent | None,
    delay_warning: float,
    max_lifetime: float,
) -> Plan:
    """The reports `env` owes now (module Rules 1-4)."""
    bounced = [r for r in env.recipients if r.status is RecipientStatus.BOUNCED]
    common: dict[str, Any] = dict(
        reporting_mta=reporting_mta,
        arrival_date=env.received_at,
        content=content,
        now=now,
        max_lifetime=max_lifetime,
    )
    if not env.sender:  # Rule 2
        if not done or not bounced:
            return Plan([], [])
        if env.dsn_kind in REPORT_KINDS:
            blocks = [dsn_recipient(r, "failed") for r in bounced]
            data = build_dsn(env, blocks, kind="failure", to=postmaster, **common)
            return Plan([Notice("double-bounce", postmaster, data, _LOG_TEXT["double-bounce"])], [])
        if env.dsn_kind == "double-bounce":
            return Plan([], ["discarding undeliverable postmaster notification"])
        return Plan([], ["null sender: no non-delivery notification"])
    notices: list[Notice] = []
    if done:  # Rule 1
        failed = [dsn_recipient(r, "failed") for r in bounced if wants_failure(r.params)]
        if failed:
            notices.append(_notice(env, "failure", failed, common))
        succeeded = [
            dsn_recipient(r, r.action or "delivered")
            for r in env.recipients
            if r.status is RecipientStatus.DELIVERED and wants_success(r)
        ]
        if succeeded:
            notices.append(_notice(env, "success", succeeded, common))
        return Plan(notices, [])
    enabled = delay_warning > 0  # Rules 3, 4
    threshold = delay_warning if enabled else DEFAULT_DELAY_WARNING
    if delay_warning_due(env.received_at, now, threshold, env.delay_warned):
        env.delay_warned = True
        until = env.received_at + max_lifetime
        waiting = [
            dsn_recipient(r, "delayed", will_retry_until=until)
            for r in env.recipients
            if not r.final and wants_delay(r.params, delay_warning_enabled=enabled)
        ]
        if waiting:
            notices.append(_notice(env, "delay", waiting, common))
    return Plan(notices, [])


def _notice(
    env: Envelope, kind: Kind, blocks: list[DsnRecipient], common: dict[str, Any]
) -> Notice:
    data = build_dsn(env, blocks, kind=kind, **common)
    return Notice(kind, env.sender, data, _LOG_TEXT[kind])


def enqueue_notice(
    store: Intake, notice: Notice, now: float, sign: Callable[[bytes], bytes] | None = None
) -> str:
    """Commit `notice` as a new queue entry from <>; return its queue id.
    Blocking. `sign` returns the report with its DKIM-Signature fields on top."""
    data = sign(notice.data) if sign is not None else notice.data
    eight_bit = not data.isascii()
    env = Envelope(
        "",
        "",
        [Recipient(notice.to)],
        params=dsn_params(eight_bit, not notice.to.isascii()),
        received_at=now,
        size=len(data),
        eight_bit=eight_bit,
        protocol="local",
        dsn_kind=notice.kind,
    )
    spool = store.new_spool(env)  # sets env.queue_id; env goes into a spilled file
    try:
        spool.write(data)
    except BaseException:
        spool.discard()
        raise
    store.commit(spool, env)
    return spool.queue_id

"""Applying delivery results to an envelope, and what a delivery run concludes: pure.

Contract:
  * One vocabulary for an outcome: `RecipientStatus` (pigeon/queue/model.py,
    which the delivery interface calls `Outcome`). An agent's result becomes
    the recipient's status as it is; the mail log's words ("sent",
    "deferred", "bounced", "expired") are made in one place, `log_fields()`,
    at the edge.
  * `apply_results(...)` records one request's results on its recipients:
    DELIVERED and BOUNCED are final, DEFERRED waits for the next attempt
    with its diagnostic; a recipient the agent gave no (valid) result for
    is deferred 4.0.0 "delivery agent returned no result". It reports what
    the results say about the next hop (`Applied`: a peer was reached, a
    delivery got through, mail now waits for the hop (qmgr/waiting.py Rule
    1), the first failure, a fault of our own storage).
  * `agent_failed(...)`: an agent that raised defers every recipient of its
    request with 4.0.0 "delivery agent error (<type>)" (the traceback goes
    to the debug log, never into reports: CONTRIBUTING.md, rule 6).
  * `conclude(...)` decides the end of a run: every recipient final ->
    done; else expired (qmgr/timing.py Rule 2) -> what is left bounces with
    4.4.7 (5.2.2 for a mailbox that stayed over quota, 4.2.2 before: RFC
    3463 X.2.2, persistent transient, then permanent), done; else the next
    attempt: the storage retry time when our storage failed (not counted as
    an attempt, qmgr/settle.py Rule 2), or `attempts += 1` and the backoff
    (timing.py Rule 1).
  * A `Settlement` is the end of one run until it is durable: the envelope,
    its log lines, the reports owed (qmgr/notify.py), done or the next
    attempt time (qmgr/settle.py makes it durable).
  * Log lines, one per recipient and attempt, Postfix style:
    `to=<..>, orig_to=<..>, relay=mx.example[192.0.2.1]:25, delay=12,
    dsn=4.4.1, status=deferred (connect to ...: Connection refused)`; relay
    is "local" for the local transport, the peer for others, "none" when no
    peer answered; `delays=queue wait/connection setup/transmission` when an
    agent ran (for a Maildir only when it delivered), `tls=` (verified,
    encrypted or none, protocol and cipher) when a peer was reached, `policy=`
    (mta-sts:enforce, mta-sts:testing, dane, none) for MX deliveries.
  * Pure: no clock (`now` is an argument), no I/O; only the recipients
    given and the log list change.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pigeon.delivery.api import RecipientResult
from pigeon.qmgr.notify import Plan
from pigeon.qmgr.settings import QmgrSettings
from pigeon.qmgr.timing import Rng, expired, next_attempt
from pigeon.qmgr.waiting import waits_for_hop
from pigeon.queue.model import Envelope, Recipient, RecipientStatus
from pigeon.vocab import Nexthop

__all__ = [
    "EXPIRED_STATUS",
    "LOCAL",
    "MAILBOX_FULL_STATUS",
    "NO_AGENT",
    "Applied",
    "LogLine",
    "Settlement",
    "agent_failed",
    "apply_results",
    "bounce_rest",
    "conclude",
    "defer_all",
    "log_fields",
    "set_status",
]

log = logging.getLogger("pigeon.queue")

#: The transport of local (Maildir) delivery.
LOCAL = "local"
NO_AGENT = "mail transport unavailable"
EXPIRED_STATUS = "4.4.7"
MAILBOX_FULL_STATUS = "5.2.2"

#: One mail-log line: (fields, detail).
LogLine = tuple[dict[str, Any], str]

_FINAL_OUTCOMES = (RecipientStatus.DELIVERED, RecipientStatus.DEFERRED, RecipientStatus.BOUNCED)
_LOG_WORD = {
    RecipientStatus.DELIVERED: "sent",
    RecipientStatus.DEFERRED: "deferred",
    RecipientStatus.BOUNCED: "bounced",
}


@dataclass(slots=True, eq=False)
class Settlement:
    """The end of one delivery run, until it is durable (module contract)."""

    env: Envelope
    logs: list[LogLine]
    plan: Plan
    done: bool
    when: float  # next attempt when not done
    now: float  # when the run ended (reports carry it)
    new_ids: list[str] = field(default_factory=list)  # reports enqueued so far


@dataclass(slots=True)
class Applied:
    """What one request's results say (module contract)."""

    reached: bool = False  # some peer answered
    delivered: bool = False  # some recipient got through
    waiting: bool = False  # some recipient now waits for the next hop
    storage_fault: bool = False  # some deferral was our own storage failing
    first_failure: str = ""  # diagnostic of the first deferral without a peer


def log_fields(
    rcpt: Recipient, relay: str, status: RecipientStatus, *, expired: bool = False
) -> dict[str, Any]:
    """The fields of a recipient's log line; the log's word for `status` (the edge)."""
    fields: dict[str, Any] = {"to": rcpt.address}
    if rcpt.original and rcpt.original != rcpt.address:
        fields["orig_to"] = rcpt.original
    word = "expired" if expired else _LOG_WORD[status]
    fields.update(relay=relay, delay=0.0, dsn=rcpt.dsn_status, status=word)
    return fields


def set_status(
    rcpt: Recipient,
    status: RecipientStatus,
    dsn: str,
    diagnostic: str,
    *,
    now: float,
    action: str = "",
    transport: str = "",
    remote_mta: str = "",
) -> None:
    """Record one attempt's result on `rcpt` (what a later report shows)."""
    rcpt.status, rcpt.dsn_status, rcpt.diagnostic = status, dsn, diagnostic
    rcpt.action = action
    if transport:
        rcpt.transport = transport
    rcpt.remote_mta = remote_mta
    rcpt.last_attempt = now


def defer_all(
    rcpts: Sequence[Recipient],
    dsn: str,
    diagnostic: str,
    transport: str,
    logs: list[LogLine],
    *,
    now: float,
) -> None:
    """Defer every recipient of a request that got no attempt (relay=none)."""
    for r in rcpts:
        set_status(r, RecipientStatus.DEFERRED, dsn, diagnostic, now=now, transport=transport)
        logs.append((log_fields(r, "none", RecipientStatus.DEFERRED), r.diagnostic))


def agent_failed(rcpts: Sequence[Recipient], exc: BaseException) -> list[RecipientResult]:
    """The results of a request whose agent raised (module contract)."""
    reason = f"delivery agent error ({type(exc).__name__})"
    return [RecipientResult(r.address, RecipientStatus.DEFERRED, "4.0.0", reason) for r in rcpts]


def _result_for(
    qid: str, nexthop: Nexthop, rcpt: Recipient, by_addr: dict[str, RecipientResult]
) -> RecipientResult:
    res = by_addr.get(rcpt.address) or by_addr.get(rcpt.address.lower())
    if res is not None and res.outcome in _FINAL_OUTCOMES:
        return res
    log.warning("queue_id=%s: agent for %s gave no valid result for %s", qid, nexthop, rcpt.address)
    return RecipientResult(
        rcpt.address, RecipientStatus.DEFERRED, "4.0.0", "delivery agent returned no result"
    )


def apply_results(
    qid: str,
    nexthop: Nexthop,
    rcpts: Sequence[Recipient],
    results: Sequence[RecipientResult],
    logs: list[LogLine],
    *,
    now: float,
    queue_wait: float = 0.0,
) -> Applied:
    """Record `results` on `rcpts` and their log lines (module contract)."""
    in_order = len(results) == len(rcpts) and all(
        res.address == r.address and res.outcome in _FINAL_OUTCOMES
        for res, r in zip(results, rcpts)
    )
    by_addr: dict[str, RecipientResult] = {}
    if not in_order:  # matched by address (agents may answer in any order)
        for res in results:
            by_addr.setdefault(res.address, res)
            by_addr.setdefault(res.address.lower(), res)
    local = nexthop.transport == LOCAL
    out = Applied()
    for i, r in enumerate(rcpts):
        res = results[i] if in_order else _result_for(qid, nexthop, r, by_addr)
        outcome = res.outcome
        if not isinstance(outcome, RecipientStatus):
            outcome = RecipientStatus(outcome)
        if res.remote_mta or outcome is not RecipientStatus.DEFERRED:
            out.reached = True
        elif not out.first_failure:
            out.first_failure = res.diagnostic
        out.delivered = out.delivered or outcome is RecipientStatus.DELIVERED
        out.waiting = out.waiting or (
            outcome is RecipientStatus.DEFERRED and waits_for_hop(res.status)
        )
        out.storage_fault = out.storage_fault or res.storage_fault
        action: str
        if outcome is RecipientStatus.DELIVERED:
            action = res.action
        else:
            action = "failed" if outcome is RecipientStatus.BOUNCED else ""
        set_status(
            r,
            outcome,
            res.status,
            res.diagnostic,
            now=now,
            action=action,
            transport=nexthop.transport,
            remote_mta=res.remote_mta,
        )
        relay = LOCAL if local else (res.remote_mta or "none")
        fields = log_fields(r, relay, outcome)
        if not local or outcome is RecipientStatus.DELIVERED:
            # Postfix-style breakdown: queue wait / connection setup / transmission.
            conn_s, xfer_s = res.timings
            fields["delays"] = f"{queue_wait:.2f}/{conn_s:.2f}/{xfer_s:.2f}"
        if res.tls:
            # Whether the hop was encrypted, and verified, belongs in the
            # delivery record (e.g. "verified TLSv1.3 TLS_AES_256_GCM_SHA384").
            fields["tls"] = res.tls
        if res.tls_policy:
            fields["policy"] = res.tls_policy  # delivery/tlspolicy: which policy applied
        logs.append((fields, res.diagnostic))
    return out


def bounce_rest(
    env: Envelope, dsn: str, diagnostic: str, logs: list[LogLine], *, now: float
) -> None:
    """Bounce every recipient not yet final, keeping what the last attempt
    reported (transport, Remote-MTA): an operator's "bounce"."""
    for r in env.recipients:
        if r.final:
            continue
        set_status(
            r,
            RecipientStatus.BOUNCED,
            dsn,
            diagnostic,
            now=now,
            action="failed",
            transport=r.transport,
            remote_mta=r.remote_mta,
        )
        logs.append((log_fields(r, "none", RecipientStatus.BOUNCED), r.diagnostic))


def _expire(env: Envelope, logs: list[LogLine], now: float) -> None:
    age = now - env.received_at
    for r in env.recipients:
        if r.final:
            continue
        last = f"; last error: {r.diagnostic}" if r.diagnostic else ""
        # Remote-MTA and Last-Attempt-Date stay those of the last attempt.
        dsn = MAILBOX_FULL_STATUS if r.dsn_status == "4.2.2" else EXPIRED_STATUS
        r.status, r.dsn_status, r.action = RecipientStatus.BOUNCED, dsn, "failed"
        r.diagnostic = f"message expired after {age / 86400:.1f} days in queue{last}"
        fields = log_fields(r, r.remote_mta or "none", RecipientStatus.BOUNCED, expired=True)
        logs.append((fields, r.diagnostic))


def conclude(
    env: Envelope,
    logs: list[LogLine],
    *,
    now: float,
    settings: QmgrSettings,
    rng: Rng,
    storage_retry_at: float | None = None,
) -> tuple[bool, float]:
    """(done, next attempt time) at the end of a run (module contract).

    `storage_retry_at`: our storage failed a recipient; when to come back.
    """
    done = all(r.final for r in env.recipients)
    if not done and expired(env.received_at, now, settings.max_lifetime):
        _expire(env, logs, now)
        return True, 0.0
    if done:
        return True, 0.0
    if storage_retry_at is not None:
        return False, storage_retry_at
    env.attempts += 1
    when = next_attempt(
        now,
        env.attempts,
        rng,
        min_backoff=settings.min_backoff,
        max_backoff=settings.max_backoff,
    )
    return False, when

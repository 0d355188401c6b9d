"""Connect to one MX host under its plan: the policy enforced, the outcome reported.

    conn = await connect_under(plan, candidate, opener, sink)   # ClientConnection or ConnectError

Contract:
  * `opener(mode, ca_file, check)` opens (or reuses) a Ready connection with
    that TLS policy (delivery/smtpc.py `connect`); it raises `ConnectError`.
  * A plan that refuses the host (`plan.refusal`: an MX not in the MTA-STS
    policy, RFC 8461 §4.1; a failed TLSA look-up) opens nothing when the
    plan is enforced: `ConnectError` 421 4.7.5 with the reason.
  * A TLS failure under an enforced policy (STARTTLS not offered or refused,
    a certificate that does not verify or match, DANE mismatch) is a
    `ConnectError` with a 4.7.x status and a diagnostic naming the policy
    and the domain: the candidate is given up and never retried in clear
    (RFC 8461 §5, RFC 7672 §2.2); the agent's candidate walk goes on and,
    failing everywhere, defers the mail with that reason, which its bounce
    carries when the mail expires.
  * Testing mode (RFC 8461 §5): a refusal or a TLS failure is logged
    (warning) and reported, and the host is used as without the policy
    (`plan.fallback`).
  * Failures that are not about TLS (connection refused, a 4xx greeting)
    are raised unchanged and reported to nobody: no TLS session was tried.
  * One `TlsRecord` per attempt goes to `sink.tls()` (RFC 8460): success
    when TLS was negotiated as the plan wants, else the failure's result
    type. Every `ConnectError` raised carries `tls_policy` = the plan's label.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from pigeon.delivery.smtpc import ClientConnection, ConnectError, peer_name
from pigeon.delivery.tlspolicy.peer import TlsCheck
from pigeon.delivery.tlspolicy.policy import CandidatePlan
from pigeon.proto.reply import reply
from pigeon.reports.records import ReportSink
from pigeon.routing.mx import Candidate

__all__ = ["Opener", "connect_under"]

log = logging.getLogger("pigeon.delivery.tlspolicy")

Opener = Callable[[str, str | None, TlsCheck | None], Awaitable[ClientConnection]]


async def connect_under(
    plan: CandidatePlan, cand: Candidate, opener: Opener, sink: ReportSink
) -> ClientConnection:
    where = peer_name(cand.host, cand.address, cand.port)
    if plan.refusal:
        result_type, why = "validation-failure", plan.refusal
        if plan.required:
            _report(sink, plan, cand, False, result_type, why)
            r = reply(421, "4.7.5", plan.refusal)
            raise _labelled(ConnectError(r, r.text, local=True, remote_mta=where), plan)
    else:
        try:
            conn = await opener(plan.mode, plan.ca_file, plan.check)
        except ConnectError as exc:
            if exc.tls_result is None:
                raise _labelled(exc, plan) from None
            result_type, why = exc.tls_result, exc.diagnostic
            if plan.required:
                _report(sink, plan, cand, False, result_type, why)
                raise _policy_failure(exc, plan) from None
            if not plan.label or plan.label == "none":
                _report(sink, plan, cand, False, result_type, why)
                raise _labelled(exc, plan) from None
        else:
            ok = conn.tls is not None
            _report(sink, plan, cand, ok, None if ok else "starttls-not-supported", "")
            return conn
    # Testing mode (RFC 8461 §5): report, then deliver as without the policy.
    _report(sink, plan, cand, False, result_type, why)
    log.warning(
        "%s: TLS policy %s of %s not met (%s); delivering anyway (testing mode)",
        where,
        plan.label,
        plan.domain,
        why,
    )
    try:
        return await opener(plan.fallback, None, None)
    except ConnectError as exc:
        raise _labelled(exc, plan) from None


def _report(
    sink: ReportSink,
    plan: CandidatePlan,
    cand: Candidate,
    success: bool,
    result_type: str | None,
    info: str,
) -> None:
    try:
        sink.tls(plan.record(cand, success=success, result_type=result_type, info=info))
    except Exception:  # noqa: BLE001 - reports are best effort, mail is not (reports/records.py)
        log.exception("TLS report sink failed")


def _labelled(exc: ConnectError, plan: CandidatePlan) -> ConnectError:
    exc.tls_policy = plan.label
    return exc


def _policy_failure(exc: ConnectError, plan: CandidatePlan) -> ConnectError:
    """The TLS failure as a deferral that names the policy (module contract)."""
    status = exc.reply.enhanced if (exc.reply.enhanced or "").startswith("4.7.") else "4.7.5"
    kind = "DANE" if plan.label == "dane" else f"MTA-STS policy, {plan.label.partition(':')[2]}"
    text = f"TLS required for {plan.domain} ({kind}): {exc.diagnostic}"
    r = reply(421, status, text)
    failure = ConnectError(
        r, text, local=True, remote_mta=exc.remote_mta, tls_result=exc.tls_result
    )
    return _labelled(failure, plan)

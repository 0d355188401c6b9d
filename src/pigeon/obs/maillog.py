"""The mail log: one line per message event, keyed by queue id (CONTRIBUTING.md, rule 17).

Contract:
  * This is the operator's record of what happened to each message: received,
    queued, deferred, delivered, bounced, expired, rejected (with queue id
    "NOQUEUE", as Postfix does). It is not the session transcript or a debug
    trace: those are bounded and kept elsewhere (obs/trace, queue/trace).
  * One call, one line. `MailLog.log(queue_id, fields, detail)` renders, in the
    spirit of Postfix:

        4F2A9C: from=<alice@example.org>, size=1234, nrcpt=2 (queued)
        4F2A9C: to=<bob@example.test>, relay=local, delay=0.52, dsn=2.0.0, status=sent (delivered to maildir)

    Rule 1: keys "from", "to", "orig_to" render as <value>; an empty or None
    sender is <>. Rule 2: other values render as str(); floats with two
    decimals, bools as yes/no, None values are left out of the text.
    Rule 3: fields keep the caller's order, joined by ", "; the detail, if
    any, closes the line in parentheses.
  * In JSON log mode (obs.logsetup) the record also carries `queue_id`, the
    fields as structured keys with their raw values (None stays null, floats
    unrounded) and `detail`, so tools never parse the text.
  * Session lines, like Postfix smtpd's, via `connect()` and `disconnect()`:

        connect from mail.example.org[192.0.2.7]
        disconnect from mail.example.org[192.0.2.7] ehlo=1 mail=1 rcpt=1/2 data=1 quit=1 commands=5/6

    (a count is an int, or (accepted, issued) when some were refused).
  * Rejections and session ends, in exactly Postfix smtpd's form, because
    tools (pflogsumm, fail2ban's postfix filters) parse these lines and rely
    on each field's meaning: `from=` is always the envelope sender, `to=` a
    recipient, never anything else.

        NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 Error: relay access denied; from=<s@a.example> to=<x@y.example> proto=ESMTP helo=<h.example>
        NOQUEUE: reject: MAIL from unknown[192.0.2.1]: 553 5.7.1 Error: ...; from=<s@a.example> proto=ESMTP helo=<h.example>
        NOQUEUE: reject: CONNECT from unknown[192.0.2.1]: 421 4.7.0 mx.example Error: too many connections; proto=SMTP
        01M8...: reject: END-OF-MESSAGE from unknown[192.0.2.1]: 552 5.3.4 Error: ...; from=<s@a.example> to=<x@y.example> proto=ESMTP helo=<h.example>
        warning: unknown[192.0.2.1]: SASL PLAIN authentication failed: authentication failure
        too many errors after RCPT from unknown[192.0.2.1]
        timeout after DATA from unknown[192.0.2.1]
        lost connection after MAIL from unknown[192.0.2.1]

    `reject()` leaves out `from=` when no sender is known yet (None; the
    null sender "" is `from=<>`), `to=` when there is no single recipient,
    `helo=` before HELO/EHLO; `proto=` is SMTP or ESMTP (the greeting the
    client used). The client name is "unknown" (pigeon does not look up
    reverse DNS), as Postfix writes it for a client without one.
  * Never raises for odd field values, never blocks beyond what the logging
    handler does, and never reads the clock (the logging record does).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pigeon.proto.reply import Reply

__all__ = ["MailLog", "format_fields", "reply_text", "MAIL_LOGGER"]

MAIL_LOGGER = "pigeon.mail"

_ADDRESS_KEYS = frozenset({"from", "to", "orig_to"})


def _render(key: str, value: Any) -> str:
    if key in _ADDRESS_KEYS:
        return f"<{value if value is not None else ''}>"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def format_fields(fields: Mapping[str, Any], detail: str | None = None) -> str:
    """`key=value, key=value (detail)` per the rules in the module docstring."""
    text = ", ".join(
        f"{key}={_render(key, value)}"
        for key, value in fields.items()
        if value is not None or key in _ADDRESS_KEYS
    )
    if detail is not None:
        text = f"{text} ({detail})" if text else f"({detail})"
    return text


def reply_text(reply: Reply | str) -> str:
    """A reply as one log line: `554 5.7.1 text` (lines of a multi-line reply joined by spaces)."""
    if isinstance(reply, str):
        return reply
    code = f"{reply.code} {reply.enhanced}" if reply.enhanced else str(reply.code)
    return f"{code} {' '.join(reply.lines)}"


def _client(host: str | None, ip: str) -> str:
    return f"{host or 'unknown'}[{ip}]"


class MailLog:
    """Writes mail-log lines to a logger ("pigeon.mail" unless one is given)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger(MAIL_LOGGER)

    def log(
        self,
        queue_id: str,
        fields: Mapping[str, Any],
        detail: str | None = None,
        *,
        level: int = logging.INFO,
    ) -> None:
        """One line about message `queue_id`: `QUEUEID: k=v, k=v (detail)`."""
        if not self.logger.isEnabledFor(level):
            return
        self.logger.log(
            level,
            "%s: %s",
            queue_id,
            format_fields(fields, detail),
            extra={"queue_id": queue_id, "fields": dict(fields), "detail": detail},
        )

    def reject(
        self,
        queue_id: str | None,
        stage: str,
        ip: str,
        reply: Reply | str,
        *,
        host: str | None = None,
        sender: str | None = None,
        recipient: str | None = None,
        proto: str = "SMTP",
        helo: str | None = None,
    ) -> None:
        """`QUEUEID: reject: STAGE from host[ip]: REPLY; from=<> to=<> proto= helo=<>`."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        qid = queue_id or "NOQUEUE"
        reply = reply_text(reply)
        text = f"{qid}: reject: {stage} from {_client(host, ip)}: {reply};"
        if sender is not None:
            text += f" from=<{sender}>"
        if recipient is not None:
            text += f" to=<{recipient}>"
        text += f" proto={proto}"
        if helo:
            text += f" helo=<{helo}>"
        self.logger.info(
            "%s",
            text,
            extra={
                "queue_id": qid,
                "detail": "reject",
                "fields": {
                    "event": "reject",
                    "stage": stage,
                    "client_name": host or "unknown",
                    "client_ip": ip,
                    "reply": reply,
                    "from": sender,
                    "to": recipient,
                    "proto": proto,
                    "helo": helo or None,
                },
            },
        )

    def sasl_failed(
        self, host: str | None, ip: str, mechanism: str, reason: str = "authentication failure"
    ) -> None:
        """`warning: host[ip]: SASL PLAIN authentication failed: REASON` (Postfix smtpd)."""
        self.logger.warning(
            "warning: %s: SASL %s authentication failed: %s",
            _client(host, ip),
            mechanism,
            reason,
            extra={
                "fields": {
                    "event": "sasl_failed",
                    "client_name": host or "unknown",
                    "client_ip": ip,
                    "sasl_method": mechanism,
                    "reason": reason,
                }
            },
        )

    def session_end(self, what: str, where: str, host: str | None, ip: str) -> None:
        """`timeout after DATA from host[ip]` (what: timeout, lost connection, too many errors...)."""
        self.logger.info(
            "%s after %s from %s",
            what,
            where,
            _client(host, ip),
            extra={
                "fields": {
                    "event": what,
                    "after": where,
                    "client_name": host or "unknown",
                    "client_ip": ip,
                }
            },
        )

    def connect(self, host: str | None, ip: str) -> None:
        """`connect from host[ip]` (host None: the name is unknown)."""
        self.logger.info(
            "connect from %s",
            _client(host, ip),
            extra={
                "fields": {"event": "connect", "client_name": host or "unknown", "client_ip": ip}
            },
        )

    def disconnect(
        self, host: str | None, ip: str, counts: Mapping[str, int | tuple[int, int]]
    ) -> None:
        """`disconnect from host[ip] ehlo=1 mail=1 ... commands=N` (N/M when some failed)."""
        parts = []
        ok_total = issued_total = 0
        for verb, count in counts.items():
            if isinstance(count, tuple):
                ok, issued = count
                parts.append(f"{verb}={ok}/{issued}" if ok != issued else f"{verb}={ok}")
            else:
                ok = issued = count
                parts.append(f"{verb}={count}")
            ok_total += ok
            issued_total += issued
        commands = f"{ok_total}/{issued_total}" if ok_total != issued_total else str(ok_total)
        parts.append(f"commands={commands}")
        self.logger.info(
            "disconnect from %s %s",
            _client(host, ip),
            " ".join(parts),
            extra={
                "fields": {
                    "event": "disconnect",
                    "client_name": host or "unknown",
                    "client_ip": ip,
                    **{verb: list(c) if isinstance(c, tuple) else c for verb, c in counts.items()},
                    "commands": [ok_total, issued_total],
                }
            },
        )

"""The mail log: one line per message event, keyed by queue id (STYLE 3.18).

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
  * Never raises for odd field values, never blocks beyond what the logging
    handler does, and never reads the clock (the logging record does).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

__all__ = ["MailLog", "format_fields", "MAIL_LOGGER"]

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
    text = ", ".join(f"{key}={_render(key, value)}" for key, value in fields.items()
                     if value is not None or key in _ADDRESS_KEYS)
    if detail is not None:
        text = f"{text} ({detail})" if text else f"({detail})"
    return text


def _client(host: str | None, ip: str) -> str:
    return f"{host or 'unknown'}[{ip}]"


class MailLog:
    """Writes mail-log lines to a logger ("pigeon.mail" unless one is given)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger(MAIL_LOGGER)

    def log(self, queue_id: str, fields: Mapping[str, Any], detail: str | None = None,
            *, level: int = logging.INFO) -> None:
        """One line about message `queue_id`: `QUEUEID: k=v, k=v (detail)`."""
        if not self.logger.isEnabledFor(level):
            return
        self.logger.log(level, "%s: %s", queue_id, format_fields(fields, detail),
                        extra={"queue_id": queue_id, "fields": dict(fields), "detail": detail})

    def connect(self, host: str | None, ip: str) -> None:
        """`connect from host[ip]` (host None: the name is unknown)."""
        self.logger.info("connect from %s", _client(host, ip),
                         extra={"fields": {"event": "connect", "client_name": host or "unknown",
                                           "client_ip": ip}})

    def disconnect(self, host: str | None, ip: str,
                   counts: Mapping[str, int | tuple[int, int]]) -> None:
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
        self.logger.info("disconnect from %s %s", _client(host, ip), " ".join(parts),
                         extra={"fields": {"event": "disconnect", "client_name": host or "unknown",
                                           "client_ip": ip,
                                           **{verb: list(c) if isinstance(c, tuple) else c
                                              for verb, c in counts.items()},
                                           "commands": [ok_total, issued_total]}})

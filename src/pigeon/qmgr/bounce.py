"""Delivery status notifications: who gets one, and the RFC 3464 message itself.

Contract:
  * `build_dsn()` returns one complete RFC 5322 message (CRLF line endings,
    as the queue stores content) of type multipart/report;
    report-type=delivery-status (RFC 6522) with three parts:
      1. text/plain for people, with each recipient's reason and the remote
         server's reply;
      2. message/delivery-status (RFC 3464 §2): per-message fields
         Reporting-MTA, Original-Envelope-Id (ENVID, RFC 3461 §4.4),
         Arrival-Date; then per recipient Final-Recipient, Original-Recipient
         (ORCPT, RFC 3461 §4.2), Action, Status (RFC 3463), Remote-MTA,
         Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until (delayed only);
      3. the original: message/rfc822 with the whole message for a failure
         DSN unless RET=HDRS (RFC 3461 §4.3), text/rfc822-headers with the
         header section otherwise. Rule 1: delay and success reports always
         carry headers only (RFC 3461 §4.3: "if a DSN contains no indications
         of delivery failure, only the headers of the message should be
         returned").
    Headers: From "Mail Delivery System" <MAILER-DAEMON@host>, To the
    original sender (or `to=`), Auto-Submitted: auto-replied (RFC 3834 §5),
    Date, Message-ID, MIME-Version.
  * Rule 2 (no header injection): every value that came from outside (ENVID,
    ORCPT, remote replies, addresses) is written on one line; a value with
    control characters is written xtext-encoded (RFC 3461 §4) for
    ENVID/ORCPT and with the controls replaced by spaces otherwise.
  * Which recipients go into which report (RFC 3461 §4.1, §6.2):
    `wants_failure`: NOTIFY absent or containing FAILURE;
    `wants_delay`: NOTIFY containing DELAY, or NOTIFY absent when the
    operator enabled delay warnings; `wants_success`: NOTIFY containing
    SUCCESS and our report is the last word on it: a final delivery
    (local Maildir, LMTP, discard) or action "relayed" (the next hop lacked
    DSN, RFC 3461 §6.2.2). After a plain "delivered" over SMTP the next hop
    took NOTIFY along and reports itself, so we stay silent.
    Rule 3: a message with the null sender never gets a report; the
    manager enforces that (and the postmaster copy for failed DSNs).
  * Pure: no clock (`now` is an argument), no store access; it reads the
    original through the `MessageContent` it is given (pigeon/queue/api.py),
    and the StoreError of content that cannot be read propagates.

Not done: RFC 6533 (message/global-delivery-status for SMTPUTF8 mail):
UTF-8 addresses are written raw, which is valid only when the report
travels with SMTPUTF8.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal

from pigeon.proto.params import MailParams, RcptParams, xtext_encode
from pigeon.queue.api import MessageContent
from pigeon.queue.model import Envelope, Recipient

__all__ = [
    "DsnRecipient",
    "Kind",
    "build_dsn",
    "dsn_recipient",
    "wants_delay",
    "wants_failure",
    "wants_success",
    "SUBJECTS",
]

Kind = Literal["failure", "delay", "success", "relayed"]

SUBJECTS = {
    "failure": "Undelivered Mail Returned to Sender",
    "delay": "Delayed Mail (still being retried)",
    "success": "Successful Mail Delivery Report",
    "relayed": "Successful Mail Delivery Report",
}

_INTRO = {
    "failure": "I'm sorry to have to inform you that your message could not\r\n"
    "be delivered to one or more recipients. It's attached below.",
    "delay": "####################################################################\r\n"
    "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
    "####################################################################\r\n\r\n"
    "Your message could not be delivered for {age}. It will be retried\r\n"
    "until it is {lifetime} old.",
    "success": "Your message was successfully delivered to the destination(s)\r\n"
    "listed below. If the message was delivered to mailbox you will\r\n"
    "receive no further notifications. Otherwise you may still receive\r\n"
    "notifications of mail delivery errors from other systems.",
}
_INTRO["relayed"] = _INTRO["success"]

_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")
_REPLY = re.compile(r"^[2-5]\d\d[ -]")
_FINAL_TRANSPORTS = frozenset({"local", "lmtp", "discard"})


@dataclass(frozen=True, slots=True)
class DsnRecipient:
    """One per-recipient block of a report (RFC 3464 §2.3)."""

    address: str  # Final-Recipient (after alias expansion)
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # RFC 3463, e.g. "5.1.1"
    diagnostic: str = ""  # remote reply or our reason
    remote_mta: str = ""  # "mx.example[192.0.2.1]:25" when a peer answered
    orcpt: tuple[str, str] | None = None  # (addr-type, address) from ORCPT
    original: str = ""  # pre-alias address when there is no ORCPT
    last_attempt: float = 0.0
    will_retry_until: float | None = None  # delayed only


def dsn_recipient(
    rcpt: Recipient, action: str, *, will_retry_until: float | None = None
) -> DsnRecipient:
    """The report block for a queue `Recipient` as the manager recorded it."""
    status = rcpt.dsn_status or {"failed": "5.0.0", "delayed": "4.0.0"}.get(action, "2.0.0")
    return DsnRecipient(
        rcpt.address,
        action,
        status,
        rcpt.diagnostic,
        rcpt.remote_mta,
        rcpt.params.orcpt,
        rcpt.original,
        rcpt.last_attempt,
        will_retry_until,
    )


# --- who gets which report (RFC 3461 §4.1) ---------------------------------------


def wants_failure(params: RcptParams) -> bool:
    return params.notify is None or "FAILURE" in params.notify


def wants_delay(params: RcptParams, *, delay_warning_enabled: bool) -> bool:
    if params.notify is None:
        return delay_warning_enabled
    return "DELAY" in params.notify


def wants_success(rcpt: Recipient) -> bool:
    if rcpt.params.notify is None or "SUCCESS" not in rcpt.params.notify:
        return False
    return rcpt.action == "relayed" or rcpt.transport in _FINAL_TRANSPORTS


# --- the message --------------------------------------------------------------------


def _date(t: float) -> str:
    return format_datetime(datetime.fromtimestamp(t, UTC))


def _one_line(text: str) -> str:
    return _CONTROLS.sub(" ", text).strip()


def _xtext_if_unsafe(text: str) -> str:
    """As given when it is printable ASCII, else xtext (Rule 2)."""
    if text.isascii() and text.isprintable():
        return text
    return xtext_encode(text)


def _mta_name(remote_mta: str) -> str:
    """ "mx.example.org[192.0.2.1]:25" -> "mx.example.org" ("192.0.2.1" if unnamed)."""
    name, bracket, rest = remote_mta.partition("[")
    if name and name != "unknown":
        return name
    return rest.partition("]")[0] if bracket else remote_mta


def _duration(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours / 24:g} days" if hours >= 48 else f"{hours:g} hours"


def _human_part(
    kind: Kind, recipients: list[DsnRecipient], reporting_mta: str, *, age: float, lifetime: float
) -> str:
    intro = _INTRO[kind].format(
        age=_duration(round(age / 360) * 360 / 1.0), lifetime=_duration(lifetime)
    )
    lines = [
        f"This is the mail system at host {reporting_mta}.",
        "",
        intro,
        "",
        "For further assistance, please send mail to postmaster.",
        "",
        "If you do so, please include this problem report. You can",
        "delete your own text from the attached returned message.",
        "",
        "                   The mail system",
        "",
    ]
    for r in recipients:
        reason = _one_line(r.diagnostic) or r.action
        if r.remote_mta and r.diagnostic:
            reason = f"host {_one_line(r.remote_mta)} said: {reason}"
        lines.append(f"<{_one_line(r.address)}>: {reason}")
        lines.append("")
    return "\r\n".join(lines)


def _status_part(
    envelope: Envelope, recipients: list[DsnRecipient], reporting_mta: str, arrival_date: float
) -> str:
    blocks = [[f"Reporting-MTA: dns; {reporting_mta}", f"X-Pigeon-Queue-ID: {envelope.queue_id}"]]
    if envelope.sender:
        blocks[0].append(f"X-Pigeon-Sender: rfc822; {_one_line(envelope.sender)}")
    if envelope.params.envid is not None:
        blocks[0].append(f"Original-Envelope-Id: {_xtext_if_unsafe(envelope.params.envid)}")
    blocks[0].append(f"Arrival-Date: {_date(arrival_date)}")
    for r in recipients:
        b = [f"Final-Recipient: rfc822; {_one_line(r.address)}"]
        if r.orcpt is not None:
            b.append(f"Original-Recipient: {_one_line(r.orcpt[0])}; {_xtext_if_unsafe(r.orcpt[1])}")
        elif r.original and r.original != r.address:
            b.append(f"Original-Recipient: rfc822; {_one_line(r.original)}")
        b.append(f"Action: {r.action}")
        b.append(f"Status: {r.status}")
        if r.remote_mta:
            b.append(f"Remote-MTA: dns; {_one_line(_mta_name(r.remote_mta))}")
        diag = _one_line(r.diagnostic)
        if diag:
            # RFC 3464 §2.3.6: "smtp" only for a reply from an SMTP server;
            # our own reasons use an X- type, as Postfix's "X-Postfix".
            dtype = "smtp" if r.remote_mta and _REPLY.match(diag) else "X-Pigeon"
            b.append(f"Diagnostic-Code: {dtype}; {diag}")
        if r.last_attempt:
            b.append(f"Last-Attempt-Date: {_date(r.last_attempt)}")
        if r.will_retry_until is not None:
            b.append(f"Will-Retry-Until: {_date(r.will_retry_until)}")
        blocks.append(b)
    return "\r\n\r\n".join("\r\n".join(b) for b in blocks) + "\r\n"


def _header_section(content: bytes) -> bytes:
    end = content.find(b"\r\n\r\n")
    if end < 0:
        return content if content.endswith(b"\r\n") else content + b"\r\n"
    return content[: end + 2]


def _cte(data: bytes) -> str:
    return "7bit" if data.isascii() else "8bit"


def build_dsn(
    envelope: Envelope,
    results: Iterable[DsnRecipient],
    *,
    kind: Kind,
    reporting_mta: str,
    arrival_date: float,
    content: MessageContent | None,
    now: float,
    max_lifetime: float = 432000.0,
    to: str | None = None,
) -> bytes:
    """The complete report message (see the module contract).

    `to` defaults to the envelope sender; the manager passes postmaster for
    the copy of a failed report. `content` None (content lost) leaves the
    third part out, which RFC 6522 §3 permits.
    """
    recipients = list(results)
    rcpt_to = envelope.sender if to is None else to
    subject = SUBJECTS[kind]
    if to is not None and to != envelope.sender:
        subject = "Postmaster Copy: " + subject
    boundary = f"{envelope.queue_id}.{int(now)}/{reporting_mta}"
    human = _human_part(
        kind, recipients, reporting_mta, age=now - arrival_date, lifetime=max_lifetime
    ).encode("utf-8")
    status = _status_part(envelope, recipients, reporting_mta, arrival_date).encode("utf-8")
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{_one_line(rcpt_to)}>",
        f"Subject: {subject}",
        f"Date: {_date(now)}",
        f"Message-ID: <{envelope.queue_id}.{kind}.{int(now)}@{reporting_mta}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
    ]
    parts = [b"\r\n".join(s.encode("utf-8") for s in head)]
    parts.append(
        _part(
            boundary,
            [
                "Content-Description: Notification",
                "Content-Type: text/plain; charset=utf-8",
                f"Content-Transfer-Encoding: {_cte(human)}",
            ],
            human,
        )
    )
    parts.append(
        _part(
            boundary,
            [
                "Content-Description: Delivery report",
                "Content-Type: message/delivery-status",
                f"Content-Transfer-Encoding: {_cte(status)}",
            ],
            status,
        )
    )
    if content is not None:
        with content.open() as fh:  # the message only, never a queue file's preamble
            original = fh.read()
        if kind == "failure" and envelope.params.ret != "HDRS":
            ctype, body = "message/rfc822", original
            desc = "Undelivered Message"
        else:
            ctype, body = "text/rfc822-headers", _header_section(original)
            desc = "Undelivered Message Headers" if kind == "failure" else "Message Headers"
        if body and not body.endswith(b"\r\n"):
            body += b"\r\n"
        parts.append(
            _part(
                boundary,
                [
                    f"Content-Description: {desc}",
                    f"Content-Type: {ctype}",
                    f"Content-Transfer-Encoding: {_cte(body)}",
                ],
                body,
            )
        )
    parts.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return b"".join(parts)


def _part(boundary: str, headers: list[str], body: bytes) -> bytes:
    head = "\r\n".join([f"--{boundary}", *headers, "", ""]).encode("ascii")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return b"\r\n" + head + body


def dsn_params(eight_bit: bool, smtputf8: bool) -> MailParams:
    """MAIL parameters for a report we send: BODY=8BITMIME when it carries 8-bit."""
    return MailParams(body="8BITMIME" if eight_bit else None, smtputf8=smtputf8)

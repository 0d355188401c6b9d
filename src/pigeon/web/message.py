"""The body of POST /api/send checked, and the message built with Python's email package.

Contract:
  * `parse_send(data)` takes the decoded JSON object and returns a
    `SendRequest`, or raises `Invalid` with one {"field", "message"} per
    problem (all of them, not the first only: the 400 lists them). Pure.
  * Two forms (docs/api.md, "POST /api/send"):
      - structured: `from` (an address, or {"name", "address"}), `to`,
        `cc`, `bcc` (lists of the same), `subject`, `text` and/or `html`,
        `attachments` ([{"filename", "content_type", "content": base64}]),
        `headers` ({name: value}, for fields such as Reply-To or X-*; the
        ones this module writes itself are refused). Built as an
        `email.message.EmailMessage` (text, html as its alternative,
        attachments after), serialised with CRLF line ends (RFC 5322 §2.1);
        Bcc never appears in it (RFC 5322 §3.6.3: the recipients are the
        envelope's).
      - raw: `raw` (the RFC 5322 message as a string), with `from` (the
        envelope sender; else the message's From:) and `to` (the envelope
        recipients; else To:, Cc: and Bcc: of the message, Bcc: removed, as
        `sendmail -t` does: admin/localsubmit.py).
  * Header values may not hold CR or LF (no header injection); names are
    RFC 5322 §3.6.8 field names.
  * The addresses are checked here for shape only; the queue's own checks
    (admin/localsubmit.py `normalize_address`, RFC 5321 paths) run when
    the message is queued.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

__all__ = ["Invalid", "SendRequest", "parse_send", "MAX_RECIPIENTS"]

#: Recipients of one message over the API (limits.recipients bounds it further).
MAX_RECIPIENTS = 1000
_FIELD_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 §3.6.8 ftext
#: Fields the structured form writes itself (or that only the server may).
OWN_FIELDS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "received",
        "return-path",
        "dkim-signature",
    }
)
STRUCTURED = ("from", "to", "cc", "bcc", "subject", "text", "html", "attachments", "headers")


class Invalid(Exception):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


@dataclass(slots=True)
class SendRequest:
    sender: str | None  # the envelope sender, None: the message's From:
    recipients: list[str]  # empty: taken from the message (raw form)
    message: bytes
    extract: bool = False


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field_name: str, message: str) -> None:
        self.items.append({"field": field_name, "message": message})


def _clean(value: Any) -> bool:
    return isinstance(value, str) and "\r" not in value and "\n" not in value


def _mailbox(value: Any, where: str, errors: _Errors) -> tuple[str, str] | None:
    """(display name, address) of an address or {"name", "address"} value."""
    name, addr = "", value
    if isinstance(value, dict):
        name, addr = value.get("name", ""), value.get("address")
        if not _clean(name):
            errors.add(where, "name must be a string on one line")
            return None
    if not _clean(addr) or not addr.strip():
        errors.add(where, "must be an address (a string) or {name, address}")
        return None
    addr = addr.strip()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in addr):
        errors.add(where, f"not an address: {addr!r}")
        return None
    return name, addr


def _mailboxes(data: dict[str, Any], key: str, errors: _Errors) -> list[tuple[str, str]]:
    value = data.get(key, [])
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list):
        errors.add(key, "must be a list of addresses")
        return []
    out = [_mailbox(v, f"{key}[{i}]", errors) for i, v in enumerate(value)]
    return [m for m in out if m is not None]


def _attachments(data: dict[str, Any], errors: _Errors) -> list[tuple[str, str, str, bytes]]:
    value = data.get("attachments", [])
    if not isinstance(value, list):
        errors.add("attachments", "must be a list")
        return []
    out = []
    for i, item in enumerate(value):
        where = f"attachments[{i}]"
        if not isinstance(item, dict):
            errors.add(where, "must be an object {filename, content_type, content}")
            continue
        filename = item.get("filename", "")
        ctype = item.get("content_type", "application/octet-stream")
        if not _clean(filename) or not filename:
            errors.add(f"{where}.filename", "must be a non-empty string on one line")
            continue
        if not _clean(ctype) or not re.fullmatch(r"[\w.+-]+/[\w.+-]+", ctype):
            errors.add(f"{where}.content_type", "must be a MIME type such as text/plain")
            continue
        try:
            content = base64.b64decode(item.get("content", ""), validate=True)
        except (binascii.Error, TypeError, ValueError):
            errors.add(f"{where}.content", "must be base64")
            continue
        maintype, subtype = ctype.lower().split("/", 1)
        out.append((filename, maintype, subtype, content))
    return out


def _headers(data: dict[str, Any], errors: _Errors) -> list[tuple[str, str]]:
    value = data.get("headers", {})
    if not isinstance(value, dict):
        errors.add("headers", "must be an object {name: value}")
        return []
    out = []
    for name, text in value.items():
        where = f"headers.{name}"
        if not _FIELD_NAME.match(name):
            errors.add(where, "not a header field name")
        elif name.lower() in OWN_FIELDS:
            errors.add(where, "set by its own field of the request, or by the server")
        elif not _clean(text):
            errors.add(where, "must be a string on one line (no CR or LF)")
        else:
            out.append((name, text))
    return out


def _structured(data: dict[str, Any], errors: _Errors) -> SendRequest | None:
    unknown = sorted(set(data) - set(STRUCTURED))
    for key in unknown:
        errors.add(key, "unknown field")
    sender = _mailbox(data["from"], "from", errors) if "from" in data else None
    if "from" not in data:
        errors.add("from", "required")
    to, cc, bcc = (_mailboxes(data, k, errors) for k in ("to", "cc", "bcc"))
    if not (to or cc or bcc) and not any(
        e["field"].startswith(("to", "cc", "bcc")) for e in errors.items
    ):
        errors.add("to", "give at least one recipient (to, cc or bcc)")
    if len(to) + len(cc) + len(bcc) > MAX_RECIPIENTS:
        errors.add("to", f"at most {MAX_RECIPIENTS} recipients")
    subject = data.get("subject", "")
    if not _clean(subject):
        errors.add("subject", "must be a string on one line")
    text, html = data.get("text"), data.get("html")
    for key, part in (("text", text), ("html", html)):
        if part is not None and not isinstance(part, str):
            errors.add(key, "must be a string")
    if text is None and html is None:
        errors.add("text", "give text, html or both")
    attachments = _attachments(data, errors)
    headers = _headers(data, errors)
    if errors.items or sender is None:
        return None
    msg = EmailMessage()
    msg["From"] = email.utils.formataddr(sender)
    if to:
        msg["To"] = ", ".join(email.utils.formataddr(m) for m in to)
    if cc:
        msg["Cc"] = ", ".join(email.utils.formataddr(m) for m in cc)
    if subject:
        msg["Subject"] = subject
    for name, value in headers:
        msg[name] = value
    if text is not None:
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    else:
        msg.set_content(html, subtype="html")
    for filename, maintype, subtype, content in attachments:
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return SendRequest(
        sender=sender[1],
        recipients=[m[1] for m in to + cc + bcc],
        message=msg.as_bytes(policy=SMTP),
    )


def _raw(data: dict[str, Any], errors: _Errors) -> SendRequest | None:
    for key in sorted(set(data) - {"raw", "from", "to"}):
        errors.add(key, "unknown field (the raw form takes raw, from and to)")
    raw = data["raw"]
    if not isinstance(raw, str) or not raw.strip():
        errors.add("raw", "must be the message, a non-empty string")
    sender = _mailbox(data["from"], "from", errors) if "from" in data else None
    rcpts = _mailboxes(data, "to", errors)
    if errors.items:
        return None
    return SendRequest(
        sender=sender[1] if sender else None,
        recipients=[m[1] for m in rcpts],
        message=raw.encode("utf-8"),
        extract=not rcpts,
    )


def parse_send(data: dict[str, Any]) -> SendRequest:
    """See the module contract."""
    errors = _Errors()
    built = _raw(data, errors) if "raw" in data else _structured(data, errors)
    if built is None or errors.items:
        raise Invalid(errors.items)
    return built

"""A stored message as the HTTP API shows it: summary, detail, attachments, search.

Contract:
  * Pure: bytes of an RFC 5322 message in (as a Maildir file holds it),
    JSON-ready values out; no file or network access.
  * `summary(header_bytes)`: the header fields a list shows (from, to, cc,
    subject, date, message_id), decoded from RFC 2047 encoded-words.
  * `detail(data)`: the same fields, every header field in order
    ([name, value], decoded), the text/plain and text/html bodies decoded
    (RFC 2045 §6 transfer encodings, the part's charset, RFC 2046 §4.1.2;
    lines ended by "\n"),
    and the attachments listed: every leaf part that is not the first
    text/plain or text/html body of the message (RFC 2183 disposition, or
    any other type), each with its index, filename, content type and
    decoded size. Nested message/rfc822 parts are one attachment each.
  * `attachment(data, n)`: (content type, filename, decoded octets) of
    attachment n of `detail`'s list; IndexError when there is none.
  * `matches(msg_bytes, query)`: whether a message matches a search
    (`Query`: case-insensitive substrings of From, To/Cc, Subject and of
    the decoded text bodies); `header_section(data)` cuts the header
    section off a message for the searches that need no body.
  * A malformed message never raises here: a header field that does not
    decode is shown as its raw text, a part whose charset is unknown is
    decoded with replacement characters (RFC 2045 §5.2 defaults apply).
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

__all__ = ["Query", "attachment", "detail", "header_section", "matches", "summary"]

#: The fields a message list shows (RFC 5322 §3.6).
SUMMARY_FIELDS = ("from", "to", "cc", "subject", "date", "message-id")
#: At most this many octets of a header section are parsed for a summary.
HEADER_MAX = 64 * 1024

_PARSER = BytesParser(policy=email.policy.default)
_HEADERS = BytesParser(policy=email.policy.default)


@dataclass(frozen=True, slots=True)
class Query:
    """A search: each given field must contain its text (case-insensitive)."""

    sender: str | None = None
    recipient: str | None = None
    subject: str | None = None
    text: str | None = None

    def __bool__(self) -> bool:
        return any((self.sender, self.recipient, self.subject, self.text))


def header_section(data: bytes) -> bytes:
    """The header section of `data` (RFC 5322 §2.1: up to the first empty line),
    at most HEADER_MAX octets."""
    head = data[:HEADER_MAX]
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = head.find(sep)
        if at >= 0:
            return head[: at + len(sep)]
    return head


def _value(msg: Message, name: str) -> str | None:
    """The decoded value of field `name` (several: joined with ", "), or None."""
    try:
        values = msg.get_all(name)
    except Exception:  # a field the parser cannot make sense of
        values = None
    if not values:
        return None
    out = []
    for v in values:
        try:
            out.append(str(v))
        except Exception:
            out.append(getattr(v, "_raw", "") or "")
    return ", ".join(" ".join(s.split()) for s in out)


def _fields(msg: Message) -> dict[str, str | None]:
    return {name.replace("-", "_"): _value(msg, name) for name in SUMMARY_FIELDS}


def summary(header_bytes: bytes) -> dict[str, str | None]:
    """The list fields of a message's header section (see the contract)."""
    return _fields(_HEADERS.parsebytes(header_bytes, headersonly=True))


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "us-ascii"  # RFC 2045 §5.2
    try:
        text = payload.decode(charset, errors="replace")
    except LookupError:  # an unknown charset
        text = payload.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n")


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    return " ".join(str(name).split()) if name else None


def _walk(msg: Message) -> tuple[Message | None, Message | None, list[Message]]:
    """(text body, html body, attachments) of a message (see the contract)."""
    text = html = None
    attachments: list[Message] = []
    stack: list[Message] = [msg]
    while stack:
        part = stack.pop(0)
        ctype = part.get_content_type()
        if part.is_multipart() and ctype != "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list):
                stack[0:0] = [p for p in payload if isinstance(p, Message)]
            continue
        disposition = (part.get_content_disposition() or "").lower()
        inline_text = disposition != "attachment" and _filename(part) is None
        if ctype == "text/plain" and text is None and inline_text:
            text = part
        elif ctype == "text/html" and html is None and inline_text:
            html = part
        else:
            attachments.append(part)
    return text, html, attachments


def _octets(part: Message) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return inner[0].as_bytes(policy=email.policy.SMTP)
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _parse(data: bytes) -> EmailMessage:
    msg = _PARSER.parsebytes(data)
    assert isinstance(msg, EmailMessage)
    return msg


def detail(data: bytes) -> dict[str, Any]:
    """The whole view of one message (see the module contract)."""
    msg = _parse(data)
    text, html, attachments = _walk(msg)
    headers = []
    for name in msg.keys():
        value = _value(msg, name)
        if value is not None and [name, value] not in headers:
            headers.append([name, value])
    return {
        **_fields(msg),
        "headers": headers,
        "text": _text(text) if text is not None else None,
        "html": _text(html) if html is not None else None,
        "attachments": [
            {
                "index": n,
                "filename": _filename(part),
                "content_type": part.get_content_type(),
                "size": len(_octets(part)),
            }
            for n, part in enumerate(attachments)
        ],
    }


def attachment(data: bytes, n: int) -> tuple[str, str | None, bytes]:
    """(content type, filename, octets) of attachment `n` (IndexError: none)."""
    if n < 0:
        raise IndexError(n)
    part = _walk(_parse(data))[2][n]
    return part.get_content_type(), _filename(part), _octets(part)


def _contains(value: str | None, wanted: str | None) -> bool:
    return wanted is None or (value is not None and wanted.casefold() in value.casefold())


def matches(data: bytes, query: Query) -> bool:
    """Whether the message `data` matches `query` (see the contract); `data`
    may be the header section alone when `query.text` is None."""
    if query.text is None:
        fields = summary(header_section(data))
    else:
        msg = _parse(data)
        fields = _fields(msg)
        text, html, _ = _walk(msg)
        body = "\n".join(_text(p) for p in (text, html) if p is not None)
        if not _contains(body, query.text):
            return False
    recipients = ", ".join(v for v in (fields["to"], fields["cc"]) if v)
    return (
        _contains(fields["from"], query.sender)
        and _contains(recipients or None, query.recipient)
        and _contains(fields["subject"], query.subject)
    )

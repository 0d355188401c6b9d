"""Local submission (what Postfix's postdrop + pickup + cleanup do for sendmail).

Contract:
  * `prepare(raw, ...)` turns the bytes an application piped into
    `sendmail` into the message pigeon queues, and the recipients:
      - line endings become CRLF (LF, CRLF and a lone CR all end a line),
        so the queue holds the same canonical form as SMTP mail;
      - a leading mbox "From " line is dropped;
      - with `extract` (-t), recipients are taken from To:, Cc: and Bcc:
        (Resent-To/Cc/Bcc instead when any Resent- field is present, as
        RFC 5322 §3.6.6 asks) and ADDED to the given ones; every Bcc: (or
        Resent-Bcc:) field is removed;
      - From:, Date: and Message-ID: are added when missing (RFC 5322 §3.6
        requires From and Date), From built from the sender and `fullname`;
      - a Received: field "from local user (uid N) by HOST (pigeon) with
        local id ID" is put first, so the hop count and the history show
        where the message entered.
    Addresses without a domain get `domain` (the primary local domain),
    like Postfix's myorigin. Invalid addresses raise `SubmitError` with
    code EX_NOUSER (67); no recipient at all is EX_USAGE (64).
  * With a `signer` (`[dkim]`: the From domain has keys), the DKIM
    signatures are made over the message as it is queued (our Received:
    field included) and put on top (docs/mail-auth.md, "Signing"); mail
    from local users is our users' mail. A failure is EX_TEMPFAIL.
  * `enqueue(store, prepared, ...)` writes it through the ordinary
    QueueStore path (new_spool, write, commit: the same group commit and
    fsync as SMTP mail), so once it returns the message is durable. Store
    errors raise `SubmitError` with EX_TEMPFAIL (75): the caller may retry.
    `spool_message` is its first half (spool written, not committed), for
    the server's submit socket, which commits asynchronously
    (pigeon.admin.submitsock).
  * Pure apart from `enqueue`: the clock and ids are arguments.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pigeon.proto.params import MailParams
from pigeon.queue.model import Envelope, Recipient
from pigeon.signing.signer import DkimSigner, SigningError
from pigeon.vocab.address import PathError, parse_path

__all__ = [
    "Prepared",
    "SubmitError",
    "enqueue",
    "message_bytes",
    "normalize_address",
    "prepare",
    "prepare_raw",
    "spool_message",
    "EX_USAGE",
    "EX_DATAERR",
    "EX_NOUSER",
    "EX_SOFTWARE",
    "EX_TEMPFAIL",
    "EX_CONFIG",
]

EX_USAGE, EX_DATAERR, EX_NOUSER, EX_SOFTWARE = 64, 65, 67, 70
EX_CANTCREAT, EX_TEMPFAIL, EX_NOPERM, EX_CONFIG = 73, 75, 77, 78

_HEADER_NAME = re.compile(rb"^[!-9;-~]+:")


class SubmitError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Prepared:
    headers: list[bytes]  # each a whole field, CRLF-terminated, folded lines included
    body: bytes  # CRLF lines; starts after the empty line
    recipients: list[str] = field(default_factory=list)
    has_header_section: bool = True


def to_crlf(data: bytes) -> bytes:
    """Every line ending (CRLF, LF, lone CR) as CRLF."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def split_message(data: bytes) -> tuple[list[bytes], bytes, bool]:
    """(header fields, body, had a header section) of CRLF `data`."""
    if data.startswith(b"From "):
        data = data.split(b"\r\n", 1)[1] if b"\r\n" in data else b""
    lines = data.split(b"\r\n")
    fields: list[bytes] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line == b"":
            i += 1
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        elif _HEADER_NAME.match(line):
            fields.append(line + b"\r\n")
        else:
            break  # not a header: the body starts here
        i += 1
    rest = b"\r\n".join(lines[i:])
    if not fields:
        return [], data, False
    return fields, rest, True


def _name(f: bytes) -> str:
    return f.split(b":", 1)[0].decode("ascii", "replace").strip().lower()


def _value(f: bytes) -> str:
    raw = f.split(b":", 1)[1].decode("utf-8", "replace")
    return re.sub(r"\r\n[ \t]", " ", raw).strip()


def normalize_address(text: str, domain: str) -> str:
    """`text` as a queue address (domain added when missing); SubmitError EX_NOUSER if invalid."""
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if "@" not in text and text:
        text = f"{text}@{domain}"
    try:
        addr = parse_path(f"<{text}>", allow_null=False, smtputf8=True)
    except PathError as exc:
        raise SubmitError(f"{text or '<>'}: bad recipient address ({exc})", EX_NOUSER) from None
    return str(addr)


def prepare(
    raw: bytes,
    *,
    recipients: list[str],
    extract: bool,
    sender: str,
    fullname: str,
    hostname: str,
    domain: str,
) -> Prepared:
    """See the module contract (the Received: field is added by `enqueue`)."""
    fields, body, had = split_message(to_crlf(raw))
    rcpts = [normalize_address(r, domain) for r in recipients]
    if extract:
        resent = any(_name(f).startswith("resent-") for f in fields)
        wanted = {"resent-to", "resent-cc", "resent-bcc"} if resent else {"to", "cc", "bcc"}
        values = [_value(f) for f in fields if _name(f) in wanted]
        for _, addr in email.utils.getaddresses(values):
            if addr:
                rcpts.append(normalize_address(addr, domain))
        fields = [f for f in fields if _name(f) not in ("bcc", "resent-bcc")]
    rcpts = list(dict.fromkeys(rcpts))
    if not rcpts:
        raise SubmitError(
            "no recipient addresses found"
            + (" in the message header" if extract else " (give some, or use -t)"),
            EX_USAGE,
        )
    names = {_name(f) for f in fields}
    added: list[bytes] = []
    if "from" not in names:
        shown = sender or f"MAILER-DAEMON@{hostname}"
        from_value = email.utils.formataddr((fullname, shown)) if fullname else shown
        added.append(f"From: {from_value}\r\n".encode())
    if "date" not in names:
        added.append(f"Date: {email.utils.formatdate(localtime=True)}\r\n".encode())
    if "message-id" not in names:
        added.append(f"Message-ID: {email.utils.make_msgid(domain=hostname)}\r\n".encode())
    return Prepared(fields + added, body, rcpts, had)


def prepare_raw(raw: bytes, *, recipients: list[str], domain: str) -> Prepared:
    """The message as given (sendmail -bs: no fix-ups), CRLF, with checked recipients."""
    fields, body, had = split_message(to_crlf(raw))
    rcpts = list(dict.fromkeys(normalize_address(r, domain) for r in recipients))
    if not rcpts:
        raise SubmitError("no recipient addresses given", EX_USAGE)
    return Prepared(fields, body, rcpts, had)


def message_bytes(prepared: Prepared) -> bytes:
    """The prepared message as it is queued: header fields, empty line, body (CRLF)."""
    content = b"".join(prepared.headers) + b"\r\n" + prepared.body
    if prepared.body and not prepared.body.endswith(b"\r\n"):
        content += b"\r\n"
    return content


def received_field(*, hostname: str, queue_id: str, uid: int, timestamp: float) -> bytes:
    date = email.utils.format_datetime(datetime.fromtimestamp(timestamp, UTC))
    return (
        f"Received: from local user (uid {uid})\r\n\tby {hostname} (pigeon) "
        f"with local id {queue_id};\r\n\t{date}\r\n"
    ).encode()


def spool_message(
    store,
    prepared: Prepared,
    *,
    sender: str,
    hostname: str,
    uid: int,
    now: float,
    max_size: int = 0,
    signer: DkimSigner | None = None,
    trace: Callable[[str], bytes] | None = None,
    protocol: str = "local",
) -> tuple[Any, Envelope]:
    """Write the message into a new spool of `store`; (spool, envelope), not yet committed.
    SubmitError on failure (the spool is discarded). `trace(queue_id)` makes the
    Received: field when it is not the local user's (the HTTP API's)."""
    from pigeon.vocab.errors import StoreError

    try:
        spool = store.new_spool()
    except StoreError as exc:
        raise SubmitError(f"cannot queue the message: {exc}", EX_TEMPFAIL) from None
    try:
        received = (
            trace(spool.queue_id)
            if trace is not None
            else received_field(hostname=hostname, queue_id=spool.queue_id, uid=uid, timestamp=now)
        )
        content = received + message_bytes(prepared)
        if max_size and len(content) > max_size:
            raise SubmitError(
                f"message too big: {len(content)} octets, the limit is {max_size}", EX_DATAERR
            )
        if signer:  # DKIM signatures on top of the message as stored (pigeon.signing)
            try:
                content = b"".join(signer.signatures(content)) + content
            except SigningError as exc:
                raise SubmitError(f"cannot sign the message: {exc}", EX_TEMPFAIL) from None
        eight_bit = not content.isascii()
        utf8 = not (sender.isascii() and all(r.isascii() for r in prepared.recipients))
        env = Envelope(
            spool.queue_id,
            sender,
            [Recipient(r) for r in prepared.recipients],
            params=MailParams(body="8BITMIME" if eight_bit else None, smtputf8=utf8),
            received_at=now,
            size=len(content),
            eight_bit=eight_bit,
            client_address="",
            client_helo="",
            protocol=protocol,
        )
        spool.envelope = env  # into the file's preamble, should it spill
        spool.write(content)
    except BaseException as exc:
        spool.discard()
        if isinstance(exc, StoreError):
            raise SubmitError(f"cannot queue the message: {exc}", EX_TEMPFAIL) from None
        raise
    return spool, env


def enqueue(
    store,
    prepared: Prepared,
    *,
    sender: str,
    hostname: str,
    uid: int,
    now: float,
    max_size: int = 0,
    signer: DkimSigner | None = None,
    capture: Any = None,
) -> Envelope:
    """Write and commit the message; return its envelope. SubmitError on failure.
    `capture` (policy/capture.py `CaptureRules`): mail to a capture domain
    is committed captured (docs/capture.md)."""
    from pigeon.vocab.errors import StoreError

    spool, env = spool_message(
        store,
        prepared,
        sender=sender,
        hostname=hostname,
        uid=uid,
        now=now,
        max_size=max_size,
        signer=signer,
    )
    if capture is not None:
        capture.mark(env)
    try:
        store.commit(spool, env)
    except StoreError as exc:
        raise SubmitError(f"cannot queue the message: {exc}", EX_TEMPFAIL) from None
    return env

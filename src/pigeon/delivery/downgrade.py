"""8-bit to 7-bit MIME conversion for peers without 8BITMIME (RFC 6152 §3, RFC 2045).

RFC 6152 §3 forbids sending 8-bit data to a server that did not advertise
8BITMIME; the client must convert the message to 7 bits, return it as
undeliverable, or send it anyway at its own risk. Postfix converts
(`disable_mime_output_conversion = no`: 8bit text becomes quoted-printable),
and so do we:

  * text/* leaf parts with 8-bit octets -> quoted-printable (RFC 2045 §6.7),
    line breaks kept as CRLF, lines soft-wrapped at 76 characters;
  * any other leaf part with 8-bit octets -> base64 (RFC 2045 §6.8);
  * multipart/* and message/* containers whose declared encoding was 8bit
    or binary -> 7bit once their parts are converted (RFC 2045 §6.4: a
    composite type may only declare 7bit, 8bit or binary);
  * parts that are already 7-bit are left exactly as they are;
  * `Content-Transfer-Encoding` is replaced in place (or added at the end of
    the part's header).

Contract:
  * Whether a message has 8-bit octets is known from the queue
    (DeliveryRequest.eight_bit): nothing here scans for it.
  * `downgrade_to_7bit(src, dst)` reads the message from `src` (a
    `MessageContent`, pigeon/queue/api.py), writes the converted message to
    the open binary file `dst` with CRLF line endings and returns the number
    of octets written. `convert_to_temp(src)` does it into a private
    temporary file and returns it as a `FileMessage` (delivery/content.py:
    a MessageContent itself, so the SMTP client streams it like the
    original); its owner calls `remove()` when done. Headers are written as they were (the email package's
    compat32 policy with maxheaderlen=0 does not refold them), "From " lines
    are not mangled.
  * A message with 8-bit octets in any header (raw UTF-8 without SMTPUTF8,
    or a part header) cannot be converted: `DowngradeError` (5.6.3,
    "conversion required but not supported"), the caller bounces the
    recipients. So does a message the parser reports defects for that make
    a conversion unsafe (an unterminated multipart).
  * Memory: the message is parsed by the stdlib email package, which holds
    the parsed tree in memory while converting; input is fed to the parser
    in chunks and the output goes to a temporary file (the caller's
    `dst`), never to a bytes object. Conversion is rare (a peer without
    8BITMIME is rare today) so this cost is accepted; documented here so a
    streaming MIME rewriter can replace it if it ever matters.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import os
import tempfile
from email import errors as email_errors
from email.generator import BytesGenerator
from email.message import Message
from typing import BinaryIO

from pigeon.delivery.content import FileMessage
from pigeon.queue.api import MessageContent

CHUNK = 65536


class DowngradeError(Exception):
    """The message cannot be converted to 7 bit (report as 5.6.3)."""

    status = "5.6.3"


def _has_8bit(text: str) -> bool:
    return not text.isascii()


def _parse(src: MessageContent) -> Message:
    parser = email.parser.BytesFeedParser(policy=email.policy.compat32)
    with src.open() as f:  # the message only (no queue file preamble)
        while chunk := f.read(CHUNK):
            parser.feed(chunk)
    return parser.close()


def _check_headers(part: Message) -> None:
    for name, value in part.items():
        if _has_8bit(name) or _has_8bit(str(value)):
            raise DowngradeError(f"8-bit octets in header {name!r}: conversion not possible")


def _set_cte(part: Message, value: str) -> None:
    if "Content-Transfer-Encoding" in part:
        part.replace_header("Content-Transfer-Encoding", value)
    else:
        part["Content-Transfer-Encoding"] = value


def _qp(data: bytes) -> str:
    # Normalise line breaks to LF so "\r" is not encoded as =0D; the
    # generator writes CRLF again. b2a_qp(istext=True) keeps "\n" as a break.
    text = data.replace(b"\r\n", b"\n")
    return binascii.b2a_qp(text, quotetabs=False, istext=True, header=False).decode("ascii")


def _b64(data: bytes) -> str:
    enc = base64.b64encode(data).decode("ascii")
    return "\n".join(enc[i : i + 76] for i in range(0, len(enc), 76)) + "\n"


def _convert(part: Message) -> bool:
    """Convert `part` in place; True when anything in it was 8-bit."""
    _check_headers(part)
    cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    if part.is_multipart():
        changed = False
        for sub in part.get_payload():
            if not isinstance(sub, Message):
                raise DowngradeError("unexpected MIME structure")
            changed |= _convert(sub)
        for text in (part.preamble or "", part.epilogue or ""):
            if _has_8bit(text):
                raise DowngradeError("8-bit octets in a multipart preamble or epilogue")
        if changed or cte in ("8bit", "binary"):
            if "Content-Transfer-Encoding" in part:
                _set_cte(part, "7bit")
        return changed
    payload = part.get_payload()
    if not isinstance(payload, str):
        raise DowngradeError("unexpected MIME structure")
    if not _has_8bit(payload):
        return False
    if cte in ("quoted-printable", "base64"):
        # Declared encoded but holding raw 8-bit octets: not something we can
        # repair without guessing.
        raise DowngradeError(f"8-bit octets inside a {cte} part")
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        raise DowngradeError("unexpected MIME structure")
    if part.get_content_maintype() == "text":
        part.set_payload(_qp(data))
        _set_cte(part, "quoted-printable")
    else:
        part.set_payload(_b64(data))
        _set_cte(part, "base64")
    return True


def downgrade_to_7bit(src: MessageContent, dst: BinaryIO) -> int:
    """Write the 7-bit form of `src` to `dst`; DowngradeError if impossible."""
    msg = _parse(src)
    for defect in msg.defects:
        if isinstance(
            defect,
            (email_errors.StartBoundaryNotFoundDefect, email_errors.CloseBoundaryNotFoundDefect),
        ):
            raise DowngradeError(f"malformed MIME structure: {type(defect).__name__}")
    _convert(msg)
    start = dst.tell()
    BytesGenerator(dst, mangle_from_=False, maxheaderlen=0).flatten(msg, linesep="\r\n")
    return dst.tell() - start


def convert_to_temp(src: MessageContent) -> FileMessage:
    """The 7-bit form of `src` in a private temporary file (DowngradeError if
    impossible; nothing is left behind then). Blocking: run it in a thread."""
    fd, name = tempfile.mkstemp(prefix="pigeon-7bit-", suffix=".eml")
    try:
        with os.fdopen(fd, "wb") as dst:
            size = downgrade_to_7bit(src, dst)
    except BaseException:
        os.unlink(name)
        raise
    return FileMessage(name, size)

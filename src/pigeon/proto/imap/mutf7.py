"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3) for IMAP4rev1 clients.

IMAP4rev2 (RFC 9051 §5.1) and UTF8=ACCEPT (RFC 6855 §3) clients name
mailboxes in UTF-8; IMAP4rev1 clients use this encoding, so the server
decodes what they send and encodes what it shows them.

Contract:
  * `encode(name)` turns any Unicode name into modified UTF-7: printable
    US-ASCII (0x20-0x7E) stands for itself, "&" is "&-", every other run of
    characters is "&" + modified base64 (RFC 2152 with "," for "/", no
    padding) of its UTF-16BE form + "-".
  * `decode(text)` is the strict inverse: it raises `ValueError` for text
    that `encode` would never produce (non-ASCII octets, an unterminated or
    empty shift, padding bits set, a printable ASCII character or a lone
    surrogate inside a shift, two shifts back to back), so every name has
    exactly one spelling and `encode(decode(t)) == t` whenever decode
    succeeds.
"""

from __future__ import annotations

import base64
import binascii

_B64_STD = b"+/"
_B64_IMAP = b"+,"
_SEG_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


def _is_direct(ch: str) -> bool:
    return 0x20 <= ord(ch) <= 0x7E


def _encode_run(run: str) -> str:
    data = run.encode("utf-16-be", "surrogatepass")
    b64 = base64.b64encode(data).rstrip(b"=").replace(b"/", b",")
    return "&" + b64.decode("ascii") + "-"


def encode(name: str) -> str:
    out: list[str] = []
    run: list[str] = []
    for ch in name:
        if _is_direct(ch):
            if run:
                out.append(_encode_run("".join(run)))
                run = []
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    if run:
        out.append(_encode_run("".join(run)))
    return "".join(out)


def _decode_run(b64: str) -> str:
    if not b64 or any(c not in _SEG_ALPHABET for c in b64) or len(b64) % 4 == 1:
        raise ValueError("bad modified base64 in mailbox name")
    raw_b64 = b64.replace(",", "/")
    padded = raw_b64 + "=" * (-len(raw_b64) % 4)
    try:
        data = base64.b64decode(padded, validate=True)
    except binascii.Error:
        raise ValueError("bad modified base64 in mailbox name") from None
    # RFC 3501 §5.1.3 / RFC 2152: the bits after the last whole 16-bit unit
    # must be zero; re-encoding must give the same text.
    if len(data) % 2 or base64.b64encode(data).rstrip(b"=").decode() != raw_b64:
        raise ValueError("bad modified base64 in mailbox name")
    try:
        text = data.decode("utf-16-be")
    except UnicodeDecodeError:
        raise ValueError("lone surrogate in mailbox name") from None
    if any(_is_direct(ch) for ch in text):
        raise ValueError("printable ASCII must not be base64-encoded in a mailbox name")
    return text


def decode(text: str) -> str:
    if any(not _is_direct(ch) for ch in text):
        raise ValueError("mailbox name is not 7-bit modified UTF-7")
    out: list[str] = []
    i = 0
    last_shift_end = -1
    while i < len(text):
        ch = text[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end == -1:
            raise ValueError("unterminated '&' in mailbox name")
        if end == i + 1:
            out.append("&")
        else:
            if last_shift_end == i:
                raise ValueError("adjacent encoded runs in mailbox name")
            out.append(_decode_run(text[i + 1 : end]))
            last_shift_end = end + 1
        i = end + 1
    return "".join(out)

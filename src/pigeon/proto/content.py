"""Streaming checks over message content (DATA and BDAT alike).

Contract:
  * `ContentScanner.feed(piece)` takes unstuffed content in arbitrary pieces
    (not necessarily line-aligned) and returns False as soon as the stream
    holds a bare CR or bare LF (RFC 5321 §2.3.8: only CRLF ends a line).
    That is the one fatal outcome; the caller stops reading at once.
  * Other problems are recorded, not fatal, and reported at the end
    (`failure`) while the caller keeps consuming. When several apply, the
    first in this list wins, so the outcome never depends on how the input
    was split into pieces:
      - a line longer than `max_text_line` incl. CRLF (RFC 5321 §4.5.3.1.6)
      - a NUL octet
      - more than `max_message_size` octets (RFC 1870)
      - 8-bit octets without BODY=8BITMIME when the policy rejects them
      - a header section (up to the first empty line, RFC 5322 §2.1) longer
        than `max_header_size` octets (0 = no limit): later checks of the
        header (the From: check for logged-in users) read all of it, so it
        must be bounded
      - more than `hop_limit` Received: fields in the header (RFC 5321 §6.3)
  * `scanner_for(config, params)` is the scanner of one transaction with
    the session's settings (`proto.settings.SessionConfig`) and its MAIL
    parameters: what SMTP content and the HTTP API's messages
    (net/apisession.py) are both checked with.
  * `finish()` checks the end of the stream (a trailing CR is bare) and
    returns False on a bare CR.
  * Each feed does a handful of C-level passes (count, find, isascii,
    split, one regex over the header section); there is no per-octet or
    per-line Python loop. Across pieces only the first 9 octets of the
    current header line are kept. `header_size` is the length of the
    header section (complete lines seen so far while it has not ended).
"""

from __future__ import annotations

import re
from typing import Any

from pigeon.proto import reply as R
from pigeon.proto.reply import Reply

_PRIORITY = (
    R.MESSAGE_TOO_BIG,
    R.TEXT_LINE_TOO_LONG,
    R.NUL_IN_DATA,
    R.EIGHT_BIT_UNDECLARED,
    R.HEADER_TOO_BIG,
    R.MAIL_LOOP,
)
_REASONS = {
    R.MESSAGE_TOO_BIG: "message over size limit",
    R.TEXT_LINE_TOO_LONG: "text line too long",
    R.NUL_IN_DATA: "NUL in content",
    R.EIGHT_BIT_UNDECLARED: "8-bit content without BODY=8BITMIME",
    R.HEADER_TOO_BIG: "header section over size limit",
    R.MAIL_LOOP: "too many Received: headers",
}
_RECEIVED_AT_LINE_START = re.compile(rb"(?:^|\n)received:", re.IGNORECASE)


def scanner_for(cfg: Any, params: Any) -> ContentScanner:
    """The content checks of one transaction (module contract)."""
    declared = params.body == "8BITMIME" or params.smtputf8
    return ContentScanner(
        max_text_line=cfg.max_text_line,
        max_size=cfg.max_message_size,
        hop_limit=cfg.hop_limit,
        max_header_size=cfg.max_header_size,
        reject_8bit=cfg.eight_bit_undeclared == "reject" and not declared,
    )


class ContentScanner:
    __slots__ = (
        "max_text_line",
        "max_size",
        "hop_limit",
        "reject_8bit",
        "max_header_size",
        "size",
        "eight_bit",
        "received",
        "header_size",
        "_failures",
        "_pending_cr",
        "_line_len",
        "_in_headers",
        "_hdr_tail",
    )

    def __init__(
        self,
        *,
        max_text_line: int,
        max_size: int,
        hop_limit: int,
        reject_8bit: bool,
        max_header_size: int = 0,
    ) -> None:
        self.max_text_line = max_text_line
        self.max_size = max_size  # 0 = unlimited
        self.hop_limit = hop_limit
        self.reject_8bit = reject_8bit
        self.max_header_size = max_header_size  # 0 = unlimited
        self.size = 0
        self.eight_bit = False
        self.received = 0
        self.header_size = 0
        self._failures: set[Reply] = set()
        self._pending_cr = False  # the last octet fed was CR
        self._line_len = 0  # octets of the current line so far
        self._in_headers = True
        self._hdr_tail = b""  # start (<= 9 octets) of the current header line

    @property
    def failed(self) -> bool:
        return bool(self._failures)

    @property
    def failure(self) -> Reply | None:
        """The reply for the most important problem found, or None."""
        for candidate in _PRIORITY:
            if candidate in self._failures:
                return candidate
        return None

    @property
    def reason(self) -> str:
        f = self.failure
        return _REASONS[f] if f is not None else ""

    def _fail(self, failure: Reply) -> None:
        self._failures.add(failure)

    def feed(self, piece: bytes) -> bool:
        if not piece:
            return True
        # Bare CR/LF: every LF must follow a CR and every CR precede an LF.
        crlf = piece.count(b"\r\n")
        if self._pending_cr and piece[0] == 0x0A:
            crlf += 1
        trailing_cr = piece[-1] == 0x0D
        crs = piece.count(b"\r") + self._pending_cr - trailing_cr
        if piece.count(b"\n") != crlf or crs != crlf:
            return False
        self._pending_cr = trailing_cr
        self.size += len(piece)
        if self.max_size and self.size > self.max_size:
            self._fail(R.MESSAGE_TOO_BIG)
        if R.MESSAGE_TOO_BIG in self._failures:
            return True  # the outcome is settled; only framing matters now
        if not piece.isascii():
            self.eight_bit = True
            if self.reject_8bit:
                self._fail(R.EIGHT_BIT_UNDECLARED)
        if b"\x00" in piece:
            self._fail(R.NUL_IN_DATA)
        self._check_lines(piece)
        if self._in_headers:
            self._scan_headers(piece)
        return True

    def _check_lines(self, piece: bytes) -> None:
        limit = self.max_text_line
        lf = piece.find(b"\n")
        if lf == -1:
            self._line_len += len(piece)
            if self._line_len > limit:
                self._fail(R.TEXT_LINE_TOO_LONG)
            return
        if self._line_len + lf + 1 > limit:
            self._fail(R.TEXT_LINE_TOO_LONG)
        last = piece.rfind(b"\n")
        if last > lf and len(piece) > limit and R.TEXT_LINE_TOO_LONG not in self._failures:
            # Only a span longer than the limit can hold a too-long line.
            if _has_long_line(piece, lf + 1, last, limit):
                self._fail(R.TEXT_LINE_TOO_LONG)
        self._line_len = len(piece) - last - 1
        if self._line_len > limit:
            self._fail(R.TEXT_LINE_TOO_LONG)

    def _scan_headers(self, piece: bytes) -> None:
        # Header section = lines up to the first empty line (RFC 5322 §2.1).
        # `_hdr_tail` always starts at a line start, so "^" below is one too.
        text = self._hdr_tail + piece
        last = text.rfind(b"\n")
        if last == -1:
            self._hdr_tail = text[:9]
            return
        region = text[: last + 1]  # complete lines only
        if region.startswith(b"\r\n"):
            end = 0
        else:
            e = region.find(b"\n\r\n")
            end = e + 1 if e != -1 else -1
        if end >= 0:
            region = region[:end]
            self._in_headers = False
            self._hdr_tail = b""
            # self.size already counts the whole piece: take back what follows the section.
            self.header_size = self.size - (len(text) - end)
        else:
            self._hdr_tail = text[last + 1 :][:9]
            self.header_size = self.size - (len(text) - last - 1)  # complete lines so far
        self.received += len(_RECEIVED_AT_LINE_START.findall(region))
        if self.received > self.hop_limit:
            self._fail(R.MAIL_LOOP)  # keep measuring the section: the outcome must not
            # depend on where the pieces were split
        if self.max_header_size and self.header_size > self.max_header_size:
            self._fail(R.HEADER_TOO_BIG)
            self._in_headers = False  # no need to look further

    def finish(self) -> bool:
        """End of content. False when the content ended in a bare CR."""
        if self._pending_cr:
            return False
        if self.received > self.hop_limit:
            self._fail(R.MAIL_LOOP)
        return True


def _has_long_line(data: bytes, start: int, end: int, limit: int) -> bool:
    """Whether a line in data[start:end] (complete lines: `start` is a line
    start, data[end] is the LF ending the last one) is `limit` octets or
    longer with its LF (RFC 5321 §4.5.3.1.6 counts the CRLF).

    Hops a window of `limit` octets at a time to the last LF in it: a window
    without an LF is a too-long line. About len/limit C-level rfind calls,
    instead of splitting every line into its own bytes object.
    """
    pos = start
    while pos + limit <= end:
        nl = data.rfind(b"\n", pos, pos + limit)
        if nl == -1:
            return True
        pos = nl + 1
    return False

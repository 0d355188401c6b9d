"""Bounded command-line reader (RFC 5321 §2.3.8, §4.5.3.1.4).

Contract:
  * `CommandLineReader.next_line(buf)` removes one command line from the
    front of the session's receive buffer `buf` (a bytearray) and returns
    either the line without its CRLF, an error `Reply`, or None when more
    bytes are needed. It never looks further than the longest allowed line.
  * Rule 1: a line is at most `max_line` octets including CRLF, or
    `max_long_line` for MAIL/RCPT (which carry ESMTP parameters). A longer
    line is discarded as it arrives (nothing beyond the limit is kept),
    skipped up to its LF, and answered once with LINE_TOO_LONG.
  * Rule 2: only CRLF ends a line. A line ending in a bare LF, or holding a
    CR anywhere else, is answered with BAD_LINE_ENDING; the LF still ends it
    so the session can resynchronise.
  * Rule 3: a NUL octet in a command line -> NUL_IN_COMMAND.
  * The caller keeps at most `max_long_line` unprocessed octets of a partial
    line per call, so memory per session stays bounded.
"""

from __future__ import annotations

from pigeon.proto import reply as R
from pigeon.proto.commands import is_long_line_verb
from pigeon.proto.reply import Reply


class CommandLineReader:
    __slots__ = ("max_line", "max_long_line", "_skipping")

    def __init__(self, max_line: int, max_long_line: int) -> None:
        self.max_line = max_line
        self.max_long_line = max(max_line, max_long_line)
        self._skipping = False

    @property
    def skipping(self) -> bool:
        """True while discarding the rest of an over-long line."""
        return self._skipping

    def next_line(self, buf: bytearray) -> bytes | Reply | None:
        if self._skipping:
            lf = buf.find(b"\n")
            if lf == -1:
                buf.clear()
                return None
            del buf[: lf + 1]
            self._skipping = False
            return R.LINE_TOO_LONG
        lf = buf.find(b"\n", 0, self.max_long_line)
        limit = self.max_long_line if is_long_line_verb(buf[:5]) else self.max_line
        if lf == -1:
            if len(buf) >= limit:  # the LF cannot come within the limit
                self._skipping = True
                return self.next_line(buf)
            return None
        if lf + 1 > limit:
            del buf[: lf + 1]
            return R.LINE_TOO_LONG
        line = bytes(buf[:lf])
        del buf[: lf + 1]
        if not line.endswith(b"\r") or b"\r" in line[:-1]:
            return R.BAD_LINE_ENDING
        line = line[:-1]
        if b"\x00" in line:
            return R.NUL_IN_COMMAND
        return line

"""Content readers: DATA (dot-terminated, RFC 5321 §4.1.1.4) and BDAT chunks (RFC 3030).

Contract:
  * Both readers consume from the front of the session's receive buffer (a
    bytearray) and return `(piece, status)`: `piece` is unstuffed content to
    hand to the driver (None when there is nothing to emit, or the content
    has already failed a check), `status` one of MORE / DONE / BARE.
  * `DotReader` rules (the "SMTP smuggling" defence):
      Rule 1: only <CR><LF>.<CR><LF> ends DATA. The DATA command's own CRLF
              counts as the first CRLF, so ".<CR><LF>" right away ends an
              empty message.
      Rule 2: every octet before the end marker goes through
              `ContentScanner.feed`, which reports any bare CR or bare LF;
              the reader then returns BARE and consumes nothing further. A
              lone CR inside a still-incomplete line is reported at once.
      Rule 3: dot-unstuffing removes exactly one "." at the start of a line
              (RFC 5321 §4.5.2).
      Rule 4: at most `max_text_line` octets of an incomplete line are held
              back; a longer one is passed on (the scanner marks it too long),
              keeping only a trailing CR so a CRLF split across reads is seen.
    Scanning works on whole buffers with bytes.find/count/replace.
  * `ChunkReader` consumes exactly `size` octets, no dot-stuffing. A bare
    CR/LF makes the chunk fail (`bare` is set) but the remaining octets are
    still consumed; `discard=True` consumes without checking or emitting.
"""

from __future__ import annotations

from pigeon.proto.content import ContentScanner

MORE = "more"
DONE = "done"
BARE = "bare"

_END = b"\r\n.\r\n"


class DotReader:
    __slots__ = ("scanner", "max_text_line", "_bol")

    def __init__(self, scanner: ContentScanner, max_text_line: int) -> None:
        self.scanner = scanner
        self.max_text_line = max_text_line
        self._bol = True  # at the beginning of a line (the DATA CRLF counts)

    def _out(self, piece: bytes) -> bytes | None:
        return None if self.scanner.failed or not piece else piece

    def read(self, buf: bytearray) -> tuple[bytes | None, str]:
        n = len(buf)
        if not n:
            return None, MORE
        last_lf = buf.rfind(b"\n")
        if last_lf == -1:
            if buf.find(b"\r", 0, n - 1) != -1:  # a CR not followed by LF
                return None, BARE
            if n <= self.max_text_line:
                return None, MORE
            take = n - 1 if buf[-1] == 0x0D else n
            raw = bytes(buf[:take])
            del buf[:take]
            if self._bol and raw[:1] == b".":
                raw = raw[1:]
            self._bol = False
            if not self.scanner.feed(raw):
                return None, BARE
            return self._out(raw), MORE
        end = last_lf + 1
        if self._bol and buf.startswith(b".\r\n"):
            term = 0
        else:
            t = buf.find(_END, 0, end)
            term = t + 2 if t != -1 else -1
        stop = term if term >= 0 else end
        raw = bytes(buf[:stop])
        if self._bol and raw[:1] == b".":
            raw = raw[1:]
        piece = raw.replace(b"\r\n.", b"\r\n") if b"\r\n." in raw else raw
        if not self.scanner.feed(piece):
            return None, BARE
        if term >= 0:
            del buf[: stop + 3]
            if not self.scanner.finish():
                return None, BARE
            return self._out(piece), DONE
        del buf[:stop]
        self._bol = True
        if buf.find(b"\r", 0, len(buf) - 1) != -1:  # bare CR in the partial tail
            return None, BARE
        return self._out(piece), MORE


class ChunkReader:
    __slots__ = ("scanner", "size", "remaining", "last", "discard", "bare")

    def __init__(
        self, scanner: ContentScanner | None, size: int, last: bool, discard: bool
    ) -> None:
        self.scanner = scanner
        self.size = size
        self.remaining = size
        self.last = last
        self.discard = discard or scanner is None
        self.bare = False

    def read(self, buf: bytearray) -> tuple[bytes | None, str]:
        take = min(self.remaining, len(buf))
        raw = bytes(buf[:take]) if not self.discard else b""
        del buf[:take]
        self.remaining -= take
        status = DONE if self.remaining == 0 else MORE
        if self.discard or not raw:
            return None, status
        assert self.scanner is not None
        if not self.scanner.feed(raw):
            self.bare = True
            self.discard = True
            return None, status
        return (None if self.scanner.failed else raw), status

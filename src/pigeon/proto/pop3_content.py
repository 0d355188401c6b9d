"""A message as POP3 sends it: CRLF lines, dot-stuffed, ended by "." (RFC 1939 §3).

    encoder = MessageEncoder(body_lines=None)      # RETR; TOP n m: body_lines=m
    for chunk in chunks_of_the_file:
        out = encoder.feed(chunk)                  # bytes to send now (maybe b"")
        if encoder.done: break                     # TOP: the lines asked for are out
    out = encoder.finish()                         # the rest, then ".<CRLF>"

Contract:
  * Line endings become CRLF whatever the file holds (LF as pigeon's local
    delivery writes, or CRLF); a bare CR inside a line is left alone.
  * Byte-stuffing (RFC 1939 §3): a line beginning with "." gets one more
    "." in front; the terminating line is "." alone. A last line without
    a line ending gets CRLF, so the terminator always starts a line.
  * TOP (RFC 1939 §7): with `body_lines=m`, the header section, the empty
    line after it and at most `m` lines of the body; a message without a
    body (no empty line) is sent whole.
  * Bounded memory: a line is held back only until its end arrives or
    `MAX_HELD` octets of it are waiting; then its start is sent as it is
    (without stuffing the continuation, which is not a line start).
  * `crlf_size(data)` (the message, or its pieces) is the size `MessageEncoder` sends for `data` before
    stuffing and without the terminator: the "exact size" STAT, LIST and
    the RETR reply give (RFC 1939 §5). Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["MAX_HELD", "MessageEncoder", "crlf_size"]

#: Octets of one unfinished line held back before its start is sent.
MAX_HELD = 64 * 1024


def crlf_size(data: bytes | Iterable[bytes]) -> int:
    """Octets of `data` (bytes, or its pieces in order) with every line ended by
    CRLF (see the module contract)."""
    size = lf = crlf = 0
    pending_cr, last = False, b""
    for chunk in [data] if isinstance(data, bytes) else data:
        if not chunk:
            continue
        size += len(chunk)
        lf += chunk.count(b"\n")
        crlf += chunk.count(b"\r\n") + (pending_cr and chunk[:1] == b"\n")
        pending_cr, last = chunk.endswith(b"\r"), chunk[-1:]
    total = size - crlf + lf  # each LF becomes (or stays) CRLF
    if size and last != b"\n":
        total += 2  # the last line gets its CRLF
    return total


class MessageEncoder:
    """See the module contract."""

    def __init__(self, body_lines: int | None = None) -> None:
        self._held = b""
        self._line_start = True  # the next octet sent begins a line
        self._in_header = True
        self._body_left = body_lines
        self.done = False  # TOP: nothing more will be sent but the terminator

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return b""
        data = self._held + chunk
        end = data.rfind(b"\n") + 1
        self._held = data[end:]
        out = self._lines(data[:end]) if end else b""
        if len(self._held) > MAX_HELD and not self.done:
            out += self._partial()
        return out

    def finish(self) -> bytes:
        out = b""
        if self._held and not self.done:
            out += self._lines(self._held + b"\n")
        elif not self._line_start and not self.done:
            out += b"\r\n"
        self._held = b""
        self.done = True
        return out + b".\r\n"

    def _partial(self) -> bytes:
        """Send the start of an over-long line (see the contract); keep a trailing CR."""
        keep = 1 if self._held.endswith(b"\r") else 0
        part, self._held = (
            self._held[: len(self._held) - keep],
            self._held[len(self._held) - keep :],
        )
        if self._line_start and part.startswith(b"."):
            part = b"." + part
        self._line_start = False
        return part

    def _lines(self, block: bytes) -> bytes:
        """Complete lines (`block` ends with LF) to CRLF, stuffed, cut for TOP."""
        if self._in_header or self._body_left is not None:
            block = self._cut_for_top(block)
        text = block.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if self._line_start and text.startswith(b"."):
            text = b"." + text
        self._line_start = True
        return text.replace(b"\r\n.", b"\r\n..")

    def _cut_for_top(self, block: bytes) -> bytes:
        """Follow the header/body boundary; with TOP, keep only the lines asked for."""
        if self._in_header:
            start = 0 if self._line_start else block.find(b"\n") + 1
            at = _blank_line(block, start)
            if at < 0:
                return block
            self._in_header = False
            head, block = block[:at], block[at:]
            if self._body_left is None:
                return head + block
            return head + self._body(block)
        return self._body(block)

    def _body(self, block: bytes) -> bytes:
        """The body lines TOP still wants of `block` (complete lines)."""
        left = self._body_left
        if left is None:
            return block
        end = taken = 0
        while taken < left:
            nl = block.find(b"\n", end)
            if nl < 0:
                break
            end, taken = nl + 1, taken + 1
        self._body_left = left - taken
        if self._body_left == 0:
            self.done = True
        return block[:end]


def _blank_line(block: bytes, start: int) -> int:
    """The index just past the first empty line at or after `start`, or -1."""
    pos = start
    while pos < len(block):
        nl = block.find(b"\n", pos)
        if nl < 0:
            return -1
        line = block[pos:nl]
        if line in (b"", b"\r"):
            return nl + 1
        pos = nl + 1
    return -1

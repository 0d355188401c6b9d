"""Outgoing content framing for the SMTP client: dot-stuffing for DATA, BDAT chunks.

Contract:
  * `DotStuffer` turns the stored message (CRLF line endings) into the DATA
    stream of RFC 5321 §4.5.2 piece by piece: every line that starts with
    "." gets one more "." in front, including the first line of the content
    and lines whose CRLF was split across two pieces. `end()` returns the
    terminator: ".<CRLF>" when the content ended with CRLF (or was empty),
    else "<CRLF>.<CRLF>" (the CRLF a message needs at its end is added,
    RFC 5321 §4.1.1.4).
  * State is two bits (at the beginning of a line / after a CR), so memory
    does not depend on the message size; a piece is copied at most once.
  * `bdat_chunk(piece, last)` frames one BDAT chunk (RFC 3030 §2): the
    command line followed by exactly the octets of the piece, no stuffing.
"""

from __future__ import annotations

_MID, _CR, _BOL = 0, 1, 2


class DotStuffer:
    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = _BOL  # the DATA command's CRLF puts us at a line start

    def feed(self, piece: bytes) -> bytes:
        if not piece:
            return b""
        out = piece.replace(b"\r\n.", b"\r\n..") if b"\r\n." in piece else piece
        if self._state == _BOL and piece[:1] == b".":
            out = b"." + out
        elif self._state == _CR and piece[:2] == b"\n.":
            out = b"\n.." + out[2:]
        if piece.endswith(b"\r\n"):
            self._state = _BOL
        elif piece.endswith(b"\r"):
            self._state = _CR
        elif piece == b"\n" and self._state == _CR:
            self._state = _BOL
        else:
            self._state = _MID
        return out

    def end(self) -> bytes:
        if self._state == _BOL:
            return b".\r\n"
        if self._state == _CR:
            return b"\n.\r\n"
        return b"\r\n.\r\n"


def bdat_chunk(piece: bytes, last: bool) -> bytes:
    head = f"BDAT {len(piece)}{' LAST' if last else ''}\r\n".encode("ascii")
    return head + piece

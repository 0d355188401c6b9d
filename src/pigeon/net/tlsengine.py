"""The server side of one TLS connection over memory BIOs: ciphertext in, plaintext out.

Why not asyncio's TLS transport (`loop.start_tls`): when the peer ends its
side (a close_notify alert, or the TCP FIN) asyncio's TLS layer shuts the
connection down at once and drops whatever the application writes after
that. An SMTP client may pipeline the end of data and QUIT, end its side and
only then read the replies (Exim does); those replies must still reach it,
or it retries a message we have already queued. RFC 8446 §6.1 lets a TLS 1.3
peer go on writing after it received close_notify, and OpenSSL allows it
for TLS 1.2 too, so this engine lets pigeon answer first and send its own
close_notify when the session ends.

Contract:
  * Sans-IO: no sockets, no event loop. The stream (`pigeon.net.stream`)
    feeds it the octets read from the socket and writes what it returns.
  * `receive(data)` takes ciphertext and returns the plaintext it completed
    (b"" while a record or the handshake is incomplete). Afterwards
    `established` says the handshake is done, `peer_closed` that the peer
    sent close_notify. A protocol violation raises ssl.SSLError.
  * `pending_output()` returns (and clears) the ciphertext to send: the
    handshake messages, session tickets, alerts. Call it after every
    `receive()`.
  * `encrypt(data)` returns the records carrying `data` (only once
    established); `close()` returns our close_notify alert (possibly b"")
    and the engine refuses further writes.
  * `ssl_object` is the `ssl.SSLObject` (cipher, version) for logs and
    `Received:`.
"""

from __future__ import annotations

import ssl

#: Plaintext read from the TLS layer per call.
_READ_SIZE = 64 * 1024


class TlsEngine:
    """One server-side TLS session over memory BIOs; see the module contract."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.established = False
        self.peer_closed = False
        self.closed = False

    def receive(self, data: bytes) -> bytes:
        """Ciphertext in, completed plaintext out (see the module contract)."""
        if data:
            self._incoming.write(data)
        if not self.established:
            try:
                self.ssl_object.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.established = True
        if self.peer_closed:
            return b""  # nothing is read after close_notify
        chunks = []
        while True:
            try:
                chunk = self.ssl_object.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            if not chunk:  # close_notify (SSLObject reports it as b"")
                self.peer_closed = True
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def pending_output(self) -> bytes:
        return self._outgoing.read() if self._outgoing.pending else b""

    def encrypt(self, data: bytes) -> bytes:
        if self.closed or not self.established:
            return b""
        self.ssl_object.write(data)
        return self._outgoing.read()

    def close(self) -> bytes:
        """Our close_notify (RFC 8446 §6.1); we do not wait for the peer's."""
        if self.closed:
            return b""
        self.closed = True
        if self.established:
            try:
                self.ssl_object.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLError):
                pass  # alert queued; the peer's reply is not awaited
        return self.pending_output()

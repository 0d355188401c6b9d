"""A client that half-closes still gets every reply (the Exim duplicate-delivery bug).

Exim pipelines the end of data with QUIT, shuts down its sending side and
only then reads the replies. If pigeon closes at EOF without writing the
250, the message is queued here but Exim retries it: delivered twice. These
tests do the same at the socket level, in plaintext and over STARTTLS (where
"half-close" is a close_notify alert followed by the TCP FIN).
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from pigeon.testing.live import maildir_messages, recv_reply, wait_for

pytestmark = pytest.mark.e2e

CONFIG = '[domains."example.test"]\nmailboxes = ["alice"]\n'


def _read_to_eof(read, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes (bounded in time)."""
    deadline = time.monotonic() + timeout
    out = b""
    while time.monotonic() < deadline:
        chunk = read()
        if chunk is None:
            continue
        if not chunk:
            return out
        out += chunk
    raise AssertionError(f"server did not close within {timeout}s; got {out!r}")


def _open_transaction(sock: socket.socket) -> None:
    assert recv_reply(sock).startswith(b"220")
    for command, code in (
        (b"EHLO client.test", b"250"),
        (b"MAIL FROM:<s@client.test>", b"250"),
        (b"RCPT TO:<alice@example.test>", b"250"),
        (b"DATA", b"354"),
    ):
        sock.sendall(command + b"\r\n")
        reply = recv_reply(sock)
        assert reply.startswith(code), (command, reply)


def test_end_of_data_and_quit_then_shutdown_get_250_and_221(pigeon_factory):
    proc = pigeon_factory(CONFIG)
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as sock:
        _open_transaction(sock)
        sock.sendall(b"Subject: half-close\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        replies = _read_to_eof(lambda: sock.recv(65536))
    assert b"250 2.0.0 Ok: queued as " in replies, replies
    assert b"221 2.0.0" in replies, replies
    assert wait_for(lambda: len(maildir_messages(proc.data_dir, "alice@example.test")) == 1)


def test_pipelined_commands_then_shutdown_all_answered(pigeon_factory):
    """The whole transaction in one write, then FIN: every command gets its reply."""
    proc = pigeon_factory(CONFIG)
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as sock:
        assert recv_reply(sock).startswith(b"220")
        sock.sendall(b"EHLO client.test\r\n")
        assert recv_reply(sock).startswith(b"250")
        sock.sendall(
            b"MAIL FROM:<s@client.test>\r\nRCPT TO:<alice@example.test>\r\n"
            b"BDAT 22 LAST\r\nSubject: x\r\n\r\nbody\r\n\r\nNOOP\r\nQUIT\r\n"
        )
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        replies = _read_to_eof(lambda: sock.recv(65536))
    codes = [line[:3] for line in replies.split(b"\r\n") if line]
    assert codes == [b"250", b"250", b"250", b"250", b"221"], replies


class _MemoryTlsClient:
    """A TLS client over a blocking socket that can send close_notify and keep reading.

    ssl.SSLSocket cannot (its unwrap() waits for the peer's close_notify), so
    the record layer runs over memory BIOs and the socket only moves bytes.
    """

    def __init__(self, sock: socket.socket) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="pigeon.test")

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def handshake(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise AssertionError("server closed during the handshake") from None
                self.incoming.write(chunk)
        raise AssertionError("handshake did not finish")

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def close_notify_and_fin(self) -> None:
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass  # the peer's close_notify comes later
        self._flush()
        self.sock.shutdown(socket.SHUT_WR)

    def read(self) -> bytes | None:
        """Decrypted bytes, b"" at close_notify or EOF, None when more input is needed."""
        try:
            return self.tls.read(65536)
        except ssl.SSLWantReadError:
            chunk = self.sock.recv(65536)
            if not chunk:
                return b""
            self.incoming.write(chunk)
            return None
        except ssl.SSLZeroReturnError:
            return b""

    def reply(self) -> bytes:
        buf = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = self.read()
            if chunk == b"":
                return buf
            if chunk:
                buf += chunk
                lines = buf.split(b"\r\n")
                if buf.endswith(b"\r\n") and len(lines[-2]) >= 4 and lines[-2][3:4] == b" ":
                    return buf
        raise AssertionError(f"no complete reply: {buf!r}")


def test_starttls_close_notify_and_fin_still_get_250_and_221(pigeon_factory):
    """TLS has no half-close of its own: pigeon still answers after close_notify."""
    proc = pigeon_factory(CONFIG)
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as sock:
        assert recv_reply(sock).startswith(b"220")
        sock.sendall(b"EHLO client.test\r\n")
        assert b"STARTTLS" in recv_reply(sock)
        sock.sendall(b"STARTTLS\r\n")
        assert recv_reply(sock).startswith(b"220")
        tls = _MemoryTlsClient(sock)
        tls.handshake()
        for command, code in (
            (b"EHLO client.test", b"250"),
            (b"MAIL FROM:<s@client.test>", b"250"),
            (b"RCPT TO:<alice@example.test>", b"250"),
            (b"DATA", b"354"),
        ):
            tls.send(command + b"\r\n")
            reply = tls.reply()
            assert reply.startswith(code), (command, reply)
        tls.send(b"Subject: tls half-close\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        tls.close_notify_and_fin()
        replies = _read_to_eof(tls.read)
    assert b"250 2.0.0 Ok: queued as " in replies, replies
    assert b"221 2.0.0" in replies, replies
    assert wait_for(lambda: len(maildir_messages(proc.data_dir, "alice@example.test")) == 1)

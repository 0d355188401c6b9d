"""Drive one outbound SMTP/LMTP ClientSession over an asyncio stream (TCP or Unix socket).

    conn = await connect(config, host="mx.example", address="192.0.2.1", port=25,
                         helo_name="pigeon.example")        # raises ConnectError
    done = await conn.deliver(transaction, content)          # TransactionDone
    ok = await conn.reset()                                  # RSET before reuse
    await conn.quit()

Contract:
  * This module moves bytes, applies timeouts and upgrades to TLS; the
    sans-IO `ClientSession` (proto/client.py) decides every command and the
    meaning of every reply. Candidate selection, pooling and results live in
    delivery/smtp.py.
  * `connect()` returns a connection that is Ready (greeted, EHLO'd, and
    upgraded to TLS as the policy asks), or raises `ConnectError` carrying
    the reply to report: a local one for connect failures (4.4.1),
    timeouts and lost connections (4.4.2), TLS failures (4.7.4/4.7.5), or
    the peer's own non-2xx greeting/EHLO reply. It never raises anything
    else for network trouble.
  * TLS policy (ClientConfig.tls, RFC 3207): "none"; "may" = STARTTLS when
    offered, certificate not checked, and when the handshake fails the same
    host is tried once more without TLS (as Postfix's opportunistic TLS
    does; a failed handshake leaves the connection unusable); "encrypt" =
    STARTTLS required, not checked; "verify" = required and the certificate
    must chain to the system CAs (or `tls_ca_file`, or the `ca_file` given to
    connect()) and match the host name; "dane" = required, and the peer's
    chain must satisfy the `tls_check` given to connect() (DANE, RFC 7672:
    delivery/tlspolicy). Unix sockets never use TLS. What was negotiated is
    in `conn.tls`; a TLS failure's `ConnectError.tls_result` is its RFC 8460
    §4.3 result type (for TLS reports and the log).
  * Timeouts come from the session's phase (RFC 5321 §4.5.3.2 values in
    ClientConfig); a write of content must finish within data_block_timeout.
    Closing is bounded too: what is still unsent after CLOSE_TIMEOUT seconds
    (a peer that stopped reading) is dropped and the socket aborted, so no
    file descriptor is held by a peer that never reads.
  * Content is streamed from `content.open()` (a `MessageContent`,
    pigeon/queue/api.py) in `content_chunk` pieces: never the whole message
    in memory. (Reads are plain file reads on the event loop: local disk,
    one chunk at a time.) Content that cannot be opened raises the
    content's StoreError out of `deliver()` (the agent's caller defers).
  * It lives in pigeon.delivery beside the agents that use it (the layers:
    docs/architecture.md); pigeon.net is the server side.
  * `deliver()` calls `delivery.api.handed_over()` once the peer accepted
    DATA or BDAT: from then on it may hold the message (an attempt
    abandoned by a stop may be delivered twice, delivery/api.py).
  * `deliver()` never raises for peer behaviour: failures come back as
    replies in the TransactionDone; afterwards `usable` says whether the
    connection may carry another transaction.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass

from pigeon.delivery.api import handed_over
from pigeon.delivery.tlspolicy.peer import TlsCheck, peer_chain, tls_failure_type
from pigeon.proto.client import (
    AuthDone,
    ClientConfig,
    ClientEvent,
    ClientSession,
    Closed,
    ContentWanted,
    Ready,
    ResetDone,
    TlsReady,
    TlsRefused,
    Transaction,
    TransactionDone,
)
from pigeon.proto.client_reply import Extensions, reply_text
from pigeon.proto.reply import Reply, reply
from pigeon.queue.api import MessageContent

READ_SIZE = 65536
#: Seconds a closing connection may take to flush (QUIT, TLS close_notify) before it is aborted.
CLOSE_TIMEOUT = 5.0
#: Replies allowed to pile up (pipelined BDAT chunks) before we stop to read them.
MAX_UNREAD_REPLIES = 8
#: The TLS policies that never fall back to plaintext.
REQUIRED = ("encrypt", "verify", "dane")


@dataclass(frozen=True, slots=True)
class _Tls:
    """How one connection does TLS: the policy, the CAs for "verify", the "dane" check."""

    policy: str
    ca_file: str | None
    check: TlsCheck | None


@dataclass(frozen=True, slots=True)
class TlsInfo:
    version: str
    cipher: str
    verified: bool

    def __str__(self) -> str:
        """For the delivery log line: "verified TLSv1.3 TLS_AES_256_GCM_SHA384" (the
        certificate was authenticated) or "encrypted ..." (it was not checked)."""
        return f"{'verified' if self.verified else 'encrypted'} {self.version} {self.cipher}"


class ConnectError(Exception):
    """A candidate could not be used; `reply` says why (local or the peer's)."""

    def __init__(
        self,
        reply: Reply,
        diagnostic: str,
        *,
        local: bool,
        remote_mta: str = "",
        tls_failed: bool = False,
        tls_result: str | None = None,
    ) -> None:
        super().__init__(diagnostic)
        self.reply = reply
        self.diagnostic = diagnostic
        self.local = local
        self.remote_mta = remote_mta
        self.tls_failed = tls_failed
        #: RFC 8460 §4.3 result type of a TLS failure ("starttls-not-supported",
        #: "certificate-host-mismatch", ...); None when TLS was not the problem.
        self.tls_result = tls_result
        #: The outbound TLS policy in force ("mta-sts:enforce", "dane", "none"; "" = none
        #: applies), set by delivery/tlspolicy/apply.py, for the log line.
        self.tls_policy = ""


def peer_name(host: str, address: str, port: int) -> str:
    """Postfix-style "host[address]:port" (a Unix socket is just its path)."""
    if address.startswith("/"):
        return address
    return f"{host}[{address}]:{port}"


def tls_context(policy: str, ca_file: str | None) -> ssl.SSLContext:
    """ "verify": the CAs' word and the host name; every other policy (DANE
    included: its check is the chain against TLSA records) checks nothing here."""
    if policy == "verify":
        return ssl.create_default_context(cafile=ca_file)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ClientConnection:
    """A Ready client session on an open stream; see the module contract."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: ClientSession,
        remote_mta: str,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.session = session
        self.remote_mta = remote_mta
        self.tls: TlsInfo | None = None

    @property
    def extensions(self) -> Extensions:
        return self.session.extensions

    @property
    def usable(self) -> bool:
        return self.session.ready

    async def deliver(self, tx: Transaction, content: MessageContent) -> TransactionDone:
        self.session.send_transaction(tx)
        while True:
            ev = await self._next_event()
            if isinstance(ev, ContentWanted):
                handed_over()  # from here on the peer may end up with the message
                await self._send_content(content)
            elif isinstance(ev, TransactionDone):
                return ev
            elif isinstance(ev, Closed):  # cannot happen before TransactionDone
                raise RuntimeError("session closed without finishing the transaction")

    async def reset(self) -> bool:
        """RSET: True when the peer is still there and the session is clean."""
        if not self.usable:
            return False
        self.session.reset()
        ev = await self._next_event()
        return isinstance(ev, ResetDone)

    async def quit(self) -> None:
        if not self.session.closed:
            if self.session.ready:
                self.session.quit()
                while not isinstance(await self._next_event(), Closed):
                    pass
        await self._close()

    def abort(self) -> None:
        """Close at once, without waiting (a polite QUIT is written if possible)."""
        if self.session.ready:
            self.session.quit()
        try:
            out = self.session.data_to_send()
            if out:
                self.writer.write(out)
            self.writer.close()
            # close() waits for the buffer to flush: bound it.
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.writer.transport.abort)
        except Exception:  # noqa: BLE001 - closing a broken transport
            pass

    # --- I/O ------------------------------------------------------------------

    async def _next_event(self) -> ClientEvent:
        while True:
            await self._flush()
            ev = self.session.next_event()
            if ev is not None:
                return ev
            await self._read_once()

    async def _flush(self) -> None:
        out = self.session.data_to_send()
        if not out:
            return
        try:
            self.writer.write(out)
            await asyncio.wait_for(self.writer.drain(), self.session.config.data_block_timeout)
        except TimeoutError:
            self.session.on_timeout()
        except (ConnectionError, OSError):
            self.session.receive_eof()

    async def _read_once(self) -> None:
        try:
            data = await asyncio.wait_for(self.reader.read(READ_SIZE), self.session.timeout)
        except TimeoutError:
            self.session.on_timeout()
            return
        except (ConnectionError, OSError):
            data = b""
        if data:
            self.session.receive_data(data)
        else:
            self.session.receive_eof()

    async def _send_content(self, content: MessageContent) -> None:
        size = self.session.config.content_chunk
        with content.open() as f:
            piece = f.read(size)
            while self.session.wants_content:
                nxt = f.read(size)
                self.session.send_content(piece, last=not nxt)
                await self._flush()
                while self.session.pending_replies > MAX_UNREAD_REPLIES and not self.session.closed:
                    await self._read_once()
                piece = nxt

    async def _close(self) -> None:
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), CLOSE_TIMEOUT)
        except Exception:  # noqa: BLE001 - the peer may already be gone, or never reads
            self.writer.transport.abort()

    async def _until_ready(self) -> Ready:
        while True:
            ev = await self._next_event()
            if isinstance(ev, Ready):
                return ev
            if isinstance(ev, Closed):
                raise self._error(ev)

    def _error(self, ev: Closed) -> ConnectError:
        r = ev.reply or reply(421, "4.4.2", "connection closed")
        if ev.local:
            diag = f"{r.text} ({self.remote_mta})"
        else:
            diag = f"host {self.remote_mta} said: {reply_text(r)} (in reply to {ev.phase.name})"
        return ConnectError(r, diag, local=ev.local, remote_mta=self.remote_mta)

    async def _authenticate(self, user: str, password: str) -> None:
        """AUTH PLAIN over TLS only (RFC 4954 §4; never credentials in clear text)."""
        if not self.tls:
            r = reply(421, "4.7.0", "refusing to send credentials without TLS")
            raise ConnectError(
                r, f"{r.text} ({self.remote_mta})", local=True, remote_mta=self.remote_mta
            )
        if "PLAIN" not in self.session.extensions.auth_mechanisms:
            r = reply(421, "4.7.0", "the relay host does not offer AUTH PLAIN")
            raise ConnectError(
                r, f"{r.text} ({self.remote_mta})", local=True, remote_mta=self.remote_mta
            )
        self.session.authenticate(user, password)
        while True:
            ev = await self._next_event()
            if isinstance(ev, Closed):
                raise self._error(ev)
            if isinstance(ev, AuthDone):
                break
        if ev.reply.code != 235:
            # Postfix defers on SASL failure (smtp_sasl_auth_soft_bounce): a
            # wrong password must not bounce mail that could go out later.
            await self.quit()
            r = reply(421, "4.7.0", f"SASL authentication failed: {reply_text(ev.reply)}")
            raise ConnectError(
                r,
                f"host {self.remote_mta} said: {reply_text(ev.reply)} (in reply to AUTH)",
                local=False,
                remote_mta=self.remote_mta,
            )

    def _tls_failure(self, why: str, result_type: str) -> ConnectError:
        """Abort the connection (unusable after a failed handshake): the error to raise."""
        self.abort()
        r = reply(421, "4.7.5", why)
        return ConnectError(
            r,
            f"{r.text} ({self.remote_mta})",
            local=True,
            remote_mta=self.remote_mta,
            tls_failed=True,
            tls_result=result_type,
        )

    async def _starttls(
        self,
        policy: str,
        server_hostname: str | None,
        ca_file: str | None,
        tls_check: TlsCheck | None = None,
    ) -> None:
        self.session.starttls()
        while True:
            ev = await self._next_event()
            if isinstance(ev, TlsRefused):
                if policy in REQUIRED:
                    await self.quit()
                    raise ConnectError(
                        ev.reply,
                        f"host {self.remote_mta} refused STARTTLS: {reply_text(ev.reply)}",
                        local=False,
                        remote_mta=self.remote_mta,
                        tls_result="starttls-not-supported",
                    )
                return
            if isinstance(ev, Closed):
                raise self._error(ev)
            if isinstance(ev, TlsReady):
                break
        ctx = tls_context(policy, ca_file)
        try:
            await self.writer.start_tls(
                ctx,
                server_hostname=server_hostname,
                ssl_handshake_timeout=self.session.config.starttls_timeout,
            )
        except (TimeoutError, ssl.SSLError, ConnectionError, OSError) as exc:
            why = f"Cannot start TLS: handshake failure: {exc}"
            raise self._tls_failure(why, tls_failure_type(exc)) from None
        obj = self.writer.get_extra_info("ssl_object")
        if tls_check is not None:
            problem = tls_check(peer_chain(obj))
            if problem is not None:
                why = f"Server certificate not verified: {problem}"
                raise self._tls_failure(why, "validation-failure")
        if obj is not None:
            cipher = obj.cipher()
            self.tls = TlsInfo(
                obj.version() or "?", cipher[0] if cipher else "?", policy in ("verify", "dane")
            )
        self.session.tls_established()
        await self._until_ready()


async def connect(
    config: ClientConfig,
    *,
    host: str,
    address: str,
    port: int,
    helo_name: str,
    lmtp: bool = False,
    tls: str | None = None,
    auth: tuple[str, str] | None = None,
    ca_file: str | None = None,
    tls_check: TlsCheck | None = None,
) -> ClientConnection:
    """Open a Ready connection to one candidate (see the module contract).

    `address` is an IP address (or a host name, resolved by the OS) for TCP,
    or a Unix socket path starting with "/". `tls` overrides config.tls,
    `ca_file` config.tls_ca_file; `tls_check` is the "dane" policy's check.
    `auth` = (user, password): AUTH PLAIN after STARTTLS (a smarthost); the
    credentials are never sent without TLS, so TLS becomes required.
    """
    policy = tls or config.tls
    if address.startswith("/"):
        policy = "none"
    how = _Tls(policy, ca_file or config.tls_ca_file, tls_check)
    try:
        return await _connect_once(config, host, address, port, helo_name, lmtp, how, auth)
    except ConnectError as exc:
        if exc.tls_failed and policy == "may" and auth is None:
            plain = _Tls("none", None, None)
            return await _connect_once(config, host, address, port, helo_name, lmtp, plain, None)
        raise


async def _connect_once(
    config: ClientConfig,
    host: str,
    address: str,
    port: int,
    helo_name: str,
    lmtp: bool,
    how: _Tls,
    auth: tuple[str, str] | None = None,
) -> ClientConnection:
    where = peer_name(host, address, port)
    policy = how.policy
    try:
        if address.startswith("/"):
            opening = asyncio.open_unix_connection(address)
        else:
            opening = asyncio.open_connection(address, port)
        reader, writer = await asyncio.wait_for(opening, config.connect_timeout)
    except TimeoutError:
        why = "Connection timed out"
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    else:
        why = ""
    if why:
        r = reply(421, "4.4.1", f"connect to {where}: {why}")
        raise ConnectError(r, r.text, local=True)
    conn = ClientConnection(
        reader, writer, ClientSession(config, lmtp=lmtp, helo_name=helo_name), where
    )
    try:
        ready = await conn._until_ready()
        if policy != "none":
            if ready.extensions.has("STARTTLS"):
                await conn._starttls(policy, host, how.ca_file, how.check)
            elif policy in REQUIRED:
                await conn.quit()
                r = reply(421, "4.7.4", "TLS is required, but was not offered by host")
                raise ConnectError(
                    r,
                    f"{r.text} {where}",
                    local=True,
                    remote_mta=where,
                    tls_result="starttls-not-supported",
                )
        if auth is not None:
            await conn._authenticate(*auth)
    except ConnectError:
        conn.abort()
        raise
    except BaseException:
        conn.abort()
        raise
    return conn

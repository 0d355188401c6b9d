"""Drive one SMTP server session over one connection (`pigeon.net.stream.SmtpStream`).

Contract:
  * This module moves bytes and asks questions; it makes no protocol
    decisions. The sans-IO `ServerSession` decides what every byte means and
    which reply it gets; the injected `RecipientPolicy` decides who may send
    to whom; the `QueueStore` makes accepted mail durable.
  * Rule 1: a 250 for DATA/BDAT is only sent after `store.commit_async()`
    resolved, i.e. the content, its directory entry and the envelope are
    fsync'ed (promise 1). Any failure before that is a 4xx, never a 250.
  * Rule 2: all replies produced by one batch of input are written with one
    `write()` (pipelined replies flushed together, RFC 2920 §3.1).
  * Rule 3: nothing a peer sends raises out of `Connection.run()`: storage
    errors become 451/452 replies, and anything unexpected is logged with
    its traceback while the peer sees 421 and a closed connection.
  * Deadlines come from the session (`next_deadline()`); this module only
    sleeps until then and calls `on_timer()`.
  * Rule 4: every wait on the network is bounded. Reads by the session's
    deadline; writes (the drain after each batch of replies, the final flush
    at close) by `timeouts.command`, after which the connection is aborted;
    the TLS handshake by `tls.handshake_timeout`.
  * Rule 5: a peer that half-closes (FIN or TLS close_notify after its last
    commands) still gets every reply to the commands it sent: EOF only ends
    the session once the session has answered what it read.
  * Rule 6 (free-space reserve, queue/space.py): MAIL FROM (with its SIZE=)
    and DATA/BDAT are answered `452 4.3.1 Insufficient system storage`
    when the queue file system is below its reserve (`queue.min_free`),
    as Postfix does, so clients stop before uploading into a full disk.
  * TLS (RFC 3207, RFC 8314): on `StartTlsRequested` the 220 is flushed,
    then every octet the stream already holds is dropped unread
    (CVE-2011-0411; the session dropped its own buffer), then the handshake
    runs with `tls.handshake_timeout`. Implicit-TLS listeners (role
    submissions) run the same handshake before the greeting. A failed
    handshake is logged and the connection closed without a reply.
  * AUTH (RFC 4954): password checks (argon2id) and SCRAM key look-ups run
    in the AuthService's thread pool, never on the event loop. Failed logins
    are counted per client address (IPv4, or IPv6 /64; `auth.ratelimit`),
    each attempt before its password is checked: past a threshold the
    answer is delayed (an asyncio sleep for this connection only), then the
    address is refused with 421 4.7.0. An authenticated client may relay to any
    domain; its MAIL FROM must be an address its account owns (553 5.7.1).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pigeon.auth.accounts import AccountError, normalize_name
from pigeon.auth.service import AuthUnavailable
from pigeon.net.stream import SmtpStream
from pigeon.net.tls import tls_info
from pigeon.policy.submission import check_from_header, from_addresses
from pigeon.proto import reply as R
from pigeon.proto.events import (
    NEED_DATA,
    AuthKeysRequested,
    AuthRequested,
    CommandRefused,
    ConnectionClosing,
    DataAborted,
    DataFinished,
    DataReceived,
    DataStarted,
    EtrnRequested,
    HeloReceived,
    MailRequested,
    RcptRequested,
    StartTlsRequested,
    TransactionReset,
)
from pigeon.proto.server import ServerSession, SessionConfig
from pigeon.queue.health import is_storage_fault
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.spool import StoreError
from pigeon.queue.trace import received_header, transmission_type

log = logging.getLogger("pigeon.smtpd")


@dataclass
class SessionStats:
    """Counters of one connection, for the disconnect log line."""

    messages: int = 0
    rejected_rcpts: int = 0
    errors: list[str] = field(default_factory=list)


class _NoMetrics:
    """Stands in when no metrics are collected (unit tests, tools)."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


NO_METRICS = _NoMetrics()


class Connection:
    """One client connection: feeds bytes to a ServerSession and acts on its events."""

    def __init__(
        self,
        stream: SmtpStream,
        *,
        session_config: SessionConfig,
        store,
        policy,
        maillog,
        on_queued: Callable[[Envelope], None],
        greet_pause: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        tls=None,
        implicit_tls: bool = False,
        handshake_timeout: float = 30.0,
        auth=None,
        role: str = "smtp",
        metrics=None,
        on_etrn: Callable[[str], Awaitable[int]] | None = None,
        check_from_header: bool = True,
    ) -> None:
        self.on_etrn = on_etrn
        self.check_from_header = check_from_header
        self.stream = stream
        self.metrics = metrics if metrics is not None else NO_METRICS
        self._outcome = ""
        peer = stream.get_extra_info("peername") or ("", 0)
        self.client_ip: str = peer[0] if isinstance(peer, tuple) else str(peer)
        self.client_port: int = peer[1] if isinstance(peer, tuple) and len(peer) > 1 else 0
        self.cfg = session_config
        self.store = store
        self.policy = policy
        self.maillog = maillog
        self.on_queued = on_queued
        self.greet_pause = greet_pause
        self.clock = clock
        self.wallclock = wallclock
        self.session = ServerSession(session_config, now=clock())
        self.stats = SessionStats()
        self._spool = None
        self._received_len = 0
        self._transaction: tuple[str, list[str]] = ("", [])
        self._spool_error: OSError | StoreError | None = None
        self._closing = False
        self.tls = tls  # pigeon.net.tls.TlsProvider | None
        self.implicit_tls = implicit_tls
        self.handshake_timeout = handshake_timeout
        self.auth = auth  # pigeon.auth.service.AuthService | None
        self.role = role
        self._tls_requested = False
        self._broken = False  # a failed handshake: nothing more may be written
        self._owned: frozenset[str] = frozenset()
        self._auth_unavailable = False

    # -- public -------------------------------------------------------------

    def shutdown(self) -> None:
        """SIGTERM drain: the session says 421 at its next command boundary."""
        self.session.shutdown()
        self.stream.wake()

    async def run(self) -> None:
        try:
            if self.implicit_tls and not await self._handshake():
                return
            await self._greet()
            await self._loop()
        except (ConnectionError, asyncio.IncompleteReadError):
            # The peer went away; nothing to answer.
            if not self.session.closed:
                self.maillog.session_end(
                    "lost connection", self.session.where, None, self.client_ip
                )
        except TimeoutError:
            # Our replies stayed unread for timeouts.command (drain): the peer
            # does not read. Nothing more can be written; free the slot now.
            self._outcome = "timeout"
            log.warning(
                "[%s]:%s does not read its replies: closing after %.0fs",
                self.client_ip,
                self.client_port,
                self.cfg.command_timeout,
            )
            self.maillog.session_end("timeout", self.session.where, None, self.client_ip)
            self.stream.abort()
        except asyncio.CancelledError:
            raise
        except Exception:  # Rule 3: log privately, answer generically
            self._outcome = "error"
            log.exception("session with [%s] failed", self.client_ip)
            try:
                self.stream.write(
                    R.reply(421, "4.3.0", "Error: internal error, closing").to_bytes()
                )
            except Exception:
                pass
        finally:
            self._discard_spool()
            await self._close()
            log.info(
                "disconnect from [%s]:%s messages=%d",
                self.client_ip,
                self.client_port,
                self.stats.messages,
            )
            self.metrics.session_ended(
                self._outcome
                if self._outcome
                else "message"
                if self.stats.messages
                else "no_message"
            )

    # -- I/O loop -----------------------------------------------------------

    async def _greet(self) -> None:
        if self.greet_pause > 0:
            # A client that talks before our 220 is not speaking SMTP as
            # RFC 5321 §3.1 requires (it must wait for the greeting).
            early = await self.stream.read(self.greet_pause)
            if early:
                self.session.receive_data(early, self.clock())
                log.info("pregreet from [%s]: client talked before the greeting", self.client_ip)
        self.session.start(self.clock())
        await self._process()

    async def _loop(self) -> None:
        stream, session = self.stream, self.session
        while not self._closing:
            deadline = session.next_deadline()
            # No deadline only while the session is closing; still never wait unbounded.
            timeout = (
                self.cfg.command_timeout if deadline is None else max(0.0, deadline - self.clock())
            )
            data = await stream.read(timeout)
            if data:
                session.receive_data(data, self.clock())
            elif data is not None:
                session.receive_eof()
            elif deadline is not None and self.clock() >= deadline:
                session.on_timer(self.clock())
            # else: woken by shutdown(); the session has queued its 421.
            await self._process()
            if self._tls_requested:
                self._tls_requested = False
                await self._handshake()
                await self._process()

    async def _process(self) -> None:
        """Handle every event the session has, then flush its output once."""
        session = self.session
        while True:
            event = session.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, DataReceived):
                self._write_spool(event.data)
            elif isinstance(event, RcptRequested):
                verdict = self.policy.check_recipient(
                    event.recipient, self.client_ip, authenticated=session.auth_user is not None
                )
                if verdict is not None:
                    self.stats.rejected_rcpts += 1
                    self._log_reject("RCPT", verdict, str(event.recipient))
                session.respond(verdict)
            elif isinstance(event, MailRequested):
                sender = event.sender
                verdict = (
                    self.policy.check_sender(
                        sender, self.client_ip, authenticated=session.auth_user is not None
                    )
                    if sender
                    else None
                )
                if verdict is None and not self.store.space.room_for(event.params.size or 0):
                    verdict = R.INSUFFICIENT_STORAGE  # Rule 6
                if (
                    verdict is None
                    and sender is not None
                    and session.auth_user is not None
                    and f"{sender.local.lower()}@{sender.domain}" not in self._owned
                ):
                    verdict = R.SENDER_NOT_OWNED
                    log.warning(
                        "[%s]: user %s may not send as <%s>",
                        self.client_ip,
                        session.auth_user,
                        sender,
                    )
                if verdict is not None:
                    self._log_reject("MAIL", verdict, str(sender) if sender is not None else "")
                session.respond(verdict)
            elif isinstance(event, DataStarted):
                session.respond(await self._open_spool())
            elif isinstance(event, DataFinished):
                # Flush earlier pipelined replies before the (slower) commit.
                self._flush()
                session.respond(await self._commit(event))
            elif isinstance(event, (DataAborted, TransactionReset)):
                if isinstance(event, DataAborted):
                    if event.reply is not None and event.reply.permanent:
                        # Refused content; a 4xx abort (timeout, local error) is not a rejection.
                        self._log_content_reject(event.reply)
                    elif event.reply is not None:
                        self.metrics.rejected(event.reply.code)
                    log.info("[%s]: message refused: %s", self.client_ip, event.reason)
                self._discard_spool()
            elif isinstance(event, StartTlsRequested):
                # Stop reading before the 220 goes out: whatever the client
                # sends next is the TLS handshake and must reach the TLS layer
                # (start_tls resumes reading), never the plaintext buffer.
                self.stream.pause_reading()
                self._tls_requested = True
                if event.discarded:
                    log.warning(
                        "[%s]: %d octets pipelined after STARTTLS were discarded",
                        self.client_ip,
                        event.discarded,
                    )
            elif isinstance(event, AuthKeysRequested):
                session.respond_keys(await self._scram_keys(event.username))
            elif isinstance(event, AuthRequested):
                self._flush()
                session.respond(await self._authenticate(event))
            elif isinstance(event, EtrnRequested):
                session.respond(await self._etrn(event.node))
            elif isinstance(event, CommandRefused):
                self._log_reject(event.stage, event.reply, event.address)
            elif isinstance(event, ConnectionClosing):
                self._closing = True
                self._log_session_end(event.reason)
            elif isinstance(event, HeloReceived):
                pass
        self._flush()
        # Writing is bounded like reading (Postfix smtpd_timeout covers both):
        # a peer that never reads cannot hold the connection (TimeoutError).
        await self.stream.drain(self.cfg.command_timeout)

    def _flush(self) -> None:
        out = self.session.data_to_send()
        if out and not self._broken:
            self.stream.write(out)

    # -- TLS ----------------------------------------------------------------

    async def _handshake(self) -> bool:
        """Run the server side of a TLS handshake (STARTTLS or implicit TLS).

        STARTTLS: reading was paused before the 220 went out, so the reader's
        buffer holds only plaintext the client sent before seeing it; it is
        dropped (CVE-2011-0411). Implicit TLS: the buffer may already hold
        the start of the ClientHello (reading starts right after the
        connection is made); it is handed to the TLS engine.
        """
        stream = self.stream
        stream.pause_reading()
        early = stream.take_buffer()
        if early and not self.implicit_tls:
            log.warning(
                "[%s]: %d octets sent before the TLS handshake were discarded",
                self.client_ip,
                len(early),
            )
            early = b""
        try:
            await stream.start_tls(self.tls.context, timeout=self.handshake_timeout, early=early)
        except (TimeoutError, ssl.SSLError, OSError, EOFError) as exc:
            reason = (
                "timeout"
                if isinstance(exc, asyncio.TimeoutError)
                else (getattr(exc, "reason", None) or str(exc) or type(exc).__name__)
            )
            log.warning(
                "TLS handshake failed with [%s]:%s: %s", self.client_ip, self.client_port, reason
            )
            self._broken = True
            self.session.tls_failed(str(reason))
            self._closing = True
            return False
        info = tls_info(stream.get_extra_info("ssl_object"))
        self.session.tls_started(info, self.clock())
        self.metrics.tls_established(info.version)
        log.info(
            "TLS established with [%s]:%s: %s %s (%d bits)%s",
            self.client_ip,
            self.client_port,
            info.version,
            info.cipher,
            info.bits,
            " implicit" if self.implicit_tls else "",
        )
        return True

    # -- AUTH ---------------------------------------------------------------

    async def _scram_keys(self, username: str):
        try:
            return await self.auth.run(self.auth.scram_keys, username)
        except AuthUnavailable:
            self._auth_unavailable = True
            return None

    async def _authenticate(self, event: AuthRequested) -> R.Reply | None:
        """Verify a finished SASL exchange; None accepts (235).

        The attempt is counted before its password is checked
        (`limiter.attempt`), so simultaneous logins from one address cannot
        all be tried: past auth.max_failures in flight or failed, the answer
        is 421 and says nothing about the password.
        """
        auth, ip = self.auth, self.client_ip
        verdict = auth.limiter.attempt(ip, self.clock())
        if verdict.refuse:
            log.warning("AUTH from [%s] refused: too many failures", ip)
            return R.AUTH_TOO_MANY_FAILURES
        try:
            if verdict.delay:
                await asyncio.sleep(verdict.delay)  # this connection only (Rule 3 of ratelimit)
            account = await self._verify(event)
        except AuthUnavailable:
            auth.limiter.release(ip, self.clock())
            self._auth_unavailable = False
            return R.AUTH_TEMPORARY
        except BaseException:
            auth.limiter.release(ip, self.clock())  # the client went away: no verdict
            raise
        if account is None:
            auth.limiter.failure(ip, self.clock())
            log.warning(
                "AUTH %s failed for user %r from [%s]", event.mechanism, event.username[:64], ip
            )
            self.maillog.sasl_failed(None, ip, event.mechanism)
            if auth.limiter.locked(ip, self.clock()):  # this failure locked the address out
                return R.AUTH_TOO_MANY_FAILURES
            return R.AUTH_FAILED
        auth.limiter.success(ip, self.clock())
        self._owned = frozenset(account.addresses)
        log.info("AUTH %s user=%s from [%s] (%s)", event.mechanism, account.name, ip, self.role)
        return None

    async def _verify(self, event: AuthRequested):
        """The account the credentials of `event` prove, or None; AuthUnavailable."""
        auth = self.auth
        if self._auth_unavailable:
            raise AuthUnavailable("store")
        if event.authzid:
            try:
                if normalize_name(event.authzid) != normalize_name(event.username):
                    return None  # no proxy authorization
            except AccountError:
                return None
        if event.verified is None and event.password is not None:
            return await auth.run(auth.verify_password, event.username, event.password)
        if event.verified:
            return await auth.run(auth.account, event.username)
        return None

    async def _close(self) -> None:
        """Flush the last replies and close; abort if the peer does not take
        them within timeouts.command (a half-closed peer still gets them)."""
        try:
            self._flush()
            await self.stream.close_and_wait(self.cfg.command_timeout)
        except Exception:
            self.stream.abort()

    # -- spool --------------------------------------------------------------

    async def _open_spool(self) -> R.Reply | None:
        self._discard_spool()
        session = self.session
        if not self.store.space.room_for((session.mail_params and session.mail_params.size) or 0):
            self._log_reject(
                "DATA",
                R.INSUFFICIENT_STORAGE,
                None,  # Rule 6
                sender=str(session.sender) if session.sender is not None else "",
                recipients=[str(a) for a, _ in session.recipients],
            )
            return R.INSUFFICIENT_STORAGE
        protocol = self._protocol()
        # The envelope as known now (the RCPTs are done): a spool that spills
        # to disk writes it into its file, so the queue can be rebuilt from
        # the files (pigeon/msgfile.py). _commit() completes this object.
        envelope = Envelope(
            queue_id="",
            sender=str(session.sender) if session.sender is not None else "",
            # A repeated RCPT got its 250 but is one recipient (policy merge_recipients).
            recipients=[
                Recipient(str(a), p) for a, p in self.policy.merge_recipients(session.recipients)
            ],
            params=session.mail_params,
            received_at=self.wallclock(),
            client_address=self.client_ip,
            client_helo=session.helo_name or "",
            protocol=protocol,
        )
        try:
            # No system call: the store keeps the content in memory until
            # it passes its spill threshold (pigeon.queue.spool).
            spool = self.store.new_spool(envelope)
        except Exception as exc:  # OSError or StoreError: answer 452/451, never a traceback
            log.error("cannot create spool file: %s", exc)
            return R.INSUFFICIENT_STORAGE if _is_disk_full(exc) else R.LOCAL_ERROR
        self._spool = spool
        self._spool_error = None
        # Kept for the log: the session forgets the transaction when it refuses the content.
        self._transaction = (
            str(session.sender) if session.sender is not None else "",
            [str(a) for a, _ in session.recipients],
        )
        received = received_header(
            helo=session.helo_name or "",
            client_ip=self.client_ip,
            hostname=self.cfg.hostname,
            protocol=protocol,
            queue_id=spool.queue_id,
            tls=session.tls,
            recipients=[r.address for r in envelope.recipients],
            timestamp=self.wallclock(),
        )
        self._received_len = len(received)
        self._write_spool(received)
        return None

    def _write_spool(self, data: bytes) -> None:
        if self._spool is None or self._spool_error is not None:
            return
        try:
            self._spool.write(data)
        except (OSError, StoreError) as exc:
            # SpoolFile.write raises StoreError (.disk_full on ENOSPC), not
            # OSError. Keep reading the client's data (the protocol must stay
            # in step) and answer 452/451 at the end instead of 250.
            self._spool_error = exc
            if is_storage_fault(exc):
                self.store.health.failed(exc)  # logged once per episode (queue/health.py)
            else:
                log.error("spool write failed for %s: %s", self._spool.queue_id, exc)

    def _discard_spool(self) -> None:
        if self._spool is not None:
            try:
                self._spool.discard()
            except OSError as exc:
                log.warning("discarding spool %s: %s", self._spool.queue_id, exc)
            self._spool = None

    async def _commit(self, event: DataFinished) -> R.Reply:
        spool, session = self._spool, self.session
        if spool is None:
            return R.LOCAL_ERROR
        if self._spool_error is not None:
            refusal = R.INSUFFICIENT_STORAGE if _is_disk_full(self._spool_error) else R.LOCAL_ERROR
            self._discard_spool()
            log.info("[%s]: message refused: %s", self.client_ip, refusal)
            return refusal
        if session.auth_user is not None and self.check_from_header:
            try:
                # The whole header section: ours, then the client's, which the
                # session bounded by limits.header_size (+ the empty line).
                limit = self.cfg.max_header_size or spool.size  # 0: no limit
                head = spool.head(self._received_len + limit + 2)
            except OSError as exc:
                log.error("cannot read back spool %s: %s", spool.queue_id, exc)
                self._discard_spool()
                return R.LOCAL_ERROR
            refusal = check_from_header(head, self._owned)
            if refusal is not None:
                log.warning(
                    "[%s]: user %s may not send with From: %s",
                    self.client_ip,
                    session.auth_user,
                    ", ".join(from_addresses(head)),
                )
                self._log_content_reject(refusal)
                self._discard_spool()
                return refusal
        envelope = spool.envelope  # made by _open_spool(), now final
        envelope.received_at, envelope.size = self.wallclock(), spool.size
        envelope.eight_bit = event.eight_bit
        self._spool = None  # the store owns it from here on
        try:
            await asyncio.wrap_future(self.store.commit_async(spool, envelope))
        except Exception as exc:  # StoreError and anything else: not durable -> 4xx
            refusal = R.INSUFFICIENT_STORAGE if getattr(exc, "disk_full", False) else R.LOCAL_ERROR
            if is_storage_fault(exc):
                # The committer logged the fault once for the episode
                # (queue/health.py); per message, only that it was refused.
                log.info("[%s]: message refused: %s", self.client_ip, refusal)
            else:
                log.error("commit of %s failed: %s", envelope.queue_id, exc)
            try:
                spool.discard()
            except OSError:
                pass
            return refusal
        self.stats.messages += 1
        self.store.space.consumed(envelope.size)
        self.metrics.message_accepted(envelope.size)
        self.maillog.log(
            envelope.queue_id,
            {
                "client": f"[{self.client_ip}]:{self.client_port}",
                "helo": envelope.client_helo,
                "from": envelope.sender,
                "size": envelope.size,
                "nrcpt": len(envelope.recipients),
                "proto": envelope.protocol,
            },
            "queued",
        )
        self.on_queued(envelope)
        return R.queued(envelope.queue_id)

    def _protocol(self) -> str:
        session = self.session
        params = session.mail_params
        return transmission_type(
            session.esmtp,
            bool(params and params.smtputf8),
            tls=session.tls is not None,
            auth=session.auth_user is not None,
        )

    async def _etrn(self, node: str) -> R.Reply:
        """RFC 1985: only trusted clients (relay_networks, or authenticated
        users) may make us flush; anyone else could use it to make us hammer
        a destination."""
        trusted = self.session.auth_user is not None or self.policy.client_may_relay(self.client_ip)
        if self.on_etrn is None or not trusted:
            log.info("ETRN %s from [%s] refused", node, self.client_ip)
            self._log_reject("ETRN", R.ETRN_DENIED, None)
            return R.ETRN_DENIED
        count = await self.on_etrn(node)
        log.info("ETRN %s from [%s]: %d message(s) scheduled", node, self.client_ip, count)
        return R.etrn_started(node) if count else R.etrn_nothing(node)

    def _log_reject(
        self,
        stage: str,
        verdict: R.Reply,
        address: str | None,
        *,
        queue_id: str | None = None,
        sender: str | None = None,
        recipients: list[str] | None = None,
    ) -> None:
        """One Postfix-form reject line (obs.maillog): the fields keep Postfix's meanings.

        `address` is what the refused command named: the sender at MAIL
        (`from=`, no `to=`), the recipient at RCPT (`to=`, with the
        transaction's sender as `from=`). At END-OF-MESSAGE the caller passes
        the transaction's `sender` and `recipients` (`to=` only for exactly
        one, as Postfix does).
        """
        self.metrics.rejected(verdict.code)
        session = self.session
        recipient = None
        if stage == "MAIL":
            sender = address or ""
        elif stage == "RCPT":
            sender = str(session.sender) if session.sender is not None else ""
            recipient = address
        elif recipients is not None and len(recipients) == 1:
            recipient = recipients[0]
        self.maillog.reject(
            queue_id,
            stage,
            self.client_ip,
            verdict,
            sender=sender,
            recipient=recipient,
            proto="ESMTP" if session.esmtp else "SMTP",
            helo=session.helo_name,
        )

    def _log_content_reject(self, verdict: R.Reply) -> None:
        """A refused message (at the end of the data, or mid-data for a bare LF)."""
        sender, recipients = self._transaction
        queue_id = self._spool.queue_id if self._spool is not None else None
        self._log_reject(
            self.session.where,
            verdict,
            None,
            queue_id=queue_id,
            sender=sender,
            recipients=recipients,
        )

    def _log_session_end(self, reason: str) -> None:
        """Postfix's lines for a session that did not end with QUIT."""
        where = self.session.where
        if reason == "pregreet":
            self._log_reject("CONNECT", R.PREGREET, None)
        elif reason in ("timeout", "too many errors", "too many junk commands"):
            self.maillog.session_end(reason, where, None, self.client_ip)
        elif reason == "client closed the connection":
            self.maillog.session_end("lost connection", where, None, self.client_ip)


def _is_disk_full(exc: BaseException) -> bool:
    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or getattr(
        exc, "disk_full", False
    )

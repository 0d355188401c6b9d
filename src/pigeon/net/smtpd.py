"""Drive one SMTP server session over one connection (`pigeon.net.stream.SmtpStream`).

Contract:
  * This module moves bytes and asks questions; it decides nothing. The
    sans-IO `ServerSession` decides what every byte means and which reply
    it gets; the receive pipeline (`pigeon.policy`, one `ReceiveSession`
    per connection) decides who may send what to whom; the login rules
    (`pigeon.auth.login`) decide who is logged in; `net.intake` spools and
    commits accepted mail. Everything comes in one `ConnectionContext`
    (net/services.py).
  * Stages: the pipeline is told of the connection (before the greeting: a
    421 it returns is sent instead and the session ends), each EHLO/HELO, each
    TLS handshake, each verified login (its refusal answers AUTH), and asked
    at MAIL, RCPT, DATA/BDAT, the end of the data and ETRN; its refusal is
    the reply (and a mail-log reject line). A transaction that ends (RSET,
    EHLO, aborted or finished content) is reset on its side too.
  * Rule 1: a 250 for DATA/BDAT is only sent after the commit resolved
    (net/intake.py Rule 1, promise 1).
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
  * Rule 6 (the stop, app/lifecycle.py): `shutdown()` lets the session
    finish the transaction it is in or, between two, the next one, then
    421 4.3.2 at the next command boundary (`ServerSession.shutdown`: a
    client that said EHLO just before sees nothing of the stop);
    `cut_off()`, at the end of the grace period, has the session answer
    `421 4.3.2` at once, whatever it is doing, and the connection closes
    within CUT_OFF_CLOSE. A commit in progress then is not waited for: the
    client saw no 250, so it sends the message again (never lost; at worst
    twice).
  * TLS (RFC 3207, RFC 8314): on `StartTlsRequested` the 220 is flushed,
    then every octet the stream already holds is dropped unread
    (CVE-2011-0411; the session dropped its own buffer), then the handshake
    runs with `tls.handshake_timeout`. Implicit-TLS listeners (role
    submissions) run the same handshake before the greeting. A failed
    handshake is logged and the connection closed without a reply.
  * AUTH (RFC 4954): SCRAM keys and password checks are asked of the login
    rules (which run argon2id in a thread pool, never on the event loop,
    and apply the failed-login limits, sleeping for this connection only).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field

from pigeon.auth.login import ClientLogin
from pigeon.net.intake import MessageIntake
from pigeon.net.postscreen import Screen
from pigeon.net.services import ConnectionContext
from pigeon.net.sessionlog import SessionLog
from pigeon.net.stream import ByteStream, before_handshake
from pigeon.net.tls import tls_info
from pigeon.policy.api import Verdict
from pigeon.policy.pipeline import StageAnswer
from pigeon.proto import reply as R
from pigeon.proto.events import (
    NEED_DATA,
    Authenticated,
    AuthKeysRequested,
    AuthRequested,
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
from pigeon.proto.reply import Reply
from pigeon.proto.server import ServerSession

log = logging.getLogger("pigeon.smtpd")

#: Seconds a session cut off at the end of the stop's grace has to take its
#: 421 before the connection is aborted (Rule 6).
CUT_OFF_CLOSE = 1.0


@dataclass
class SessionStats:
    """Counters of one connection, for the disconnect log line."""

    messages: int = 0
    rejected_rcpts: int = 0
    errors: list[str] = field(default_factory=list)


async def _answer(answer: StageAnswer) -> Verdict:
    return answer if isinstance(answer, Verdict) else await answer


class Connection:
    """One client connection: feeds bytes to a ServerSession and acts on its events."""

    def __init__(self, stream: ByteStream, context: ConnectionContext) -> None:
        services = context.services
        self.stream = stream
        self.context = context
        self.services = services
        self.cfg = context.session_config
        self.clock = services.clock
        self.metrics = services.metrics
        self.maillog = services.maillog
        self._outcome = ""
        peer = stream.get_extra_info("peername") or ("", 0)
        self.client_ip: str = peer[0] if isinstance(peer, tuple) else str(peer)
        self.client_port: int = peer[1] if isinstance(peer, tuple) and len(peer) > 1 else 0
        self.session = ServerSession(self.cfg, now=self.clock())
        self.policy = services.pipeline.session(self.client_ip, self.client_port, context.role)
        self.screen = Screen.of(services.postscreen, context.role, self.client_ip)
        self.log = SessionLog(self.maillog, self.metrics, self.client_ip, self.session)
        self.intake = MessageIntake(services, self.session, self.policy, self.log, self.client_port)
        self.intake.local = stream.get_extra_info("sockname")  # capture listeners
        self._login: ClientLogin | None = None  # made at the first AUTH
        self.stats = SessionStats()
        self._closing = False
        self._tls_requested = False
        self._broken = False  # a failed handshake: nothing more may be written
        self._cut = False  # cut off at the end of the stop's grace (Rule 6)

    # -- public -------------------------------------------------------------

    def shutdown(self) -> None:
        """The stop: one transaction more at most, then 421 4.3.2 (Rule 6)."""
        self.session.shutdown()
        self.stream.wake()

    def cut_off(self) -> None:
        """The stop's grace is over: 421 4.3.2 now, whatever the state (Rule 6)."""
        self._cut = True
        self.session.cut_off()
        self.stream.wake()

    async def run(self) -> None:
        try:
            if self.context.implicit_tls and not await self._handshake():
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
            self.intake.discard()
            self.policy.disconnect()  # a milter's socket closes with the connection
            await self._close()
            self.stats.messages = self.intake.messages
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
        screen, session = self.screen, self.session
        postscreen = screen is not None and screen.config.greet_wait > 0
        wait = screen.config.greet_wait if screen is not None and postscreen else 0.0
        wait = wait or self.services.greet_pause
        early = b""
        if wait > 0:
            # A client that talks before our 220 is not speaking SMTP as
            # RFC 5321 §3.1 requires (it must wait for the greeting).
            began = self.clock()
            early = await self.stream.read(wait) or b""
            if early and screen is not None and postscreen:
                after = self.clock() - began
                early = screen.talked_first(early, after, session, self.policy)  # net/postscreen.py
            elif early:
                session.receive_data(early, self.clock())  # PREGREET: 554, closes
                log.info("pregreet from [%s]: client talked before the greeting", self.client_ip)
                early = b""
        refusal = None if session.closed else (await _answer(self.policy.connect())).reply
        if refusal is not None:
            log.info("connection from [%s] refused: %s", self.client_ip, refusal)
            self.log.reject("CONNECT", refusal, None)
        session.start(self.clock(), refusal)
        if early:
            session.receive_data(early, self.clock())  # read as its first commands
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
        session, policy, intake, screen = self.session, self.policy, self.intake, self.screen
        while True:
            event = session.next_event()
            if event is NEED_DATA:
                break
            if screen is not None and session.pipelined and not screen.found_pipelining:
                if screen.pipelined(session, policy):  # dropped (net/postscreen.py)
                    continue
            if isinstance(event, DataReceived):
                intake.write(event.data)
            elif isinstance(event, RcptRequested):
                verdict = policy.rcpt(event.recipient, event.params)
                if not isinstance(verdict, Verdict):
                    verdict = await verdict
                if verdict.reply is not None:
                    self.stats.rejected_rcpts += 1
                    self.log.reject("RCPT", verdict.reply, str(event.recipient))
                session.respond(verdict.reply)
            elif isinstance(event, MailRequested):
                verdict = policy.mail(event.sender, event.params)
                if not isinstance(verdict, Verdict):
                    verdict = await verdict
                if verdict.reply is not None:
                    sender = str(event.sender) if event.sender is not None else ""
                    self.log.reject("MAIL", verdict.reply, sender)
                session.respond(verdict.reply)
            elif isinstance(event, DataStarted):
                session.respond(await intake.open())
            elif isinstance(event, DataFinished):
                # Flush earlier pipelined replies before the (slower) commit.
                self._flush()
                session.respond(await intake.finish(event))
                policy.reset()
            elif isinstance(event, (DataAborted, TransactionReset)):
                if isinstance(event, DataAborted):
                    self._aborted(event)
                intake.discard()
                policy.reset()
            elif isinstance(event, HeloReceived):
                helo = policy.helo(event.hostname, event.esmtp)
                if not isinstance(helo, Verdict):
                    await helo  # its refusal is held for RCPT (policy/pipeline.py)
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
                session.respond_keys(await self._logins().keys(event.username))
            elif isinstance(event, AuthRequested):
                self._flush()
                session.respond(await self._authenticate(event))
            elif isinstance(event, Authenticated):
                policy.authenticated()  # 235 sent: the login is in force
            elif isinstance(event, EtrnRequested):
                session.respond(await self._etrn(event.node))
            elif isinstance(event, ConnectionClosing):
                self._closing = True
                self.log.session_end(event.reason)
        self._flush()
        # Writing is bounded like reading (Postfix smtpd_timeout covers both):
        # a peer that never reads cannot hold the connection (TimeoutError).
        await self.stream.drain(self.cfg.command_timeout)

    def _aborted(self, event: DataAborted) -> None:
        reply = event.reply
        if isinstance(reply, Reply) and reply.permanent:
            # Refused content; a 4xx abort (timeout, local error) is not a rejection.
            self.intake.refused(reply)
        elif isinstance(reply, Reply):
            self.metrics.rejected(reply.code)
        log.info("[%s]: message refused: %s", self.client_ip, event.reason)

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
        stream, implicit = self.stream, self.context.implicit_tls
        early = before_handshake(stream, implicit=implicit, peer=self.client_ip, log=log)
        try:
            await stream.start_tls(
                self.services.tls.context, timeout=self.services.handshake_timeout, early=early
            )
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
            " implicit" if implicit else "",
        )
        await _answer(self.policy.tls(info))
        return True

    # -- AUTH and ETRN --------------------------------------------------------

    async def _authenticate(self, event: AuthRequested) -> Reply | None:
        """A finished SASL exchange: the login rules, then the auth stage; None accepts (235)."""
        account = await self._logins().login(event)
        if isinstance(account, Reply):
            return account
        verdict = await _answer(self.policy.auth(account.name, frozenset(account.addresses)))
        return verdict.reply

    def _logins(self) -> ClientLogin:
        if self._login is None:
            logins = self.services.logins
            assert logins is not None  # AUTH is offered only with login rules (listener.py)
            self._login = logins.client(self.client_ip, self.context.role)
        return self._login

    async def _etrn(self, node: str) -> Reply:
        """RFC 1985: the pipeline says who may make us flush (policy/relay.py)."""
        on_etrn = self.services.on_etrn
        refusal = (await _answer(self.policy.etrn(node))).reply
        if on_etrn is None or refusal is not None:
            refusal = refusal or R.ETRN_DENIED  # no queue manager here to flush
            log.info("ETRN %s from [%s] refused", node, self.client_ip)
            self.log.reject("ETRN", refusal, None)
            return refusal
        count = await on_etrn(node)
        log.info("ETRN %s from [%s]: %d message(s) scheduled", node, self.client_ip, count)
        return R.etrn_started(node) if count else R.etrn_nothing(node)

    async def _close(self) -> None:
        """Flush the last replies and close; abort if the peer does not take
        them within timeouts.command (a half-closed peer still gets them)."""
        try:
            self._flush()
            wait = CUT_OFF_CLOSE if self._cut else self.cfg.command_timeout
            await self.stream.close_and_wait(wait)
        except Exception:
            self.stream.abort()

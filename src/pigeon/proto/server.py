"""ServerSession: the sans-IO SMTP server state machine (RFC 5321 + extensions).

The API below is fixed; the driver (pigeon.net.smtpd) and the transcript
runner are written against it.

    session = ServerSession(SessionConfig(hostname="mx.example"), now=0.0)
    session.start(now)                # queues the 220 greeting (start(now, refusal):
                                      # a 421 instead, and the session closes)
    out = session.data_to_send()      # bytes to write (may be b"")
    session.receive_data(b"EHLO x\\r\\n", now)
    ev = session.next_event()         # an Event, or NEED_DATA
    session.respond(None | Reply)     # answer a DECISION event (optional now=)
    session.next_deadline()           # float | None: when to call on_timer
    session.on_timer(now)             # fires timeouts (421 4.4.2 + ConnectionClosing)
    session.receive_eof()             # the peer closed its side
    session.shutdown()                # the stop: the transaction in progress, or else
                                      # the next one, may finish; then 421 4.3.2
    session.cut_off()                 # the drain's grace is over: 421 4.3.2 now,
                                      # whatever the state, and close
    session.drop(reply)               # end now with `reply` (the postscreen tests)
    session.closed                    # True once the session decided to close
    session.pipelined                 # None, or the first command the client sent more
                                      # after before it could have our reply, where
                                      # RFC 2920 §3.1 forbids it (net/postscreen.py acts)
    # STARTTLS / AUTH (proto/secure.py):
    session.tls_started(info)         # handshake done (before start(): implicit TLS)
    session.tls_failed(reason)        # handshake failed: close, no reply
    session.respond_keys(keys|None)   # answer AuthKeysRequested (SCRAM)
    session.tls, session.auth_user    # TlsInfo | None, authenticated user | None
    session.where                     # the protocol stage, as Postfix smtpd logs it:
                                      # CONNECT, a verb (EHLO, MAIL, RCPT, DATA, BDAT...),
                                      # UNKNOWN, END-OF-MESSAGE

Contract:
  * No I/O and no clock: bytes in, events and bytes out, time passed in.
    This package never imports asyncio, socket or ssl (a unit test checks).
  * Input is processed lazily inside `next_event()`: the driver feeds bytes,
    then calls `next_event()` until it returns NEED_DATA, and only then reads
    more. While a DECISION event awaits `respond()` no input is processed
    (so pipelined replies keep their order) and there is no deadline. A
    driver that follows this keeps the receive buffer at one read plus one
    line; every line/content buffer inside the session is capped.
  * Every reply goes through `_reply()`, the single choke point: it applies
    enhanced status codes (only after EHLO) and counts 4xx/5xx replies to
    commands; when the count exceeds `max_errors` a 421 follows and the
    session closes.
  * Junk commands (NOOP, RSET, VRFY, HELP, ETRN; `states.VERB_FLAGS`) are
    counted; the one past `max_junk_commands` is answered 421 4.7.0
    instead and the session closes, so they cannot keep a session alive
    forever. An accepted message starts the count again (as Postfix does).
  * A 421 given to `respond()` (any DECISION) is sent and the session
    closes (RFC 5321 §3.8), as for its own 421s.
  * ConnectionClosing is always the last event. Before it, a transaction in
    progress is abandoned with DataAborted (inside content) or
    TransactionReset.
  * Nothing the peer sends raises out of the session: an unexpected internal
    error becomes 451 4.3.0 (LOCAL_ERROR) and a close; the exception text
    goes only into the private ConnectionClosing reason. Calling `respond()`
    with no DECISION pending is a driver bug and raises RuntimeError.
  * Sequencing comes from the table in `states.py`; content rules from
    `datareader.py` / `content.py`; syntax from `commands.py`,
    `address.py`, `params.py`.
"""

from __future__ import annotations

import dataclasses
import re
from collections import deque
from collections.abc import Callable
from typing import Any

from pigeon.proto import reply as R
from pigeon.proto.commands import (
    Command,
    CommandError,
    bdat_argument,
    mail_argument,
    parse_command,
    rcpt_argument,
)
from pigeon.proto.content import ContentScanner, scanner_for
from pigeon.proto.datareader import BARE, DONE, MORE, ChunkReader, DotReader
from pigeon.proto.events import (
    NEED_DATA,
    AuthKeysRequested,
    AuthRequested,
    ConnectionClosing,
    DataAborted,
    DataFinished,
    DataReceived,
    DataStarted,
    EtrnRequested,
    Event,
    HeloReceived,
    MailRequested,
    RcptRequested,
    TransactionReset,
)
from pigeon.proto.linebuf import CommandLineReader
from pigeon.proto.params import (
    MailParams,
    ParamError,
    RcptParams,
    parse_mail_params,
    parse_rcpt_params,
)
from pigeon.proto.reply import Reply
from pigeon.proto.secure import SecureCommands
from pigeon.proto.settings import SessionConfig
from pigeon.proto.states import TRANSACTION_STATES, VERB_FLAGS, State, lookup
from pigeon.vocab.address import Address, NonAsciiAddressError, PathError, parse_path, split_path

__all__ = ["ServerSession", "SessionConfig"]

# RFC 1985 §5: the node is a domain name (a dot-atom of LDH labels).
_ETRN_DOMAIN = re.compile(
    r"(?i)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?"
)


class ServerSession(SecureCommands):
    """One SMTP server conversation; see the module docstring for the contract."""

    def __init__(
        self,
        config: SessionConfig | None = None,
        now: float = 0.0,
        *,
        sasl_nonce: Callable[[], bytes] | None = None,
    ) -> None:
        self.config = config or SessionConfig()
        self._init_secure(sasl_nonce)
        self.state = State.CONNECTED
        # Session attributes the driver may read.
        self.helo_name: str | None = None
        self.esmtp = False
        self.sender: Address | None = None
        self.mail_params: MailParams | None = None
        self.recipients: list[tuple[Address, RcptParams]] = []
        self.errors = 0
        self.where = "CONNECT"
        #: The first command the client sent more after before it could have
        #: our reply where RFC 2920 §3.1 forbids it (EHLO/HELO always end a
        #: group; without EHLO and PIPELINING every command does); None: none.
        self.pipelined: str | None = None
        self._buf = bytearray()
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._pending: Event | None = None  # DECISION awaiting respond()
        self._lines = CommandLineReader(
            self.config.max_command_line, self.config.max_command_line_with_params
        )
        self._sasl_lines = CommandLineReader(
            self.config.max_command_line_with_params, self.config.max_command_line_with_params
        )
        self._scanner: ContentScanner | None = None
        self._reader: DotReader | ChunkReader | None = None
        self._chunk: tuple[int, bool] | None = None  # BDAT awaiting DataStarted answer
        self._chunk_reply: Reply | None = None  # reply for a discarded chunk
        self._chunk_fails_tx = False
        self._rcpt_attempts = 0
        self._junk_commands = 0
        self._bdat_failed = False
        self._now = now
        self._ready_at = now
        self._last_rx = now
        self._data_start = now
        self._shutdown = False
        self._stop_after_transaction = False  # shutdown(): a transaction began
        self._eof = False
        self._closing: str | None = None
        self._close_emitted = False

    # --- public API ---------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closing is not None

    def start(self, now: float, refusal: Reply | None = None) -> None:
        """Greet, or with `refusal` (a 421) refuse the connection and close."""
        self._now = now
        if self.state is State.CONNECTED and not self.closed:
            if refusal is not None:
                if refusal.code != 421:
                    raise ValueError("a connection is refused with 421 (RFC 5321 §3.8)")
                self._reply(refusal, count=False)
                self._close("refused at connect")
                return
            self._reply(R.greeting(self.config.hostname), count=False)
            self.state = State.GREETED
            self._ready_at = now

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes, now: float) -> None:
        self._now = now
        if self.closed or not data:
            return
        if self.state is State.CONNECTED:
            # The client talked before the greeting (Postfix postscreen "PREGREET").
            self._reply(R.PREGREET, count=False)
            self._close("pregreet")
            return
        self._buf += data
        self._last_rx = now

    def receive_eof(self) -> None:
        self._eof = True

    def shutdown(self) -> None:
        """The stop began: the transaction in progress may finish or, between
        transactions, the next one (a client that connected or said EHLO just
        before sees nothing of the stop); once the session is out of that
        transaction, 421 4.3.2 at the next command boundary."""
        self._shutdown = True
        self._stop_after_transaction = self.state in TRANSACTION_STATES

    def drop(self, reply: Reply) -> None:
        """End the session now with `reply` (the driver's protocol tests:
        a client that talked before the greeting or pipelined too early)."""
        if not self.closed:
            self._reply(reply, count=False)
            self._close("dropped")

    def cut_off(self) -> None:
        """The stop's grace period is over: answer 421 4.3.2 now, even inside
        DATA or while a decision is pending (the transaction is abandoned:
        DataAborted or TransactionReset), and close (RFC 5321 §3.8: a server
        that must shut down may send 421 at any time)."""
        if self.closed:
            return
        reply = R.shutting_down(self.config.hostname)
        self._reply(reply, count=False)
        self._close("shutdown", abort_reply=reply)

    def next_event(self) -> Event:
        if (
            not self._events
            and self._pending is None
            and not self.closed
            and not self._tls_pending
            and self.state is not State.CONNECTED
        ):
            try:
                self._process()
            except Exception as exc:  # never let peer input raise out (module contract)
                self._internal_error(exc)
        if self._events:
            return self._events.popleft()
        if self._closing is not None and not self._close_emitted:
            self._close_emitted = True
            return ConnectionClosing(self._closing)
        return NEED_DATA

    def respond(self, reply: Reply | None = None, *, now: float | None = None) -> None:
        if now is not None:
            self._now = now
        ev = self._pending
        if ev is None:
            if self.closed:  # the session ended while the driver was deciding
                return
            raise RuntimeError("respond() called with no DECISION pending")
        if isinstance(ev, AuthKeysRequested):
            raise RuntimeError("answer AuthKeysRequested with respond_keys()")
        self._pending = None
        if self.closed:
            return
        try:
            self._answer(ev, reply)
        except Exception as exc:
            self._internal_error(exc)

    def next_deadline(self) -> float | None:
        if (
            self.closed
            or self._pending is not None
            or self._tls_pending
            or self.state is State.CONNECTED
        ):
            return None
        cfg = self.config
        if self._reader is not None:
            return min(self._last_rx + cfg.data_timeout, self._data_start + cfg.data_deadline)
        return self._ready_at + cfg.command_timeout

    def on_timer(self, now: float) -> None:
        self._now = now
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return
        timeout = R.timeout(self.config.hostname)
        self._reply(timeout, count=False)
        self._close("timeout", abort_reply=timeout)

    # --- the reply choke point and closing ------------------------------------

    def _reply(self, reply: Reply, *, count: bool = True) -> None:
        self._out += reply.to_bytes(enhanced=self.esmtp)
        if count and reply.code >= 400 and not self.closed:
            self.errors += 1
            if self.errors > self.config.max_errors:
                self._out += R.too_many_errors(self.config.hostname).to_bytes(enhanced=self.esmtp)
                self._close("too many errors")

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _close(self, reason: str, *, abort_reply: Reply | None = None) -> None:
        if self._closing is not None:
            return
        if self._reader is not None and self._scanner is not None:
            self._emit(DataAborted(reason, abort_reply))
        elif self.state in TRANSACTION_STATES:
            self._emit(TransactionReset())
        self._reader = None
        self._pending = None
        self._sasl_abort()
        self._buf.clear()
        self.state = State.CLOSED
        self._closing = reason

    def _internal_error(self, exc: Exception) -> None:
        if self._closing is None:
            self._reply(R.LOCAL_ERROR, count=False)
        self._close(f"internal error: {exc!r}", abort_reply=R.LOCAL_ERROR)

    def _set_ready(self) -> None:
        self._ready_at = self._now

    def _reset_transaction(self, *, emit: bool) -> None:
        if emit and self.state in TRANSACTION_STATES:
            self._emit(TransactionReset())
        if self.state in TRANSACTION_STATES:
            self.state = State.READY
        self.sender = None
        self.mail_params = None
        self.recipients = []
        self._rcpt_attempts = 0
        self._scanner = None
        self._reader = None

    # --- input processing ---------------------------------------------------

    def _process(self) -> None:
        while (
            not self._events and self._pending is None and not self.closed and not self._tls_pending
        ):
            if self._reader is not None:
                progressed = self._step_content()
            else:
                progressed = self._step_command()
            if not progressed:
                if self._eof:
                    self._close("client closed the connection", abort_reply=None)
                break

    def _step_command(self) -> bool:
        if self._shutdown and self._stop_after_transaction and self.state not in TRANSACTION_STATES:
            self._reply(R.shutting_down(self.config.hostname), count=False)
            self._close("shutdown")
            return True
        if self._sasl is not None:
            response = self._sasl_lines.next_line(self._buf)
            if response is None:
                return False
            self._sasl_line(response)
            self._set_ready()
            return True
        line = self._lines.next_line(self._buf)
        if line is None:
            return False
        if isinstance(line, Reply):
            self._reply(line)
        else:
            self._command(line)
        if self._reader is None:
            self._set_ready()
        return True

    def _command(self, line: bytes) -> None:
        try:
            cmd = parse_command(line)
        except CommandError as exc:
            verb = line.split(b" ", 1)[0].decode("ascii", "replace").upper()
            self.where = verb if verb in VERB_FLAGS else "UNKNOWN"
            self._reply(exc.reply)
            return
        self.where = cmd.verb
        if self._buf and self.pipelined is None:
            self._check_pipelining(cmd.verb)
        if VERB_FLAGS[cmd.verb].junk:
            self._junk_commands += 1
            if self._junk_commands > self.config.max_junk_commands:
                self._reply(R.too_many_junk_commands(self.config.hostname), count=False)
                self._close("too many junk commands")
                return
        nxt = lookup(self.state, cmd.verb)
        getattr(self, "_cmd_" + cmd.verb.lower())(cmd, nxt)

    def _check_pipelining(self, verb: str) -> None:
        """Octets follow this command in the buffer: the client sent them
        before it had our reply. Only a client that said EHLO and was
        offered PIPELINING may, and never after EHLO/HELO (RFC 2920 §3.1)."""
        pipelining = self.esmtp and self.config.enable_pipelining
        if verb in ("EHLO", "HELO") or not pipelining:
            self.pipelined = verb

    def _cmd_ehlo(self, cmd: Command, nxt: State | Reply) -> None:
        if not cmd.arg:
            self._reply(R.HELO_SYNTAX)
            return
        self._reset_transaction(emit=True)
        self.state = State.READY
        self.helo_name = cmd.arg
        self.esmtp = cmd.verb == "EHLO"
        self._bdat_failed = False
        self._emit(HeloReceived(cmd.arg, self.esmtp))
        if self.esmtp:
            self._reply(R.ehlo_ok(self.config.hostname, self._extensions()))
        else:
            self._reply(R.helo_ok(self.config.hostname))

    _cmd_helo = _cmd_ehlo

    def _extensions(self) -> list[str]:
        cfg = self.config
        ext = []
        if cfg.enable_pipelining:
            ext.append("PIPELINING")  # RFC 2920
        ext.append(f"SIZE {cfg.max_message_size}" if cfg.max_message_size else "SIZE")  # RFC 1870
        if cfg.enable_8bitmime:
            ext.append("8BITMIME")  # RFC 6152
        ext.append("ENHANCEDSTATUSCODES")  # RFC 2034
        if cfg.enable_smtputf8:
            ext.append("SMTPUTF8")  # RFC 6531
        if cfg.enable_chunking:
            ext.append("CHUNKING")  # RFC 3030
        if cfg.enable_dsn:
            ext.append("DSN")  # RFC 3461
        if cfg.enable_etrn:
            ext.append("ETRN")  # RFC 1985
        return ext + self._secure_extensions()

    def _cmd_mail(self, cmd: Command, nxt: State | Reply) -> None:
        if isinstance(nxt, Reply):
            self._reply(nxt)
            return
        refusal = self._mail_refusal()
        if refusal is not None:
            self._reply(refusal)
            return
        self._bdat_failed = False

        def parse() -> tuple[Address | None, MailParams]:
            path, ptext = split_path(mail_argument(cmd.arg))
            params = parse_mail_params(_tokens(ptext), cfg=self.config)
            return parse_path(path, allow_null=True, smtputf8=params.smtputf8), params

        parsed = self._parsed(parse, R.BAD_SENDER_SYNTAX)
        if parsed is None:
            return
        sender, params = parsed
        # SIZE= over limits.message_size (RFC 1870 §6.1) is the receive
        # pipeline's to refuse (policy/reserve.py MessageSizeLimit).
        auth = self._auth_param(params.auth)
        if auth != params.auth:
            params = dataclasses.replace(params, auth=auth)
        self._decide(MailRequested(sender, params))

    def _cmd_rcpt(self, cmd: Command, nxt: State | Reply) -> None:
        if isinstance(nxt, Reply):
            self._reply(nxt)
            return
        self._rcpt_attempts += 1
        if len(self.recipients) >= self.config.max_recipients:  # RFC 5321 §4.5.3.1.8
            self._reply(R.TOO_MANY_RECIPIENTS)
            return
        smtputf8 = self.mail_params is not None and self.mail_params.smtputf8

        def parse() -> tuple[Address | None, RcptParams]:
            path, ptext = split_path(rcpt_argument(cmd.arg))
            params = parse_rcpt_params(_tokens(ptext), cfg=self.config)
            return parse_path(path, allow_null=False, smtputf8=smtputf8), params

        parsed = self._parsed(parse, R.BAD_RECIPIENT_SYNTAX)
        if parsed is None:
            return
        rcpt, params = parsed
        assert rcpt is not None
        self._decide(RcptRequested(rcpt, params))

    def _parsed(
        self, parse: Callable[[], tuple[Any, Any]], bad_path: Reply
    ) -> tuple[Any, Any] | None:
        """Run a MAIL/RCPT argument parser; on a grammar error, reply and return None."""
        try:
            return parse()
        except (CommandError, ParamError) as exc:
            self._reply(exc.reply)
        except NonAsciiAddressError:  # RFC 6531 §3.4
            self._reply(R.NON_ASCII_ADDRESS)
        except PathError:
            self._reply(bad_path)
        return None

    def _no_rcpt_reply(self, nxt: Reply) -> Reply:
        # Postfix answers DATA with 554 5.5.1 when RCPTs were tried but none
        # was accepted (typical with PIPELINING), 503 when none was tried.
        if self.state is State.MAIL and self._rcpt_attempts:
            return R.NO_VALID_RECIPIENTS
        return nxt

    def _cmd_data(self, cmd: Command, nxt: State | Reply) -> None:
        if isinstance(nxt, Reply):
            self._reply(self._no_rcpt_reply(nxt))
            return
        if cmd.arg:
            self._reply(R.SYNTAX_ERROR)
            return
        self._decide(DataStarted("DATA"))

    def _cmd_bdat(self, cmd: Command, nxt: State | Reply) -> None:
        try:
            size, last = bdat_argument(cmd.arg)
        except CommandError as exc:
            # Without a valid size the chunk boundary is unknown; the stream
            # cannot be resynchronised, so the session ends (deviation noted).
            self._reply(exc.reply)
            self._close("BDAT syntax error")
            return
        refusal: Reply | None = None
        if self._bdat_failed:
            refusal = R.BDAT_FAILED
        elif isinstance(nxt, Reply):
            refusal = self._no_rcpt_reply(nxt)
        if refusal is not None:
            self._start_chunk(ChunkReader(None, size, last, discard=True))
            self._chunk_reply = refusal
            self._chunk_fails_tx = False
            return
        if self.state is State.BDAT:
            assert self._scanner is not None
            self._start_chunk(ChunkReader(self._scanner, size, last, discard=False))
            return
        self._chunk = (size, last)
        self._decide(DataStarted("BDAT"))

    def _cmd_rset(self, cmd: Command, nxt: State | Reply) -> None:
        if cmd.arg:
            self._reply(R.SYNTAX_ERROR)
            return
        self._reset_transaction(emit=True)
        self._bdat_failed = False
        assert isinstance(nxt, State)
        self.state = nxt
        self._reply(R.RESET_OK)

    def _cmd_noop(self, cmd: Command, nxt: State | Reply) -> None:
        self._reply(R.NOOP_OK)

    def _cmd_vrfy(self, cmd: Command, nxt: State | Reply) -> None:
        self._reply(R.VRFY_CANNOT if cmd.arg else R.SYNTAX_ERROR)

    def _cmd_etrn(self, cmd: Command, nxt: State | Reply) -> None:
        if not self.config.enable_etrn:
            self._reply(R.NOT_IMPLEMENTED)
            return
        if isinstance(nxt, Reply):
            self._reply(nxt)
            return
        node = cmd.arg.strip()
        if node.startswith("#"):  # RFC 1985 §5.3: named queues
            self._reply(R.ETRN_QUEUE_UNSUPPORTED)
            return
        name = node[1:] if node.startswith("@") else node
        if not _ETRN_DOMAIN.fullmatch(name):
            self._reply(R.ETRN_SYNTAX)
            return
        self._decide(EtrnRequested(node.lower()))

    def _cmd_help(self, cmd: Command, nxt: State | Reply) -> None:
        self._reply(R.help_text())

    def _cmd_quit(self, cmd: Command, nxt: State | Reply) -> None:
        self._reply(R.closing(self.config.hostname), count=False)
        self._close("quit")

    # --- decisions ----------------------------------------------------------

    def _decide(self, event: Event) -> None:
        self._pending = event
        self._emit(event)

    def _answer(self, ev: Event, reply: Reply | None) -> None:
        if reply is not None and reply.code == 421 and not isinstance(ev, AuthRequested):
            # RFC 5321 §3.8: 421 means the service closes the channel, at
            # once (a BDAT chunk announced is not read).
            self._reply(reply, count=False)
            self._close("refused with 421")
            return
        accepted = reply is None or reply.positive
        if isinstance(ev, MailRequested):
            if accepted:
                self._stop_after_transaction = self._shutdown  # shutdown(): the last one
                self.state = State.MAIL
                self.sender, self.mail_params = ev.sender, ev.params
                self.recipients, self._rcpt_attempts = [], 0
            self._reply(reply or R.SENDER_OK)
        elif isinstance(ev, RcptRequested):
            if accepted:
                self.state = State.RCPT
                self.recipients.append((ev.recipient, ev.params))
            self._reply(reply or R.RECIPIENT_OK)
        elif isinstance(ev, DataStarted) and ev.via == "DATA":
            if accepted:
                self.state = State.DATA
                self._scanner = self._new_scanner()
                self._reader = DotReader(self._scanner, self.config.max_text_line)
                self._enter_content()
            self._reply(reply or R.START_DATA)
        elif isinstance(ev, DataStarted):
            assert self._chunk is not None
            size, last = self._chunk
            self._chunk = None
            self.state = State.BDAT
            if accepted:
                self._scanner = self._new_scanner()
                self._start_chunk(ChunkReader(self._scanner, size, last, discard=False))
            else:
                assert reply is not None
                self._start_chunk(ChunkReader(None, size, last, discard=True))
                self._chunk_reply = reply
                self._chunk_fails_tx = True
        elif isinstance(ev, AuthRequested):
            self._answer_auth(ev, reply)
        elif isinstance(ev, EtrnRequested):
            self._reply(reply or R.etrn_started(ev.node))
        elif isinstance(ev, DataFinished):
            self._reset_transaction(emit=False)
            self._bdat_failed = False
            if accepted:
                self._junk_commands = 0  # a delivered message: the session is useful
            self._reply(reply or R.OK)
        if self._reader is None:
            self._set_ready()

    # --- content --------------------------------------------------------------

    def _new_scanner(self) -> ContentScanner:
        return scanner_for(self.config, self.mail_params or MailParams())

    def _enter_content(self) -> None:
        self._data_start = self._last_rx = self._now

    def _start_chunk(self, reader: ChunkReader) -> None:
        # Each chunk is a content phase of its own for the deadlines.
        self._reader = reader
        self._enter_content()

    def _step_content(self) -> bool:
        reader = self._reader
        assert reader is not None
        before = len(self._buf)
        piece, status = reader.read(self._buf)
        if piece:
            self._emit(DataReceived(piece))
        if isinstance(reader, DotReader):
            if status == BARE:
                # RFC 5321 §2.3.8; the smuggling defence: reply, abort, close.
                self._reply(R.BARE_NEWLINE, count=False)
                self._close("bare CR or LF in DATA", abort_reply=R.BARE_NEWLINE)
            elif status == DONE:
                self._end_data()
        elif status == DONE:
            self._end_chunk(reader)
        return status != MORE or piece is not None or len(self._buf) != before

    def _end_data(self) -> None:
        scanner = self._scanner
        assert scanner is not None
        self.where = "END-OF-MESSAGE"
        self._reader = None
        self._set_ready()
        if scanner.failure is not None:
            self._emit(DataAborted(scanner.reason, scanner.failure))
            self._reset_transaction(emit=True)
            self._reply(scanner.failure)
            return
        self._decide(DataFinished(scanner.size, scanner.eight_bit, scanner.received))

    def _end_chunk(self, reader: ChunkReader) -> None:
        self._reader = None
        self._set_ready()
        if reader.last:
            self.where = "END-OF-MESSAGE"
        if self._chunk_reply is not None:
            refusal, self._chunk_reply = self._chunk_reply, None
            if self._chunk_fails_tx:
                self._chunk_fails_tx = False
                self._fail_bdat(refusal, "content refused by the driver", aborted=False)
            else:
                self._reply(refusal)
            return
        scanner = self._scanner
        assert scanner is not None
        if reader.bare or (reader.last and not scanner.finish()):
            self._fail_bdat(R.BARE_NEWLINE_CHUNK, "bare CR or LF in BDAT content")
        elif scanner.failure is not None:
            self._fail_bdat(scanner.failure, scanner.reason)
        elif reader.last:
            self._decide(DataFinished(scanner.size, scanner.eight_bit, scanner.received))
        else:
            self._reply(R.bdat_chunk_ok(reader.size))

    def _fail_bdat(self, failure: Reply, reason: str, *, aborted: bool = True) -> None:
        # The transaction is over; later BDATs get BDAT_FAILED until RSET/MAIL.
        if aborted:
            self._emit(DataAborted(reason, failure))
        self._reset_transaction(emit=True)
        self._bdat_failed = True
        self._reply(failure)


def _tokens(text: str) -> list[str]:
    return [t for t in text.split(" ") if t]

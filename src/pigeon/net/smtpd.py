"""Drive one SMTP server session over an asyncio stream pair.

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
"""
from __future__ import annotations

import asyncio
import errno
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from pigeon.proto import reply as R
from pigeon.proto.events import (NEED_DATA, ConnectionClosing, DataAborted, DataFinished,
                                 DataReceived, DataStarted, HeloReceived, MailRequested,
                                 RcptRequested, TransactionReset)
from pigeon.proto.server import ServerSession, SessionConfig
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.trace import received_header, transmission_type

log = logging.getLogger("pigeon.smtpd")

READ_SIZE = 65536


@dataclass
class SessionStats:
    """Counters of one connection, for the disconnect log line."""

    messages: int = 0
    rejected_rcpts: int = 0
    errors: list[str] = field(default_factory=list)


class Connection:
    """One client connection: feeds bytes to a ServerSession and acts on its events."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 session_config: SessionConfig, store, policy, maillog,
                 on_queued: Callable[[str], None], greet_pause: float = 0.0,
                 clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], float] = time.time) -> None:
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername") or ("", 0)
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
        self._spool_error: OSError | None = None
        self._closing = False
        self._wake: asyncio.Future | None = None

    # -- public -------------------------------------------------------------

    def shutdown(self) -> None:
        """SIGTERM drain: the session says 421 at its next command boundary."""
        self.session.shutdown()
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake = loop.create_future()
        try:
            await self._greet()
            await self._loop()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the peer went away; nothing to answer
        except asyncio.CancelledError:
            raise
        except Exception:  # Rule 3: log privately, answer generically
            log.exception("session with [%s] failed", self.client_ip)
            try:
                self.writer.write(R.reply(421, "4.3.0", "Error: internal error, closing").to_bytes())
            except Exception:
                pass
        finally:
            self._discard_spool()
            await self._close()
            log.info("disconnect from [%s]:%s messages=%d", self.client_ip, self.client_port,
                     self.stats.messages)

    # -- I/O loop -----------------------------------------------------------

    async def _greet(self) -> None:
        if self.greet_pause > 0:
            # A client that talks before our 220 is not speaking SMTP as
            # RFC 5321 §3.1 requires (it must wait for the greeting).
            try:
                early = await asyncio.wait_for(self.reader.read(READ_SIZE), self.greet_pause)
            except asyncio.TimeoutError:
                early = b""
            if early:
                self.session.receive_data(early, self.clock())
                log.info("pregreet from [%s]: client talked before the greeting", self.client_ip)
        self.session.start(self.clock())
        await self._process()

    async def _loop(self) -> None:
        read_task: asyncio.Task | None = None
        try:
            while not self._closing:
                if read_task is None:
                    read_task = asyncio.ensure_future(self.reader.read(READ_SIZE))
                deadline = self.session.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - self.clock())
                waiters = {read_task} if self._wake.done() else {read_task, self._wake}
                done, _ = await asyncio.wait(waiters, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if read_task in done:
                    data = read_task.result()
                    read_task = None
                    if data:
                        self.session.receive_data(data, self.clock())
                    else:
                        self.session.receive_eof()
                elif not done:
                    self.session.on_timer(self.clock())
                # else: woken by shutdown(); the session has queued its 421.
                await self._process()
        finally:
            if read_task is not None and not read_task.done():
                read_task.cancel()

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
                verdict = self.policy.check_recipient(event.recipient, self.client_ip)
                if verdict is not None:
                    self.stats.rejected_rcpts += 1
                    self._log_reject("RCPT", verdict, str(event.recipient))
                session.respond(verdict)
            elif isinstance(event, MailRequested):
                sender = event.sender
                verdict = self.policy.check_sender(sender, self.client_ip) if sender else None
                if verdict is not None:
                    self._log_reject("MAIL", verdict, str(sender))
                session.respond(verdict)
            elif isinstance(event, DataStarted):
                session.respond(self._open_spool())
            elif isinstance(event, DataFinished):
                # Flush earlier pipelined replies before the (slower) commit.
                self._flush()
                session.respond(await self._commit(event))
            elif isinstance(event, (DataAborted, TransactionReset)):
                if isinstance(event, DataAborted):
                    log.info("[%s]: message refused: %s", self.client_ip, event.reason)
                self._discard_spool()
            elif isinstance(event, ConnectionClosing):
                self._closing = True
            elif isinstance(event, HeloReceived):
                pass
        self._flush()
        await self.writer.drain()

    def _flush(self) -> None:
        out = self.session.data_to_send()
        if out:
            self.writer.write(out)

    async def _close(self) -> None:
        try:
            self._flush()
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5.0)
        except Exception:
            pass

    # -- spool --------------------------------------------------------------

    def _open_spool(self) -> R.Reply | None:
        self._discard_spool()
        session = self.session
        try:
            spool = self.store.new_spool()
        except OSError as exc:
            log.error("cannot create spool file: %s", exc)
            return R.INSUFFICIENT_STORAGE if _is_disk_full(exc) else R.LOCAL_ERROR
        self._spool = spool
        self._spool_error = None
        params = session.mail_params
        protocol = transmission_type(session.esmtp, bool(params and params.smtputf8))
        self._write_spool(received_header(
            helo=session.helo_name or "", client_ip=self.client_ip, hostname=self.cfg.hostname,
            protocol=protocol, queue_id=spool.queue_id,
            recipients=[str(a) for a, _ in session.recipients], timestamp=self.wallclock()))
        return None

    def _write_spool(self, data: bytes) -> None:
        if self._spool is None or self._spool_error is not None:
            return
        try:
            self._spool.write(data)
        except OSError as exc:
            # Keep reading the client's data (the protocol must stay in step)
            # and answer 452/451 at the end instead of 250.
            self._spool_error = exc
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
            disk_full = _is_disk_full(self._spool_error)
            self._discard_spool()
            return R.INSUFFICIENT_STORAGE if disk_full else R.LOCAL_ERROR
        params = session.mail_params
        envelope = Envelope(
            queue_id=spool.queue_id,
            sender=str(session.sender) if session.sender is not None else "",
            recipients=[Recipient(str(a), p) for a, p in session.recipients],
            params=params, received_at=self.wallclock(), size=spool.size,
            eight_bit=event.eight_bit, client_address=self.client_ip,
            client_helo=session.helo_name or "",
            protocol=transmission_type(session.esmtp, bool(params and params.smtputf8)))
        self._spool = None  # the store owns it from here on
        try:
            await asyncio.wrap_future(self.store.commit_async(spool, envelope))
        except Exception as exc:  # StoreError and anything else: not durable -> 4xx
            log.error("commit of %s failed: %s", envelope.queue_id, exc)
            try:
                spool.discard()
            except OSError:
                pass
            return R.INSUFFICIENT_STORAGE if getattr(exc, "disk_full", False) else R.LOCAL_ERROR
        self.stats.messages += 1
        self.maillog.log(envelope.queue_id, {
            "client": f"[{self.client_ip}]:{self.client_port}", "helo": envelope.client_helo,
            "from": envelope.sender, "size": envelope.size,
            "nrcpt": len(envelope.recipients), "proto": envelope.protocol}, "queued")
        self.on_queued(envelope.queue_id)
        return R.queued(envelope.queue_id)

    def _log_reject(self, stage: str, verdict: R.Reply, address: str) -> None:
        session = self.session
        sender = str(session.sender) if session.sender is not None else ""
        self.maillog.log("NOQUEUE", {
            "reject": f"{stage} from [{self.client_ip}]: {verdict}", "from": sender,
            "to": address, "proto": "ESMTP" if session.esmtp else "SMTP",
            "helo": session.helo_name or ""})


def _is_disk_full(exc: BaseException) -> bool:
    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or getattr(exc, "disk_full", False)


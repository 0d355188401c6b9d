"""One POP3 connection: moves bytes between the stream and the sans-IO session.

Contract:
  * `Pop3Connection(stream, context, peer)` is the listener's `Session`
    (net/listener.py): `run()` serves the connection to its end,
    `shutdown()` and `cut_off()` end it early. Every decision is the
    session's (pigeon.proto.pop3) or the login rules'
    (pigeon.readers.login); this module does I/O only.
  * Implicit TLS (role "pop3s", RFC 8314): the handshake comes before the
    greeting. STLS (RFC 2595): after `+OK` the handshake runs on the same
    stream; plaintext pipelined behind STLS was dropped by the session.
  * A login that the rules accept opens the maildrop: the account's Maildir
    (readers.login.account_mailbox, mailstore.paths.maildir_path; created
    when missing), locked for the whole session (mailstore.lock: a second
    session gets `-ERR [IN-USE]`), scanned once (mailstore.maildrop). The
    lock is released however the session ends.
  * RETR/TOP stream the file in chunks through
    pigeon.proto.pop3_content.MessageEncoder (bounded memory); a file that
    cannot be opened is `-ERR [SYS/TEMP]`; one that breaks after the `+OK`
    ends the connection (the reply cannot be finished honestly).
  * Deletions happen only in the UPDATE state, after QUIT
    (mailstore.maildrop.remove: unlink, fsync of new/ and cur/). A dropped
    connection, the auto-logout, a shutdown or a cut-off delete nothing
    (RFC 1939 §6).
  * Every wait is bounded: a read by the auto-logout time (`autologout`
    seconds without a line, RFC 1939 §3), a write by the same time, the
    handshake by `handshake_timeout`. File-system work runs in threads.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pigeon.mailstore import ensure_maildir, maildir_path
from pigeon.mailstore.lock import MailboxLock, try_lock
from pigeon.mailstore.maildrop import DropMessage, open_message, remove, scan
from pigeon.net.stream import ByteStream, before_handshake
from pigeon.proto import pop3_events as E
from pigeon.proto.pop3 import Pop3Session, Pop3Settings
from pigeon.proto.pop3_content import MessageEncoder
from pigeon.readers.login import LoginOutcome, LoginRefusal, ReaderLogins, account_mailbox

__all__ = ["Pop3Connection", "Pop3Context"]

log = logging.getLogger("pigeon.pop3")

#: Octets of a message file read at a time for RETR/TOP.
CHUNK = 256 * 1024
#: Seconds a connection being cut off has to take its last line.
CUT_OFF_CLOSE = 1.0

_REFUSALS = {
    LoginRefusal.FAILED: E.LoginRefused.FAILED,
    LoginRefusal.TOO_MANY_FAILURES: E.LoginRefused.TOO_MANY_FAILURES,
    LoginRefusal.UNAVAILABLE: E.LoginRefused.UNAVAILABLE,
}


@dataclass(frozen=True)
class Pop3Context:
    """What one connection is given (made once per role and settings)."""

    logins: ReaderLogins
    mailbox_root: Path
    session: Pop3Settings  # with tls=True for the implicit-TLS role
    tls_context: Callable[[], ssl.SSLContext] | None  # None: no STLS, no implicit TLS
    role: str = "pop3"
    implicit_tls: bool = False
    autologout: float = 600.0
    handshake_timeout: float = 30.0
    fsync: bool = True


class _Maildrop:
    """The locked maildrop of a logged-in session."""

    def __init__(self, maildir: Path, lock: MailboxLock, messages: list[DropMessage]) -> None:
        self.maildir = maildir
        self.lock = lock
        self.messages = messages


def _open_maildrop(maildir: Path) -> _Maildrop | None:
    """Lock and scan (in a thread); None when another session holds the lock."""
    ensure_maildir(maildir)
    lock = try_lock(maildir)
    if lock is None:
        return None
    try:
        return _Maildrop(maildir, lock, scan(maildir))
    except BaseException:
        lock.release()
        raise


class Pop3Connection:
    """The listener's Session for POP3 (module contract)."""

    def __init__(self, stream: ByteStream, context: Pop3Context, peer: tuple[str, int]) -> None:
        self.stream = stream
        self.context = context
        self.ip, self.port = peer
        self.session = Pop3Session(context.session)
        self._login = context.logins.client(self.ip, context.role)
        self._drop: _Maildrop | None = None
        self._stopping = False
        self._cut = False
        self._retrieved = 0
        self._deleted = 0
        self._reason = "?"

    # --- the listener's Session ----------------------------------------------------------

    def shutdown(self) -> None:
        self._stopping = True
        self.stream.wake()

    def cut_off(self) -> None:
        self._stopping = self._cut = True
        self.stream.wake()

    async def run(self) -> None:
        try:
            if self.context.implicit_tls and not await self._handshake(implicit=True):
                return
            self.stream.write(self.session.greeting())
            while not self.session.closed:
                data = await self.stream.read(self.context.autologout)
                if data is None and self._stopping:
                    self.stream.write(b"-ERR [SYS/TEMP] Server shutting down, try again soon\r\n")
                    self._reason = "shutdown"
                    break
                events = (
                    self.session.timed_out() if data is None else self.session.receive_data(data)
                )
                await self._handle(events)
                self._flush()
                await self.stream.drain(self.context.autologout)
        except (ConnectionError, TimeoutError) as exc:
            self._reason = f"lost connection ({type(exc).__name__})"
        except Exception:
            log.exception("POP3 session with [%s] failed", self.ip)
            self._reason = "internal error"
        finally:
            await self._end()

    async def _end(self) -> None:
        drop, self._drop = self._drop, None
        if drop is not None:
            drop.lock.release()
        if self.session.user is not None or self._retrieved or self._deleted:
            log.info(
                "POP3 logout user=%s from [%s]: retrieved=%d deleted=%d (%s)",
                self.session.user,
                self.ip,
                self._retrieved,
                self._deleted,
                self._reason,
            )
        try:
            self._flush()
            await self.stream.close_and_wait(
                CUT_OFF_CLOSE if self._cut else self.context.autologout
            )
        except Exception:
            self.stream.abort()

    def _flush(self) -> None:
        out = self.session.data_to_send()
        if out:
            self.stream.write(out)

    # --- events --------------------------------------------------------------------------

    async def _handle(self, events: list[E.Event]) -> None:
        pending = deque(events)
        while pending:
            event = pending.popleft()
            if isinstance(event, E.PasswordLogin):
                outcome = await self._login.password(event.username, event.password)
                pending.extend(await self._logged_in(outcome))
            elif isinstance(event, E.SaslKeysNeeded):
                pending.extend(self.session.respond_keys(await self._login.keys(event.username)))
            elif isinstance(event, E.SaslLogin):
                outcome = await self._login.sasl(event.mechanism, event.credentials)
                pending.extend(await self._logged_in(outcome))
            elif isinstance(event, E.StartTlsRequested):
                self._flush()
                if event.discarded:
                    log.warning(
                        "[%s]: %d octets pipelined after STLS were discarded",
                        self.ip,
                        event.discarded,
                    )
                if await self._handshake(implicit=False):
                    self.session.tls_started()
                else:
                    self.session.tls_failed()
            elif isinstance(event, E.RetrieveRequested):
                pending.extend(await self._retrieve(event))
            elif isinstance(event, E.UpdateRequested):
                pending.extend(await self._update(event))
            elif isinstance(event, E.ConnectionClosing):
                self._reason = event.reason

    async def _logged_in(self, outcome: LoginOutcome) -> list[E.Event]:
        if isinstance(outcome, LoginRefusal):
            return self.session.refuse_login(_REFUSALS[outcome])
        mailbox = account_mailbox(outcome)
        if mailbox is None:
            log.warning("POP3 user=%s from [%s]: the account has no mailbox", outcome.name, self.ip)
            return self.session.refuse_login(E.LoginRefused.NO_MAILBOX)
        maildir = maildir_path(self.context.mailbox_root, *mailbox)
        try:
            drop = await asyncio.to_thread(_open_maildrop, maildir)
        except OSError as exc:
            log.error("POP3 user=%s: cannot open %s: %s", outcome.name, maildir, exc)
            return self.session.refuse_login(E.LoginRefused.MAILDROP_ERROR)
        if drop is None:
            log.info("POP3 user=%s from [%s]: mailbox in use", outcome.name, self.ip)
            return self.session.refuse_login(E.LoginRefused.IN_USE)
        self._drop = drop
        return self.session.accept_login([(m.size, m.uid) for m in drop.messages])

    async def _retrieve(self, event: E.RetrieveRequested) -> list[E.Event]:
        drop = self._drop
        assert drop is not None
        message = drop.messages[event.index]
        try:
            f = await asyncio.to_thread(open_message, drop.maildir, message)
        except OSError as exc:
            log.warning("POP3 %s: cannot open %s: %s", self.session.user, message.base, exc)
            return self.session.retrieve_failed()
        try:
            self.session.retrieve_started(event.size if event.body_lines is None else None)
            self._flush()
            encoder = MessageEncoder(event.body_lines)
            while not encoder.done:
                try:
                    chunk = await asyncio.to_thread(f.read, CHUNK)
                except OSError as exc:  # after +OK: the reply cannot be finished honestly
                    log.error(
                        "POP3 %s: reading %s failed: %s", self.session.user, message.base, exc
                    )
                    raise ConnectionAbortedError("message unreadable") from exc
                if not chunk:
                    break
                self.stream.write(encoder.feed(chunk))
                await self.stream.drain(self.context.autologout)
            self.stream.write(encoder.finish())
        finally:
            f.close()
        if event.body_lines is None:
            self._retrieved += 1
        return self.session.retrieve_done()

    async def _update(self, event: E.UpdateRequested) -> list[E.Event]:
        drop = self._drop
        assert drop is not None
        doomed = [drop.messages[i] for i in event.deleted]
        failures = 0
        if doomed:
            failures = await asyncio.to_thread(
                remove, drop.maildir, doomed, fsync=self.context.fsync
            )
            if failures:
                log.error("POP3 %s: %d messages not removed", self.session.user, failures)
        self._deleted = len(doomed) - failures
        return self.session.update_done(failures)

    # --- TLS -----------------------------------------------------------------------------

    async def _handshake(self, *, implicit: bool) -> bool:
        """STLS or implicit TLS (see net/smtpd.py for why the buffer is dropped or kept)."""
        stream, provider = self.stream, self.context.tls_context
        assert provider is not None
        early = before_handshake(stream, implicit=implicit, peer=self.ip, log=log)
        try:
            await stream.start_tls(provider(), timeout=self.context.handshake_timeout, early=early)
        except (TimeoutError, ssl.SSLError, OSError, EOFError) as exc:
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            log.warning("POP3 TLS handshake failed with [%s]:%s: %s", self.ip, self.port, reason)
            self._reason = "TLS handshake failed"
            return False
        return True

"""Drive one IMAP session over one connection: bytes in, the sans-IO core, the handlers, bytes out.

Contract:
  * This module moves bytes and keeps time; it decides nothing about the
    protocol. The sans-IO core (pigeon.proto.imap) reads commands (literals
    included) and says which are allowed in which state; the handlers
    (readers/imap/handlers*) run them against the mail store.
  * Rule 1 (TLS, RFC 9051 §6.2.1, RFC 8314): role "imaps" runs the TLS
    handshake before the greeting; on role "imap" STARTTLS answers OK, stops
    reading, drops every octet the client sent after the command
    (CVE-2011-0411) and runs the handshake with `[tls] handshake_timeout`.
    A failed handshake is logged and the connection closed.
  * Rule 2 (time-outs, RFC 9051 §5.4): a session that is silent for
    `[imap] login_timeout` before logging in, or `[imap] autologout` after,
    gets `* BYE` and is closed; IDLE lasts at most `[imap] idle_timeout`.
    Writing is bounded by `[timeouts] command`: a client that does not read
    its answers is cut off.
  * Rule 3: nothing a client sends raises out of `run()`: what the core
    refuses is answered BAD/NO/BYE by it; anything unexpected is logged
    with its traceback and the client sees `* BYE` and a closed connection.
  * Rule 4 (the stop, app/lifecycle.py): `shutdown()` ends the session at
    the next command boundary with `* BYE` (an IDLE or a silent client at
    once); `cut_off()` does it now.
  * Rule 5 (IDLE, RFC 2177): the session watches its mailbox's Maildir
    (pigeon.mailstore.notify: local delivery announces new mail from the
    event loop's thread or another; the wake-up is passed with
    `call_soon_threadsafe`) and also rescans every `[imap] idle_poll`
    seconds for mail other programs wrote.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

from pigeon.net.stream import ByteStream, before_handshake
from pigeon.net.tls import tls_info
from pigeon.readers.imap.dispatch import HANDLERS
from pigeon.readers.imap.session import ImapSession

__all__ = ["ImapConnection"]

log = logging.getLogger("pigeon.imap")

#: Seconds a session cut off at the end of the stop's grace has to take its BYE.
CUT_OFF_CLOSE = 1.0


class ImapConnection:
    """One client connection (module contract)."""

    def __init__(
        self,
        stream: ByteStream,
        service: Any,  # readers.imap_service.ImapService
        settings: Any,  # readers.imap_service.ImapSettings
        role: str,
        peer: tuple[str, int],
        *,
        clock: Any = time.monotonic,
    ) -> None:
        self.stream = stream
        self.service = service
        self.settings = settings
        self.role = role
        self.client_ip, self.client_port = peer
        self.clock = clock
        self.closing = False
        self._stopping = False
        self._cut = False
        self._broken = False

    # --- the stop ------------------------------------------------------------------

    def shutdown(self) -> None:
        """The stop: `* BYE` at the next command boundary (Rule 4)."""
        self._stopping = True
        self.stream.wake()

    def cut_off(self) -> None:
        """The grace is over: `* BYE` now (Rule 4)."""
        self._stopping = self._cut = True
        self.stream.wake()

    # --- output ------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if data and not self._broken:
            self.stream.write(data)

    async def flush(self) -> None:
        """Bounded like reading: a client that never reads is cut off (TimeoutError)."""
        await self.stream.drain(self.settings.write_timeout)

    def bye(self, text: str) -> None:
        self.write(f"* BYE {text}\r\n".encode())
        self.closing = True

    # --- TLS ---------------------------------------------------------------------------

    async def handshake(self, *, implicit: bool) -> bool:
        """The server side of a TLS handshake (Rule 1); False when it failed."""
        stream = self.stream
        tls = self.settings.tls
        if tls is None:
            return False
        early = before_handshake(stream, implicit=implicit, peer=self.client_ip, log=log)
        try:
            await stream.start_tls(
                tls.context, timeout=self.settings.handshake_timeout, early=early
            )
        except (TimeoutError, ssl.SSLError, OSError, EOFError) as exc:
            reason = (
                "timeout"
                if isinstance(exc, TimeoutError)
                else (getattr(exc, "reason", None) or str(exc) or type(exc).__name__)
            )
            log.warning(
                "TLS handshake failed with [%s]:%s: %s", self.client_ip, self.client_port, reason
            )
            self._broken = True
            self.closing = True
            return False
        info = tls_info(stream.get_extra_info("ssl_object"))
        log.info(
            "TLS established with [%s]:%s: %s %s",
            self.client_ip,
            self.client_port,
            info.version,
            info.cipher,
        )
        return True

    # --- the session -----------------------------------------------------------------

    async def run(self) -> None:
        session = ImapSession(self, HANDLERS)
        try:
            if self.role == "imaps" and not await self.handshake(implicit=True):
                return
            session.greet()
            await self.flush()
            await self._loop(session)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing to answer
        except TimeoutError:
            log.warning(
                "[%s]:%s does not read its answers: closing", self.client_ip, self.client_port
            )
            self.stream.abort()
        except asyncio.CancelledError:
            raise
        except Exception:  # Rule 3
            log.exception("IMAP session with [%s] failed", self.client_ip)
            self.bye("[SERVERBUG] internal error, closing")
        finally:
            await session.close()
            await self.stream.close_and_wait(CUT_OFF_CLOSE if self._cut else 5.0)
            log.info("disconnect from [%s]:%s", self.client_ip, self.client_port)

    def _timeout(self, session: Any) -> float:
        """Seconds until the next thing the loop must do by itself (Rule 2, Rule 5)."""
        imap = self.settings.imap
        now = self.clock()
        if session.idling:
            left = session.idle_started + imap.idle_timeout - now
            return max(0.0, min(left, imap.idle_poll))
        return max(0.0, session.proto.deadline - now)

    async def _loop(self, session: Any) -> None:
        stream = self.stream
        imap = self.settings.imap
        while not self.closing:
            if self._stopping and (self._cut or session.between_commands):
                self.bye("server shutting down")
                break
            data = await stream.read(self._timeout(session))
            now = self.clock()
            if data:
                session.proto.touch(now)
                await session.receive(data)
            elif data is not None:
                break  # EOF: the client is gone (or half-closed after its last command)
            elif session.idling:
                if now >= session.idle_started + imap.idle_timeout:
                    self.bye("IDLE for too long, logging out")
                else:
                    await session.idle_news()
            elif self._stopping:
                continue  # BYE at the top of the loop
            elif session.has_news():
                await session.idle_news()
            elif session.proto.expired(now):
                self.bye("autologout: idle for too long")  # RFC 9051 §5.4
            await self.flush()
            if session.tls_requested:
                session.tls_requested = False
                if not await self.handshake(implicit=False):
                    break
                session.proto.tls_started()
        await self.flush()

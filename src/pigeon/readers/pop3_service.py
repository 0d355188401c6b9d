"""The POP3 service: what the generic listeners (net/listener.py) serve for roles pop3 and pop3s.

    service = Pop3Service(Pop3ServiceSettings.build(config, tls), ReaderLogins(auth, maillog,
                          protocol="pop3"))
    listeners = Listeners(service, pop3_listeners(config), limits=connection_limits(config))
    ...
    service.apply(Pop3ServiceSettings.build(new_config, tls))      # reload

Contract:
  * Roles: every address of `[pop3] listen` is role "pop3" (RFC 1939; STLS
    offered, RFC 2595; no password before it), every address of
    `[pop3] tls_listen` role "pop3s" (RFC 8314: the TLS handshake first,
    then the greeting). `[]` turns a role off.
  * `session()` is the connection-handler factory: one
    `readers.pop3_driver.Pop3Connection` per admitted connection, given the
    `Pop3Context` of its role, made once per settings. A reload (`apply`)
    replaces the settings for new connections; sessions in progress keep
    theirs.
  * `refuse()`: past `limits.connections` / `limits.connections_per_ip`
    (the listeners count; the same limits as SMTP's, counted per
    `Listeners`) the client gets `-ERR [SYS/TEMP] Too many connections`
    (RFC 2449 §8, RFC 3206) and the connection is closed, bounded by
    REFUSE_TIMEOUT.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from pigeon.config.schema import Config
from pigeon.net.listener import Listener, ListenerRole, Refusal
from pigeon.net.stream import SmtpStream
from pigeon.net.tls import TlsProvider
from pigeon.proto.pop3 import Pop3Settings
from pigeon.readers.login import ReaderLogins
from pigeon.readers.pop3_driver import Pop3Connection, Pop3Context

__all__ = [
    "POP3",
    "POP3S",
    "POP3_ROLES",
    "Pop3Service",
    "Pop3ServiceSettings",
    "pop3_listeners",
    "role_contexts",
]

log = logging.getLogger("pigeon.pop3")

POP3 = ListenerRole("pop3", "pop3.listen", "--pop3-listen")
POP3S = ListenerRole("pop3s", "pop3.tls_listen", "--pop3-tls-listen")
POP3_ROLES = (POP3, POP3S)

#: Seconds a refused connection may take to read its -ERR before it is aborted.
REFUSE_TIMEOUT = 5.0


def pop3_listeners(config: Config) -> list[Listener]:
    """(address, role) of every POP3 listener of `config`."""
    return [(a, POP3) for a in config.pop3.listen] + [(a, POP3S) for a in config.pop3.tls_listen]


@dataclass(frozen=True, slots=True)
class Pop3ServiceSettings:
    """What new POP3 connections take from the configuration; replaced whole at reload."""

    config: Config
    tls: TlsProvider | None

    @classmethod
    def build(cls, config: Config, tls: TlsProvider | None) -> Pop3ServiceSettings:
        return cls(config, tls)


def role_contexts(
    config: Config, logins: ReaderLogins, tls_context: Callable[[], ssl.SSLContext] | None
) -> dict[str, Pop3Context]:
    """The `Pop3Context` of each role under `config` (`tls_context` None: no TLS)."""
    base = Pop3Settings(
        tls=False,
        stls=tls_context is not None,
        mechanisms=config.auth.mechanisms,
        max_errors=config.pop3.max_errors,
    )
    common = Pop3Context(
        logins=logins,
        mailbox_root=config.mailbox_root,
        session=base,
        tls_context=tls_context,
        autologout=config.pop3.autologout,
        handshake_timeout=config.tls.handshake_timeout,
        fsync=config.queue.fsync,
    )
    implicit = dataclasses.replace(base, tls=True, stls=False)
    return {
        POP3.name: common,
        POP3S.name: dataclasses.replace(
            common, role=POP3S.name, implicit_tls=True, session=implicit
        ),
    }


class Pop3Service:
    """Serves POP3 sessions on the generic listeners (module contract)."""

    def __init__(self, settings: Pop3ServiceSettings, logins: ReaderLogins) -> None:
        self.logins = logins
        self.apply(settings)

    def apply(self, settings: Pop3ServiceSettings) -> None:
        """Reload: connections admitted from now on get `settings`."""
        tls = settings.tls
        tls_context = (lambda: tls.context) if tls is not None else None
        self._contexts = role_contexts(settings.config, self.logins, tls_context)
        self._settings = settings

    @property
    def settings(self) -> Pop3ServiceSettings:
        return self._settings

    def session(
        self, stream: SmtpStream, role: ListenerRole, peer: tuple[str, int]
    ) -> Pop3Connection:
        log.info("POP3 connect from [%s]:%s (%s)", peer[0], peer[1], role.name)
        return Pop3Connection(stream, self._contexts[role.name], peer)

    async def refuse(
        self, stream: SmtpStream, role: ListenerRole, refusal: Refusal, peer: tuple[str, int]
    ) -> None:
        log.warning("POP3: refused connection from [%s]: %s", peer[0], refusal.value)
        if role.name != POP3S.name:  # in clear: say why (implicit TLS would need a handshake)
            stream.write(b"-ERR [SYS/TEMP] Too many connections, try again later\r\n")
        await stream.close_and_wait(REFUSE_TIMEOUT)

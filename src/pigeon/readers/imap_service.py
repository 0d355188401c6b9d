"""The IMAP service: what the generic listeners (net/listener.py) serve for the roles "imap" and "imaps".

    settings = ImapSettings.build(config, tls)
    service = ImapService(settings, logins=ReaderLogins(auth, maillog, protocol="imap"),
                          store=MailStore(config.mailbox_root))
    listeners: imap_listeners(config) beside the SMTP ones, limits imap_limits(config)
    ...
    service.apply(ImapSettings.build(new_config, tls))     # reload

Contract:
  * Roles: every address of `[imap] listen` is role "imap" (RFC 9051 §6.2.1
    STARTTLS offered; LOGIN and AUTHENTICATE refused before it, the
    capability list says LOGINDISABLED), every address of `[imap]
    tls_listen` role "imaps" (RFC 8314 §3.3: the TLS handshake comes first,
    then the greeting). Both are in the listener group "imap": their
    sessions count together, apart from SMTP's, under `[imap] connections`
    and `[imap] connections_per_ip` (`imap_limits`).
  * `ImapService.session()` is the connection-handler factory: one
    `readers.imap.connection.ImapConnection` per admitted connection, given
    the settings in force when it was admitted (a reload, `apply()`,
    replaces them as one immutable value; sessions in progress keep theirs)
    and the long-lived collaborators: the login rules (readers/login.py),
    the mail store (pigeon.mailstore.mailbox.MailStore) and its
    body-structure cache.
  * `refuse()`: past a limit the client gets the untagged `* BYE` RFC 9051
    §7.1.5 provides for a server that will not serve it (before the TLS
    handshake on imaps: the octets would mean nothing to a TLS client, so
    it is only closed), logged, then the connection is closed; a peer that
    does not read its BYE is aborted after REFUSE_TIMEOUT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pigeon.config.imap import ImapConfig
from pigeon.config.schema import Config
from pigeon.net.listener import ConnectionLimits, Listener, ListenerRole, Refusal
from pigeon.net.stream import SmtpStream
from pigeon.net.tls import TlsProvider
from pigeon.readers.imap.bodycache import BodyCache
from pigeon.readers.imap.connection import ImapConnection

__all__ = [
    "IMAP",
    "IMAPS",
    "IMAP_ROLES",
    "ImapService",
    "ImapSettings",
    "imap_limits",
    "imap_listeners",
]

log = logging.getLogger("pigeon.imap")

IMAP = ListenerRole("imap", "imap.listen", "--imap-listen", group="imap")
IMAPS = ListenerRole("imaps", "imap.tls_listen", "--imaps-listen", group="imap")
IMAP_ROLES = (IMAP, IMAPS)

#: Seconds a refused connection may take to read its BYE before it is aborted.
REFUSE_TIMEOUT = 5.0


def imap_listeners(config: Config) -> list[Listener]:
    """(address, role) for every IMAP listener of `config`."""
    return [(a, IMAP) for a in config.imap.listen] + [(a, IMAPS) for a in config.imap.tls_listen]


def imap_limits(config: Config) -> ConnectionLimits:
    """The group "imap"'s own connection limits (module contract)."""
    return ConnectionLimits(config.imap.connections, config.imap.connections_per_ip)


@dataclass(frozen=True, slots=True)
class ImapSettings:
    """Everything a new IMAP session takes from the configuration; replaced whole at reload."""

    imap: ImapConfig
    hostname: str
    tls: TlsProvider | None
    handshake_timeout: float = 30.0  # [tls] handshake_timeout
    write_timeout: float = 300.0  # [timeouts] command: a client that does not read its answers
    mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256")  # [auth] mechanisms, inside TLS only

    @classmethod
    def build(cls, config: Config, tls: TlsProvider | None) -> ImapSettings:
        return cls(
            config.imap,
            config.hostname,
            tls,
            config.tls.handshake_timeout,
            config.timeouts.command,
            config.auth.mechanisms,
        )


class ImapService:
    """Serves IMAP sessions on the generic listeners (see the module contract)."""

    def __init__(self, settings: ImapSettings, *, logins: Any, store: Any) -> None:
        self.logins = logins  # readers.login.ReaderLogins
        self.store = store  # mailstore.mailbox.MailStore
        self.bodies = BodyCache()  # BODYSTRUCTURE/ENVELOPE computed once per message
        self._settings = settings

    @property
    def settings(self) -> ImapSettings:
        return self._settings

    def apply(self, settings: ImapSettings) -> None:
        """Reload: sessions admitted from now on get `settings`."""
        self._settings = settings

    def session(
        self, stream: SmtpStream, role: ListenerRole, peer: tuple[str, int]
    ) -> ImapConnection:
        log.info("connect from [%s]:%s (%s)", peer[0], peer[1], role.name)
        return ImapConnection(stream, self, self._settings, role.name, peer)

    async def refuse(
        self, stream: SmtpStream, role: ListenerRole, refusal: Refusal, peer: tuple[str, int]
    ) -> None:
        log.warning("refused IMAP connection from [%s]: %s", peer[0], refusal.value)
        if role is not IMAPS:
            # RFC 9051 §7.1.5: BYE as the greeting, the server will not serve this client.
            stream.write(f"* BYE [UNAVAILABLE] {refusal.value}\r\n".encode())
        await stream.close_and_wait(REFUSE_TIMEOUT)

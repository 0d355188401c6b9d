"""The SMTP service: what the generic listeners (net/listener.py) serve for SMTP roles.

    settings = SmtpSettings.build(config, pipeline, tls, auth=True)
    service = SmtpService(settings, store=store, maillog=maillog, on_queued=manager.submit,
                          logins=LoginGate(auth, maillog))
    listeners = Listeners(service, smtp_listeners(config, tls=True),
                          limits=connection_limits(config))
    ...
    service.apply(SmtpSettings.build(new_config, new_pipeline, tls, auth=True))   # reload

Contract:
  * Roles (issue 4): every address in `listen` is role "smtp" (STARTTLS
    offered when `tls.starttls`; AUTH only with `auth.smtp_listener`),
    `submission_listen` is role "submission" (RFC 6409: STARTTLS, AUTH
    required before MAIL) and `submissions_listen` role "submissions"
    (RFC 8314: the TLS handshake comes first, then the greeting; AUTH
    required). `role_session_config` derives each role's SessionConfig.
    Connection limits (`limits.connections`, `limits.connections_per_ip`)
    count every role together.
  * `SmtpService.session()` is the connection-handler factory: one
    `net.smtpd.Connection` per admitted connection, given the
    `ConnectionContext` of its role (net/services.py: the receive pipeline,
    the login rules, the queue intake... and the role's SessionConfig),
    made once per settings, not per connection. A reload
    (`apply(settings)`) replaces the settings, with their receive pipeline
    (`policy.build.build_pipeline`), as one immutable value: sessions
    already running keep the ones they started with, new ones get the new
    ones; nothing else is written into this object from outside.
  * `refuse()`: `421 4.7.0` past a limit
    (RFC 5321 §3.8), logged (warning and mail log "CONNECT" reject), then the
    connection is closed; a peer that does not read its 421 is aborted after
    REFUSE_TIMEOUT.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pigeon.auth.login import Logins
from pigeon.config.schema import Config
from pigeon.config.session import session_config
from pigeon.net.listener import ConnectionLimits, Listener, ListenerRole, Refusal
from pigeon.net.services import NO_METRICS, ConnectionContext, ReceiveServices
from pigeon.net.smtpd import Connection
from pigeon.net.stream import SmtpStream
from pigeon.net.tls import TlsProvider
from pigeon.policy.capture import CaptureRules
from pigeon.policy.pipeline import ReceivePipeline
from pigeon.proto import reply as R
from pigeon.proto.server import SessionConfig

__all__ = [
    "SMTP",
    "SMTP_ROLES",
    "SUBMISSION",
    "SUBMISSIONS",
    "SmtpService",
    "SmtpSettings",
    "connection_limits",
    "role_session_config",
    "smtp_listeners",
]

log = logging.getLogger("pigeon.smtpd")

SMTP = ListenerRole("smtp", "listen", "--listen", optional=False)
SUBMISSION = ListenerRole("submission", "submission_listen", "--submission-listen")
SUBMISSIONS = ListenerRole("submissions", "submissions_listen", "--submissions-listen")
SMTP_ROLES = (SMTP, SUBMISSION, SUBMISSIONS)

#: Seconds a refused connection may take to read its 421 before it is aborted.
REFUSE_TIMEOUT = 5.0


def smtp_listeners(config: Config, *, tls: bool) -> list[Listener]:
    """(address, role) for every SMTP listener of `config`; the TLS roles only with `tls`."""
    out: list[Listener] = [(a, SMTP) for a in config.listen]
    if tls:
        out += [(a, SUBMISSION) for a in config.submission_listen]
        out += [(a, SUBMISSIONS) for a in config.submissions_listen]
    return out


def connection_limits(config: Config) -> ConnectionLimits:
    return ConnectionLimits(config.limits.connections, config.limits.connections_per_ip)


def role_session_config(
    config: Config, base: SessionConfig, role: str, *, tls: bool, auth: bool
) -> SessionConfig:
    """The SessionConfig for one listener role (see the module contract).

    `tls`: a TlsProvider exists; `auth`: an AuthService exists.
    """
    mechanisms = config.auth.mechanisms if auth else ()
    if role == "smtp":
        return dataclasses.replace(
            base,
            starttls=tls and config.tls.starttls,
            auth_mechanisms=mechanisms if config.auth.smtp_listener else (),
        )
    if role == "submission":
        return dataclasses.replace(
            base, starttls=tls, auth_mechanisms=mechanisms, auth_required=True
        )
    if role == "submissions":
        return dataclasses.replace(
            base, starttls=False, auth_mechanisms=mechanisms, auth_required=True
        )
    raise ValueError(f"unknown listener role {role!r}")


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Everything a new SMTP session takes from the configuration; replaced whole at reload."""

    config: Config
    roles: Mapping[str, SessionConfig]  # role name -> its SessionConfig
    policy: ReceivePipeline  # the receive decisions (policy.build.build_pipeline)
    tls: TlsProvider | None
    signing: Any = None  # DKIM signing of our users' mail (net/signmail.py), or None

    @classmethod
    def build(
        cls,
        config: Config,
        policy: ReceivePipeline,
        tls: TlsProvider | None,
        *,
        auth: bool,
        signing: Any = None,
    ) -> SmtpSettings:
        base = session_config(config)
        roles = {
            role.name: role_session_config(config, base, role.name, tls=tls is not None, auth=auth)
            for role in SMTP_ROLES
        }
        return cls(config, roles, policy, tls, signing)


class SmtpService:
    """Serves SMTP sessions on the generic listeners (see the module contract)."""

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        store: Any,
        maillog: Any,
        on_queued: Callable[[Any], None],
        logins: Logins | None = None,
        metrics: Any = None,
        on_etrn: Callable[[str], Awaitable[int]] | None = None,
        direct: Any = None,
        on_received: Callable[[Any], None] | None = None,
    ) -> None:
        self.maillog = maillog
        self._shared = ReceiveServices(
            store=store,
            pipeline=settings.policy,
            maillog=maillog,
            on_queued=on_queued,
            logins=logins,
            metrics=metrics if metrics is not None else NO_METRICS,
            on_etrn=on_etrn,
            direct=direct,
            on_received=on_received,
        )
        self.apply(settings)

    @property
    def settings(self) -> SmtpSettings:
        return self._settings

    def apply(self, settings: SmtpSettings) -> None:
        """Reload: sessions admitted from now on get `settings`."""
        config = settings.config
        services = dataclasses.replace(
            self._shared,
            pipeline=settings.policy,
            tls=settings.tls,
            signing=settings.signing,
            capture=CaptureRules.of(config),
            greet_pause=config.timeouts.greet_pause,
            postscreen=config.postscreen,
            handshake_timeout=config.tls.handshake_timeout,
        )
        self._contexts = {
            role: ConnectionContext(services, session, role)
            for role, session in settings.roles.items()
        }
        self._settings = settings

    def context(self, role: str) -> ConnectionContext:
        """The settings a session of `role` admitted now gets (the HTTP API's
        submissions run with the "submission" one: net/apisession.py)."""
        return self._contexts[role]

    def session(self, stream: SmtpStream, role: ListenerRole, peer: tuple[str, int]) -> Connection:
        log.info("connect from [%s]:%s (%s)", peer[0], peer[1], role.name)
        return Connection(stream, self._contexts[role.name])

    async def refuse(
        self, stream: SmtpStream, role: ListenerRole, refusal: Refusal, peer: tuple[str, int]
    ) -> None:
        host = self._settings.roles[role.name].hostname
        if refusal is Refusal.TOO_MANY:
            reply = R.too_many_connections(host)
        else:
            reply = R.too_many_connections_from_ip(host)
        log.warning("refused connection from [%s]: %s", peer[0], reply)
        self.maillog.reject(None, "CONNECT", peer[0], reply)
        # Bounded, so a peer that does not read cannot keep the socket.
        stream.write(reply.to_bytes(enhanced=True))
        await stream.close_and_wait(REFUSE_TIMEOUT)

"""The `[pop3]` section's values (checked by pigeon.config._pop3; docs/config.md, docs/pop3.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pigeon.config.listen import ListenAddress

#: RFC 1939 §3: an auto-logout timer "MUST be of at least 10 minutes".
MIN_AUTOLOGOUT = 600.0


def _default_listen() -> tuple[ListenAddress, ...]:
    return (ListenAddress("127.0.0.1", 2110),)


def _default_tls_listen() -> tuple[ListenAddress, ...]:
    return (ListenAddress("127.0.0.1", 2995),)


@dataclass(frozen=True, slots=True)
class Pop3Config:
    """[pop3]: the POP3 server (RFC 1939; pigeon.readers.pop3_service)."""

    #: [pop3] listen: role "pop3" (port 110): STLS, then USER/PASS or AUTH. [] = none.
    listen: tuple[ListenAddress, ...] = field(default_factory=_default_listen)
    #: [pop3] tls_listen: role "pop3s" (RFC 8314, port 995): TLS from the first byte. [] = none.
    tls_listen: tuple[ListenAddress, ...] = field(default_factory=_default_tls_listen)
    #: [pop3] autologout, s: a session idle this long is closed without
    #: deleting anything (RFC 1939 §3); also bounds one write; >= 600.
    autologout: float = 600.0
    #: [pop3] max_errors: bad or out-of-state commands before the session is closed; >= 1.
    max_errors: int = 10

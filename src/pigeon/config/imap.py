"""The `[imap]` section's values (checked by pigeon.config._imap; docs/config.md, docs/imap.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pigeon.config.listen import ListenAddress

__all__ = ["ImapConfig", "MIN_AUTOLOGOUT"]

#: RFC 9051 §5.4: the auto-logout timer of an authenticated session "MUST be
#: at least 30 minutes" (the loader refuses less).
MIN_AUTOLOGOUT = 1800.0


def _default_listen() -> tuple[ListenAddress, ...]:
    return (ListenAddress("127.0.0.1", 2143),)


def _default_tls_listen() -> tuple[ListenAddress, ...]:
    return (ListenAddress("127.0.0.1", 2993),)


@dataclass(frozen=True, slots=True)
class ImapConfig:
    """[imap]: the IMAP server (pigeon.readers.imap_service, docs/imap.md)."""

    #: [imap] listen: role "imap" (port 143: STARTTLS, then LOGIN/AUTHENTICATE). [] = none.
    listen: tuple[ListenAddress, ...] = field(default_factory=_default_listen)
    #: [imap] tls_listen: role "imaps" (port 993, RFC 8314: TLS from the first byte). [] = none.
    tls_listen: tuple[ListenAddress, ...] = field(default_factory=_default_tls_listen)
    #: [imap] max_literal, octets ("50MB" = 50 MiB): the largest literal a
    #: client may send (an APPENDed message); a bigger one is refused before
    #: one octet of it is read (RFC 7888 §4 for LITERAL+).
    max_literal: int = 50 * 1024 * 1024
    #: [imap] autologout, s (>= 1800): an authenticated session silent this
    #: long is logged out with "* BYE" (RFC 9051 §5.4: at least 30 minutes).
    autologout: float = MIN_AUTOLOGOUT
    #: [imap] login_timeout, s: a session that has not logged in within this
    #: long of its last command is logged out (RFC 9051 §5.4 allows shorter
    #: timers before authentication).
    login_timeout: float = 60.0
    #: [imap] idle_timeout, s: an IDLE command held this long ends the session
    #: with "* BYE" (RFC 2177: clients re-issue IDLE at least every 29 minutes).
    idle_timeout: float = MIN_AUTOLOGOUT
    #: [imap] idle_poll, s: how often an IDLE session rescans its mailbox for
    #: mail written by other programs (pigeon's own deliveries wake it at once).
    idle_poll: float = 5.0
    #: [imap] connections: simultaneous IMAP sessions in all (both roles); 0 = none.
    connections: int = 1000
    #: [imap] connections_per_ip: simultaneous IMAP sessions from one client address; 0 = none.
    connections_per_ip: int = 20

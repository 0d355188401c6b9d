"""Console sessions: random ids in a cookie, the state in this process's memory.

Contract:
  * `SessionStore(idle=..., absolute=...)`: `create(admin, now)` makes a
    session with a fresh 256-bit id and a separate 256-bit CSRF token;
    `get(sid, now)` returns it while it is neither idle longer than `idle`
    seconds nor older than `absolute` seconds (and marks it seen), else
    None (and forgets it); `drop(sid)` ends it (logout); `drop_admin(name)`
    ends every session of one admin. `create(..., stamp=)` keeps the
    admin's password stamp with the session (see console/guard.py).
  * Sessions live in memory only: a restart of pigeon logs everybody out,
    which is the safe direction. The id is the only thing in the cookie.
  * `cookie_options(secure)` are the attributes of the session cookie:
    HttpOnly (no script reads it), SameSite=Strict (no other site's page
    sends it), Path=/, and Secure when the console is served over TLS.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["COOKIE", "SESSION_KEY", "Session", "SessionStore", "cookie_options"]

#: The session cookie's name.
COOKIE = "pigeon_session"


@dataclass
class Session:
    sid: str
    admin: str
    csrf: str
    created: float
    seen: float
    data: dict = field(default_factory=dict)
    #: the admin's stamp at login (console/admins.py `stamp`): the guard ends
    #: the session when the admin's current stamp differs
    stamp: str | None = None


#: Where the guard (console/guard.py) puts the request's session.
SESSION_KEY = web.RequestKey("pigeon_console_session", Session)


class SessionStore:
    def __init__(self, *, idle: float = 30 * 60, absolute: float = 12 * 3600) -> None:
        self.idle = idle
        self.absolute = absolute
        self._sessions: dict[str, Session] = {}

    def create(self, admin: str, now: float, *, stamp: str | None = None) -> Session:
        self._sweep(now)
        session = Session(
            sid=secrets.token_urlsafe(32),
            admin=admin,
            csrf=secrets.token_urlsafe(32),
            created=now,
            seen=now,
            stamp=stamp,
        )
        self._sessions[session.sid] = session
        return session

    def get(self, sid: str | None, now: float) -> Session | None:
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        if now - session.seen > self.idle or now - session.created > self.absolute:
            del self._sessions[sid]
            return None
        session.seen = now
        return session

    def drop(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

    def drop_admin(self, admin: str) -> int:
        """End every session of `admin` (removed, or its password changed)."""
        gone = [sid for sid, s in self._sessions.items() if s.admin == admin]
        for sid in gone:
            del self._sessions[sid]
        return len(gone)

    def __len__(self) -> int:
        return len(self._sessions)

    def _sweep(self, now: float) -> None:
        for sid in [
            sid
            for sid, s in self._sessions.items()
            if now - s.seen > self.idle or now - s.created > self.absolute
        ]:
            del self._sessions[sid]


def cookie_options(secure: bool) -> dict:
    return {"httponly": True, "samesite": "Strict", "path": "/", "secure": secure}

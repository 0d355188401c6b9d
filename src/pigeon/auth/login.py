"""The login rules: what the SMTP driver asks when a SASL exchange is complete.

Contract:
  * The driver knows one small interface: `Logins.client(ip, role)` gives a
    `ClientLogin` for one connection, which answers `keys(username)` (SCRAM
    keys, AuthKeysRequested) and `login(event)` (AuthRequested): the
    `Account` the credentials prove, or the refusal to send. Every rule
    about logging in lives here; the driver only passes the answer on.
  * `LoginGate` is the implementation over `AuthService` (argon2id and the
    account store, in its thread pool) and `FailureLimiter`:
      - Rule 1 (limits, auth/ratelimit.py): the attempt is counted before
        its password is checked (`limiter.attempt`), so simultaneous logins
        from one address cannot all be tried; past `auth.max_failures` in
        flight or failed the answer is AUTH_TOO_MANY_FAILURES 421 4.7.0 and
        says nothing about the password; past `auth.slow_after` the answer
        is delayed (an asyncio sleep for this connection only).
      - Rule 2 (who): a PLAIN/LOGIN password must verify against the
        account; a SCRAM proof was checked by the session with the keys
        `keys()` returned, and the account must still exist. Anything else
        is AUTH_FAILED 535 5.7.8 (one warning in the log and a Postfix-style
        "SASL ... authentication failed" line on the mail log); the failure
        that locks the address out is answered 421 at once.
      - Rule 3 (authzid, RFC 4616 §2): an authorization identity other than
        the user itself is refused (no proxy authorization).
      - Rule 4 (store trouble): an account store that cannot be read is
        AUTH_TEMPORARY 454 4.7.0 and is not counted as a failure (also when
        the SCRAM key look-up of the same exchange found it unreadable).
  * Each attempt that was counted ends with exactly one of failure, success
    or release on the limiter, also when the client goes away meanwhile.
  * Time comes from the injected `clock` (the limiter never reads it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from pigeon.auth.accounts import Account, AccountError, normalize_name
from pigeon.auth.service import AuthService, AuthUnavailable
from pigeon.proto import reply as R
from pigeon.proto.events import AuthRequested
from pigeon.proto.reply import Reply
from pigeon.proto.scram import ScramKeys

log = logging.getLogger("pigeon.smtpd")

__all__ = ["ClientLogin", "LoginGate", "Logins"]


class ClientLogin(Protocol):
    """The login questions of one connection."""

    async def keys(self, username: str) -> ScramKeys | None:
        """The stored SCRAM keys of `username`; None when unknown (or unreadable)."""

    async def login(self, event: AuthRequested) -> Account | Reply:
        """The account `event`'s credentials prove, or the refusal to send."""


class Logins(Protocol):
    def client(self, client_ip: str, role: str) -> ClientLogin: ...


class _SaslLog(Protocol):
    def sasl_failed(self, host: str | None, ip: str, mechanism: str) -> None: ...


class LoginGate:
    """`Logins` over the account store and the failure limiter (module contract)."""

    def __init__(
        self,
        service: AuthService,
        maillog: _SaslLog,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.service = service
        self.maillog = maillog
        self.clock = clock
        self.sleep = sleep

    def client(self, client_ip: str, role: str) -> _ClientLogin:
        return _ClientLogin(self, client_ip, role)


class _ClientLogin:
    def __init__(self, gate: LoginGate, client_ip: str, role: str) -> None:
        self._gate = gate
        self._ip = client_ip
        self._role = role
        self._store_unreadable = False  # the SCRAM key look-up found it so

    async def keys(self, username: str) -> ScramKeys | None:
        service = self._gate.service
        try:
            keys: ScramKeys | None = await service.run(service.scram_keys, username)
        except AuthUnavailable:
            self._store_unreadable = True
            return None
        return keys

    async def login(self, event: AuthRequested) -> Account | Reply:
        gate, ip = self._gate, self._ip
        limiter = gate.service.limiter
        verdict = limiter.attempt(ip, gate.clock())  # Rule 1: counted first
        if verdict.refuse:
            log.warning("AUTH from [%s] refused: too many failures", ip)
            return R.AUTH_TOO_MANY_FAILURES
        try:
            if verdict.delay:
                await gate.sleep(verdict.delay)  # this connection only
            account = await self._verify(event)
        except AuthUnavailable:  # Rule 4
            limiter.release(ip, gate.clock())
            self._store_unreadable = False
            return R.AUTH_TEMPORARY
        except BaseException:
            limiter.release(ip, gate.clock())  # the client went away: no verdict
            raise
        if account is None:
            limiter.failure(ip, gate.clock())
            log.warning(
                "AUTH %s failed for user %r from [%s]", event.mechanism, event.username[:64], ip
            )
            gate.maillog.sasl_failed(None, ip, event.mechanism)
            if limiter.locked(ip, gate.clock()):  # this failure locked the address out
                return R.AUTH_TOO_MANY_FAILURES
            return R.AUTH_FAILED
        limiter.success(ip, gate.clock())
        log.info("AUTH %s user=%s from [%s] (%s)", event.mechanism, account.name, ip, self._role)
        return account

    async def _verify(self, event: AuthRequested) -> Account | None:
        """The account the credentials prove (Rules 2, 3), or None; AuthUnavailable."""
        service = self._gate.service
        if self._store_unreadable:
            raise AuthUnavailable("store")
        if event.authzid:
            try:
                if normalize_name(event.authzid) != normalize_name(event.username):
                    return None  # Rule 3
            except AccountError:
                return None
        account: Account | None = None
        if event.verified is None and event.password is not None:
            account = await service.run(service.verify_password, event.username, event.password)
        elif event.verified:
            account = await service.run(service.account, event.username)
        return account

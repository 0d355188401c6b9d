"""The login rules: one rule set for every protocol that logs users in.

Contract:
  * `LoginRules` is the rule set over `AuthService` (argon2id and the
    account store, in its thread pool) and `FailureLimiter`, shared by SMTP
    submission (through `LoginGate` below) and the mail readers, POP3 and
    IMAP (pigeon.readers.login). `rules.client(ip, role)` gives one
    connection's `ClientRules`, which answers `keys(username)` (the SCRAM
    keys of a SCRAM-SHA-256 exchange) and `check(attempt)`: the `Account`
    the credentials prove, or a `LoginRefusal` kind that each protocol words
    itself (SMTP: a reply code; POP3: `-ERR [AUTH]`; IMAP: `NO`):
      - Rule 1 (limits, auth/ratelimit.py): the attempt is counted before
        its password is checked (`limiter.attempt`), so simultaneous logins
        from one address cannot all be tried; past `auth.max_failures` in
        flight or failed the answer is TOO_MANY_FAILURES and says nothing
        about the password; past `auth.slow_after` the answer is delayed
        (an asyncio sleep for this connection only). One limiter serves
        every protocol: failures over POP3 count against SMTP AUTH from the
        same address and the other way round.
      - Rule 2 (who): a password (PLAIN, LOGIN, POP3 USER/PASS, IMAP LOGIN)
        must verify against the account; a SCRAM proof was checked by the
        protocol session with the keys `keys()` returned, and the account
        must still exist. Anything else is FAILED (one warning in the log
        and a Postfix-style "SASL ... authentication failed" line on the
        mail log, which fail2ban's postfix-sasl filter reads); the failure
        that locks the address out is answered TOO_MANY_FAILURES at once.
      - Rule 3 (authzid, RFC 4616 §2): an authorization identity other than
        the user itself is refused (no proxy authorization).
      - Rule 4 (store trouble): an account store that cannot be read is
        UNAVAILABLE and is not counted as a failure (also when the SCRAM key
        look-up of the same exchange found it unreadable).
  * Each attempt that was counted ends with exactly one of failure, success
    or release on the limiter, also when the client goes away meanwhile.
  * The log lines are the same for every protocol, on the logger the caller
    names: "AUTH <mechanism> failed for user '<name>' from [<ip>]" and
    "AUTH <mechanism> user=<name> from [<ip>] (<role>)".
  * `LoginGate` is the SMTP face (`Logins`, what net/smtpd.py asks):
    `client(ip, role).login(event)` takes the session's `AuthRequested` and
    returns the `Account` or the SMTP reply: AUTH_FAILED 535 5.7.8,
    AUTH_TOO_MANY_FAILURES 421 4.7.0, AUTH_TEMPORARY 454 4.7.0 (RFC 4954 §6).
  * Time comes from the injected `clock` (the limiter never reads it).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from pigeon.auth.accounts import Account, AccountError, normalize_name
from pigeon.auth.service import AuthService, AuthUnavailable
from pigeon.proto import reply as R
from pigeon.proto.events import AuthRequested
from pigeon.proto.reply import Reply
from pigeon.proto.scram import ScramKeys

__all__ = [
    "ClientLogin",
    "ClientRules",
    "LoginAttempt",
    "LoginGate",
    "LoginRefusal",
    "LoginRules",
    "Logins",
    "SaslLog",
]


class LoginRefusal(enum.Enum):
    """Why a login is refused; each protocol words it (module contract)."""

    FAILED = "authentication failed"
    TOO_MANY_FAILURES = "too many failures"
    UNAVAILABLE = "temporarily unavailable"


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """Credentials to judge: a password to verify, or a SCRAM proof's result."""

    mechanism: str  # for the logs: "PLAIN", "LOGIN", "SCRAM-SHA-256"
    username: str
    authzid: str = ""
    password: str | None = field(default=None, repr=False)  # to verify; None for SCRAM
    verified: bool | None = None  # SCRAM: the proof check's result; None otherwise


class SaslLog(Protocol):
    """Where failed logins go for the operator (pigeon.obs.maillog.MailLog)."""

    def sasl_failed(self, host: str | None, ip: str, mechanism: str) -> None: ...


class LoginRules:
    """The rule set over the account store and the failure limiter (module contract)."""

    def __init__(
        self,
        service: AuthService,
        maillog: SaslLog,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        logger: logging.Logger | None = None,
    ) -> None:
        self.service = service
        self.maillog = maillog
        self.clock = clock
        self.sleep = sleep
        self.log = logger if logger is not None else logging.getLogger("pigeon.smtpd")

    def rules_for(self, client_ip: str, role: str) -> ClientRules:
        return ClientRules(self, client_ip, role)


class ClientRules:
    """The login rules of one connection (module contract)."""

    def __init__(self, rules: LoginRules, client_ip: str, role: str) -> None:
        self._rules = rules
        self._ip = client_ip
        self._role = role
        self._store_unreadable = False  # the SCRAM key look-up found it so

    async def keys(self, username: str) -> ScramKeys | None:
        """The stored SCRAM keys of `username`; None when unknown (or unreadable)."""
        service = self._rules.service
        try:
            keys: ScramKeys | None = await service.run(service.scram_keys, username)
        except AuthUnavailable:
            self._store_unreadable = True
            return None
        return keys

    async def check(self, attempt: LoginAttempt) -> Account | LoginRefusal:
        """The account `attempt` proves, or why not (Rules 1-4)."""
        rules, ip = self._rules, self._ip
        limiter = rules.service.limiter
        verdict = limiter.attempt(ip, rules.clock())  # Rule 1: counted first
        if verdict.refuse:
            rules.log.warning("AUTH from [%s] refused: too many failures", ip)
            return LoginRefusal.TOO_MANY_FAILURES
        try:
            if verdict.delay:
                await rules.sleep(verdict.delay)  # this connection only
            account = await self._verify(attempt)
        except AuthUnavailable:  # Rule 4
            limiter.release(ip, rules.clock())
            self._store_unreadable = False
            return LoginRefusal.UNAVAILABLE
        except BaseException:
            limiter.release(ip, rules.clock())  # the client went away: no verdict
            raise
        if account is None:
            limiter.failure(ip, rules.clock())
            rules.log.warning(
                "AUTH %s failed for user %r from [%s]", attempt.mechanism, attempt.username[:64], ip
            )
            rules.maillog.sasl_failed(None, ip, attempt.mechanism)
            if limiter.locked(ip, rules.clock()):  # this failure locked the address out
                return LoginRefusal.TOO_MANY_FAILURES
            return LoginRefusal.FAILED
        limiter.success(ip, rules.clock())
        rules.log.info(
            "AUTH %s user=%s from [%s] (%s)", attempt.mechanism, account.name, ip, self._role
        )
        return account

    async def _verify(self, attempt: LoginAttempt) -> Account | None:
        """The account the credentials prove (Rules 2, 3), or None; AuthUnavailable."""
        service = self._rules.service
        if self._store_unreadable:
            raise AuthUnavailable("store")
        if attempt.authzid:
            try:
                if normalize_name(attempt.authzid) != normalize_name(attempt.username):
                    return None  # Rule 3
            except AccountError:
                return None
        account: Account | None = None
        if attempt.verified is None and attempt.password is not None:
            account = await service.run(service.verify_password, attempt.username, attempt.password)
        elif attempt.verified:
            account = await service.run(service.account, attempt.username)
        return account


# --- the SMTP face ------------------------------------------------------------------------


class ClientLogin(Protocol):
    """The login questions of one SMTP connection."""

    async def keys(self, username: str) -> ScramKeys | None:
        """The stored SCRAM keys of `username`; None when unknown (or unreadable)."""

    async def login(self, event: AuthRequested) -> Account | Reply:
        """The account `event`'s credentials prove, or the refusal to send."""


class Logins(Protocol):
    def client(self, client_ip: str, role: str) -> ClientLogin: ...


#: RFC 4954 §6: how SMTP words each refusal.
_SMTP_REPLIES = {
    LoginRefusal.FAILED: R.AUTH_FAILED,
    LoginRefusal.TOO_MANY_FAILURES: R.AUTH_TOO_MANY_FAILURES,
    LoginRefusal.UNAVAILABLE: R.AUTH_TEMPORARY,
}


class LoginGate(LoginRules):
    """`Logins` for the SMTP driver: the shared rules, refusals worded as SMTP replies."""

    def client(self, client_ip: str, role: str) -> _SmtpClientLogin:
        return _SmtpClientLogin(self.rules_for(client_ip, role))


class _SmtpClientLogin:
    def __init__(self, rules: ClientRules) -> None:
        self._rules = rules

    async def keys(self, username: str) -> ScramKeys | None:
        return await self._rules.keys(username)

    async def login(self, event: AuthRequested) -> Account | Reply:
        outcome = await self._rules.check(
            LoginAttempt(
                event.mechanism, event.username, event.authzid, event.password, event.verified
            )
        )
        if isinstance(outcome, LoginRefusal):
            return _SMTP_REPLIES[outcome]
        return outcome

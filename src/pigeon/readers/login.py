"""The protocol-neutral login of the mail readers (POP3, IMAP) over pigeon.auth.

    logins = ReaderLogins(auth_service, maillog, protocol="pop3")
    login = logins.client(client_ip, "pop3")               # one per connection
    keys = await login.keys(username)                      # a SCRAM-SHA-256 exchange (NeedKeys)
    outcome = await login.password(username, password)     # POP3 USER/PASS, IMAP LOGIN
    outcome = await login.sasl(credentials)                # pigeon.proto.sasl.Credentials
    if isinstance(outcome, LoginRefusal): ...              # the protocol words it
    else: mailbox = account_mailbox(outcome)               # (local, domain) or None

Contract:
  * One rule set for every protocol: this is a face of
    `pigeon.auth.login.LoginRules`, the same rules, the same `FailureLimiter`
    (the `AuthService`'s: failures over POP3, IMAP and SMTP AUTH from one
    client address count together) and the same log lines as submission;
    only the logger is the protocol's ("pigeon.pop3", "pigeon.imap").
  * The outcome is the `Account` the credentials prove, or a `LoginRefusal`:
    FAILED (wrong credentials, unknown user, a foreign authzid),
    TOO_MANY_FAILURES (the address is locked out; the protocol may close the
    connection), UNAVAILABLE (the account store cannot be read; "try again
    later"). The protocol words it (POP3: `-ERR [AUTH]` /
    `-ERR [SYS/TEMP]`, RFC 3206; IMAP: `NO [AUTHENTICATIONFAILED]` /
    `NO [UNAVAILABLE]`, RFC 5530).
  * A plain password (POP3 USER/PASS, IMAP LOGIN) is logged as mechanism
    "PLAIN": it is one, carried by the protocol's own command (Dovecot
    treats it so too), and the mail log line "SASL PLAIN authentication
    failed" is the one fail2ban's postfix-sasl filter matches.
  * `account_mailbox(account)`: the mailbox an account reads is the Maildir
    of its name's address, `(local, domain)` for
    `pigeon.mailstore.paths.maildir_path`; None for a name that is not an
    address (such an account can submit mail but has no mailbox).
  * Passwords are verified in the `AuthService`'s thread pool (argon2id never
    runs on the event loop); time and sleep are injectable for tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from pigeon.auth.accounts import Account
from pigeon.auth.login import ClientRules, LoginAttempt, LoginRefusal, LoginRules, SaslLog
from pigeon.auth.service import AuthService
from pigeon.proto.sasl import Credentials
from pigeon.proto.scram import ScramKeys

__all__ = [
    "LoginOutcome",
    "LoginRefusal",
    "ReaderLogin",
    "ReaderLogins",
    "account_mailbox",
]

#: The account that logged in, or why not.
LoginOutcome = Account | LoginRefusal

#: How a plain password carried by the protocol's own command is logged (module contract).
PASSWORD_MECHANISM = "PLAIN"


class ReaderLogins:
    """The login rules for one reader protocol (module contract)."""

    def __init__(
        self,
        service: AuthService,
        maillog: SaslLog,
        *,
        protocol: str,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rules = LoginRules(
            service,
            maillog,
            clock=clock,
            sleep=sleep,
            logger=logging.getLogger(f"pigeon.{protocol}"),
        )

    def client(self, client_ip: str, role: str) -> ReaderLogin:
        """The login of one connection from `client_ip` on a listener of `role`."""
        return ReaderLogin(self.rules.rules_for(client_ip, role))


class ReaderLogin:
    """One connection's logins (module contract)."""

    def __init__(self, rules: ClientRules) -> None:
        self._rules = rules

    async def keys(self, username: str) -> ScramKeys | None:
        """The SCRAM keys for a SCRAM-SHA-256 exchange; None when unknown (or unreadable)."""
        return await self._rules.keys(username)

    async def password(self, username: str, password: str, authzid: str = "") -> LoginOutcome:
        """A plain password: POP3 USER/PASS, IMAP LOGIN."""
        return await self._rules.check(
            LoginAttempt(PASSWORD_MECHANISM, username, authzid, password)
        )

    async def sasl(self, mechanism: str, credentials: Credentials) -> LoginOutcome:
        """A finished SASL exchange (pigeon.proto.sasl): PLAIN verifies its password,
        SCRAM-SHA-256 brings its proof's result."""
        return await self._rules.check(
            LoginAttempt(
                mechanism,
                credentials.username,
                credentials.authzid,
                credentials.password,
                credentials.verified,
            )
        )


def account_mailbox(account: Account) -> tuple[str, str] | None:
    """(local, domain) of the Maildir `account` reads, or None (module contract)."""
    local, at, domain = account.name.rpartition("@")
    if not at or not local or not domain:
        return None
    return local, domain

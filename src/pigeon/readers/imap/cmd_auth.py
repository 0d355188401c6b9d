"""Logging in: LOGIN and AUTHENTICATE (PLAIN, SCRAM-SHA-256; SASL-IR), inside TLS only.

Contract:
  * Passwords only inside TLS (RFC 9051 §6.2.3 and §11.1, RFC 8314): before
    STARTTLS on the "imap" role, LOGIN and AUTHENTICATE are answered
    `NO [PRIVACYREQUIRED]` (the capability list said LOGINDISABLED and no
    AUTH=), and nothing is checked.
  * The rules are the submission's (readers/login.py over pigeon.auth): the
    same accounts, the same failed-login limiter per client address, the
    same log lines. Answers (RFC 5530 codes): wrong credentials `NO
    [AUTHENTICATIONFAILED]`; a client address over the failure limit the
    same, then `* BYE` and the connection closed; an account store that
    cannot be read `NO [UNAVAILABLE]`; an account whose name is not an
    address (it has no mailbox) `NO [AUTHORIZATIONFAILED]`.
  * AUTHENTICATE (RFC 9051 §6.2.2): the mechanism's challenges go out as
    "+ base64" continuations and the client's lines come back through the
    reader (`expect_auth_response`); "*" cancels (BAD). SCRAM's server-final
    message is sent as one more challenge, answered by an empty line, before
    the OK. SASL-IR (RFC 4959): an initial response on the command line.
  * A successful login opens the account's mail (`MailStore.user`, which
    makes the Maildir and its standard folders when missing) and answers
    OK with the new capability list.
"""

from __future__ import annotations

import logging
from typing import Any

from pigeon.auth.accounts import Account
from pigeon.proto.imap import response as R
from pigeon.proto.imap.commands import Authenticate, Command, Login
from pigeon.proto.imap.reader import AuthResponse
from pigeon.proto.sasl import Challenge, Credentials, Malformed, NeedKeys, new_mechanism
from pigeon.readers.imap.cmd_any import capabilities
from pigeon.readers.imap.session import ImapSession
from pigeon.readers.login import LoginRefusal, account_mailbox

__all__ = ["auth_response", "authenticate", "login"]

log = logging.getLogger("pigeon.imap")


class _Exchange:
    """An AUTHENTICATE in progress."""

    __slots__ = ("tag", "mechanism", "finishing")

    def __init__(self, tag: str, mechanism: Any) -> None:
        self.tag = tag
        self.mechanism = mechanism
        self.finishing = False  # the server-final message was sent; an empty line ends it


def _client_login(session: ImapSession) -> Any:
    if session.login is None:
        conn = session.conn
        session.login = conn.service.logins.client(conn.client_ip, conn.role)
    return session.login


async def login(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, Login)
    password = args.password.decode("utf-8", "replace")
    outcome = await _client_login(session).password(args.user, password)
    await _finish(session, command.tag, outcome)


async def authenticate(session: ImapSession, command: Command) -> None:
    args = command.args
    assert isinstance(args, Authenticate)
    # Before TLS, or a mechanism not offered: refused by the state (session.run_command).
    exchange = _Exchange(command.tag, new_mechanism(args.mechanism))
    await _step(session, exchange, exchange.mechanism.start(args.initial))


async def auth_response(session: ImapSession, event: AuthResponse) -> None:
    """The client's line during an AUTHENTICATE (module contract)."""
    exchange, session.auth = session.auth, None
    if exchange is None:
        return
    if event.cancelled:
        session.tagged(exchange.tag, "BAD", "AUTHENTICATE cancelled")
        return
    if event.data is None:
        session.tagged(exchange.tag, "BAD", "the response is not base64")
        return
    if exchange.finishing:  # the empty answer to the server-final message
        session.tagged(exchange.tag, "OK", "AUTHENTICATE completed", "CAPABILITY " + _caps(session))
        return
    await _step(session, exchange, exchange.mechanism.step(event.data))


async def _step(session: ImapSession, exchange: _Exchange, step: Any) -> None:
    mechanism = exchange.mechanism
    if isinstance(step, NeedKeys):
        keys = await _client_login(session).keys(step.username)
        step = mechanism.keys(keys)
    if isinstance(step, Challenge):
        session.auth = exchange
        session.reader.expect_auth_response()
        session.write(R.continuation_data(step.data))
    elif isinstance(step, Malformed):
        session.tagged(exchange.tag, "BAD", f"{mechanism.name}: {step.detail}")
    elif isinstance(step, Credentials):
        outcome = await _client_login(session).sasl(mechanism.name, step)
        final = mechanism.success_data()
        if isinstance(outcome, Account) and final:
            if not await _open(session, exchange.tag, outcome):
                return
            exchange.finishing = True
            session.auth = exchange
            session.reader.expect_auth_response()
            session.write(R.continuation_data(final))
            return
        await _finish(session, exchange.tag, outcome)


async def _finish(session: ImapSession, tag: str, outcome: Account | LoginRefusal) -> None:
    if isinstance(outcome, LoginRefusal):
        _refused(session, tag, outcome)
        return
    if await _open(session, tag, outcome):
        session.tagged(tag, "OK", "logged in", "CAPABILITY " + _caps(session))


def _refused(session: ImapSession, tag: str, refusal: LoginRefusal) -> None:
    if refusal is LoginRefusal.UNAVAILABLE:
        session.tagged(tag, "NO", "accounts unavailable, try again later", "UNAVAILABLE")
        return
    if refusal is LoginRefusal.TOO_MANY_FAILURES:  # the answer, then BYE: the session ends
        session.write(R.tagged(tag, "NO", "authentication failed", "AUTHENTICATIONFAILED"))
        session.conn.bye("too many failed logins")
        return
    session.tagged(tag, "NO", "authentication failed", "AUTHENTICATIONFAILED")


async def _open(session: ImapSession, tag: str, account: Account) -> bool:
    """The account's mail, opened; False (and NO sent) when it has none."""
    mailbox = account_mailbox(account)
    if mailbox is None:
        session.tagged(tag, "NO", "this account has no mailbox", "AUTHORIZATIONFAILED")
        return False
    store = session.conn.service.store
    session.user = await session.io(store.user, *mailbox)
    session.account = account.name
    session.proto.logged_in(session.conn.clock())
    session.reader.authenticated = True  # APPEND literals may now reach [imap] max_literal
    log.info("[%s] logged in as %s", session.conn.client_ip, account.name)
    return True


def _caps(session: ImapSession) -> str:
    return " ".join(capabilities(session))

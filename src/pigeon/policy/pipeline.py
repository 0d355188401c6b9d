"""The receive pipeline: runs the checks of each stage and keeps what they decided.

Contract:
  * `ReceivePipeline(checks)` sorts the checks once, by the stage methods
    they have (`pigeon.policy.api`); a stage no check cares about costs one
    empty loop. The pipeline is immutable and shared by every connection;
    a reload builds a new one (`pigeon.policy.build.build_pipeline`) and
    sessions in progress keep the one they started with.
  * `pipeline.session(client_ip, client_port, role)` is the per-connection
    side (`ReceiveSession`): the driver tells it what the SMTP session did
    (helo, tls, a verified login, MAIL, RCPT, DATA, end of data, ETRN, a
    transaction reset) and sends the refusal it returns, if any. A login
    the auth stage accepted is in force (`facts.user`, trusted by relay
    control) only once the session reports it done (`authenticated()`). It keeps
    `facts` (`SessionFacts`) up to date: the connection, the login, the
    transaction and its recipients as they will be queued.
  * Stage methods return a `Verdict` when every check answered at once, or
    an awaitable of one when some check is asynchronous (the driver awaits
    only then: `if not isinstance(v, Verdict): v = await v`).
  * Refusals where the session cannot pause (rules of Postfix's
    smtpd_delay_reject=yes, the default): a refusal at connect, helo or tls
    is kept and given as the answer to every RCPT TO of the session
    (Postfix evaluates client and HELO restrictions at RCPT TO); a 421 at
    connect is given at once instead of the greeting and the session ends
    (RFC 5321 §3.8). A refusal at auth is the answer to AUTH. A helo or tls
    refusal lasts until the next EHLO or handshake. `hold(reply)` keeps a
    refusal the driver decided (the postscreen tests, net/postscreen.py)
    the same way, for the rest of the session.
  * Effects of accepted verdicts: headers and quarantine of the connect,
    helo, tls and auth stages apply to every message of the session (helo
    and auth ones until STARTTLS forgets them, RFC 3207 §4.2; a stage that
    runs again replaces what it said before); those of mail, rcpt and data
    to the transaction; `end_of_data()` returns them all, in the order the
    stages ran, with its own last: every header to add and to remove, the
    first quarantine and discard reasons, the last transport, the header
    edits in order and the last new body and sender (policy/edits.py).
    Recipient changes replace `facts.recipients` when the stage accepts
    (the last list of the stage wins). A transport chosen at rcpt is that
    recipient's only (`routes`: address -> next hop), one chosen at any
    other stage the message's. A refused stage changes nothing.
  * `disconnect()` (the connection ended) tells the checks that keep
    something per connection (`DisconnectCheck`, a milter's socket).
  * A check that raises is logged with its traceback and the stage answers
    CHECK_FAILED (451 4.3.0); the exception never reaches the driver.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from pigeon.policy.api import (
    ACCEPT,
    AuthCheck,
    ConnectCheck,
    DataCheck,
    DisconnectCheck,
    EtrnCheck,
    HeloCheck,
    MailCheck,
    Message,
    MessageCheck,
    RcptCheck,
    SessionFacts,
    TlsCheck,
    Verdict,
)
from pigeon.policy.edits import content_changes
from pigeon.proto import reply as R
from pigeon.proto.events import TlsInfo
from pigeon.proto.params import MailParams, RcptParams
from pigeon.proto.reply import Reply
from pigeon.vocab.address import Address
from pigeon.vocab.errors import StoreError

log = logging.getLogger("pigeon.policy")

__all__ = ["ReceivePipeline", "ReceiveSession", "StageAnswer"]

#: A stage's answer: at once, or after awaiting an asynchronous check.
StageAnswer = Verdict | Awaitable[Verdict]

_Call = Callable[..., Any]
_NO_ROUTES: Mapping[str, str] = MappingProxyType({})

# Stage name -> (the Protocol a check implements, its method name).
_STAGES: tuple[tuple[str, type, str], ...] = (
    ("connect", ConnectCheck, "connect"),
    ("helo", HeloCheck, "helo"),
    ("tls", TlsCheck, "tls"),
    ("auth", AuthCheck, "auth"),
    ("mail", MailCheck, "mail"),
    ("rcpt", RcptCheck, "rcpt"),
    ("data", DataCheck, "data"),
    ("end_of_data", MessageCheck, "end_of_data"),
    ("etrn", EtrnCheck, "etrn"),
)


def _combine(verdicts: list[Verdict]) -> Verdict:
    """One verdict for a stage: the first refusal, every header, the first quarantine."""
    if len(verdicts) == 1:
        return verdicts[0]
    reply = next((v.reply for v in verdicts if v.reply is not None), None)
    headers = tuple(h for v in verdicts for h in v.headers)
    quarantine = next((v.quarantine for v in verdicts if v.quarantine), None)
    recipients = next((v.recipients for v in reversed(verdicts) if v.recipients is not None), None)
    return Verdict(
        reply, headers, quarantine, recipients, *_effects(verdicts), **content_changes(verdicts)
    )


def _effects(verdicts: Sequence[Verdict]) -> tuple[str | None, tuple[str, ...], str | None]:
    """discard (the first reason), remove_headers (all), transport (the last said)."""
    return (
        next((v.discard for v in verdicts if v.discard), None),
        tuple(name for v in verdicts for name in v.remove_headers),
        next((v.transport for v in reversed(verdicts) if v.transport), None),
    )


class ReceivePipeline:
    """The checks of one configuration, sorted by stage (module contract)."""

    def __init__(self, checks: Sequence[object], *, deps: Any = None) -> None:
        self.checks = tuple(checks)
        #: What the builder made the checks with (kept for the next reload).
        self.deps = deps
        self._calls: dict[str, tuple[tuple[_Call, str], ...]] = {
            stage: tuple(
                (getattr(check, method), type(check).__name__)
                for check in self.checks
                if isinstance(check, protocol)
            )
            for stage, protocol, method in _STAGES
        }
        self._disconnects = tuple(
            (check.disconnect, type(check).__name__)
            for check in self.checks
            if isinstance(check, DisconnectCheck)
        )

    def stage_checks(self, stage: str) -> list[str]:
        """The names of the checks asked at `stage`, in order (for tests and docs)."""
        return [name for _, name in self._calls[stage]]

    def session(self, client_ip: str, client_port: int = 0, role: str = "smtp") -> ReceiveSession:
        return ReceiveSession(self, SessionFacts(client_ip, client_port, role))

    def run(self, stage: str, args: tuple[Any, ...]) -> StageAnswer:
        """Ask every check of `stage` with `args`; see the module contract."""
        calls = self._calls[stage]
        if not calls:
            return ACCEPT
        # The common case, every check silent, allocates nothing: `found`
        # is made by the first verdict.
        found: list[Verdict] | None = None
        for entry in calls:
            try:
                result = entry[0](*args)
            except Exception:
                return _broken(entry[1], stage, found or [])
            if result is None:
                continue
            if not isinstance(result, Verdict):
                index = next(i for i, e in enumerate(calls) if e is entry)
                return self._run_async(stage, args, index, result, found or [])
            if found is None:
                found = [result]
            else:
                found.append(result)
            if result.reply is not None:
                break
        return ACCEPT if found is None else _combine(found)

    async def _run_async(
        self, stage: str, args: tuple[Any, ...], index: int, pending: Any, found: list[Verdict]
    ) -> Verdict:
        """`run` from the first check that answered with an awaitable."""
        calls = self._calls[stage]
        result: Any = pending
        while True:
            name = calls[index][1]
            try:
                if not isinstance(result, Verdict) and result is not None:
                    result = await result
            except Exception:
                return _broken(name, stage, found)
            if result is not None:
                if not isinstance(result, Verdict):
                    log.error("check %s returned %r at %s, not a Verdict", name, result, stage)
                    return _broken(name, stage, found, logged=True)
                found.append(result)
                if result.reply is not None:
                    break
            index += 1
            if index == len(calls):
                break
            try:
                result = calls[index][0](*args)
            except Exception:
                return _broken(calls[index][1], stage, found)
        return _combine(found) if found else ACCEPT


def _broken(name: str, stage: str, found: list[Verdict], *, logged: bool = False) -> Verdict:
    failure = sys.exc_info()[1]
    if isinstance(failure, StoreError) and not logged:
        # The check read the spooled message and the disk failed (EIO, a full
        # file system: policy/message.py raises StoreError): not a bug in the
        # check, the storage's trouble, answered as the commit answers it and
        # logged in one line, without a traceback.
        log.error("receive check %s could not read the message at %s: %s", name, stage, failure)
        return Verdict(R.LOCAL_ERROR)
    if not logged:
        log.exception("receive check %s failed at %s", name, stage)
    return Verdict(R.CHECK_FAILED)


class ReceiveSession:
    """One connection's side of the pipeline (module contract)."""

    __slots__ = ("facts", "routes", "_pipeline", "_held", "_tx", "_login")

    def __init__(self, pipeline: ReceivePipeline, facts: SessionFacts) -> None:
        self.facts = facts
        #: Next hops chosen at rcpt for single recipients (address -> transport
        #: spec); shared and empty until a check chooses one (no allocation).
        self.routes: Mapping[str, str] = _NO_ROUTES
        self._pipeline = pipeline
        self._held: dict[str, Verdict] = {}  # connect/helo/tls/auth verdicts
        self._tx: list[Verdict] = []  # accepted mail/rcpt/data verdicts with effects
        self._login: tuple[str, frozenset[str], Verdict] | None = None  # accepted, not yet in force

    # -- stages where the session cannot pause: refusals are held ------------

    def connect(self) -> StageAnswer:
        """None-reply: greet; a 421: send it instead of the greeting and close."""
        return self._then(self._pipeline.run("connect", (self.facts,)), self._connected)

    def _connected(self, verdict: Verdict) -> Verdict:
        self._keep("connect", verdict)
        reply = verdict.reply
        return Verdict(reply) if reply is not None and reply.code == 421 else ACCEPT

    def helo(self, name: str, esmtp: bool) -> StageAnswer:
        facts = self.facts
        facts.helo, facts.esmtp = name, esmtp
        self.reset()  # EHLO/HELO ends a transaction (RFC 5321 §4.1.4)
        return self._then(self._pipeline.run("helo", (facts,)), self._kept("helo"))

    def tls(self, info: TlsInfo) -> StageAnswer:
        """The handshake is done: everything learned before it is forgotten (RFC 3207 §4.2)."""
        facts = self.facts
        facts.tls, facts.helo, facts.esmtp = info, None, False
        facts.user, facts.owned = None, frozenset()
        self._login = None
        for stage in ("helo", "tls", "auth"):
            self._held.pop(stage, None)
        self.reset()
        return self._then(self._pipeline.run("tls", (facts,)), self._kept("tls"))

    def _kept(self, stage: str) -> Callable[[Verdict], Verdict]:
        def keep(verdict: Verdict) -> Verdict:
            self._keep(stage, verdict)
            return ACCEPT

        return keep

    def _keep(self, stage: str, verdict: Verdict) -> None:
        self._held.pop(stage, None)  # re-inserted last: the order the stages ran
        if verdict is not ACCEPT:
            self._held[stage] = verdict

    def hold(self, reply: Reply) -> None:
        """A refusal decided outside the checks (the driver's protocol tests,
        net/postscreen.py): the answer to every RCPT of the session from now
        on, as a refusal at connect is."""
        self._held["screen"] = Verdict(reply)

    # -- decisions the session waits for -------------------------------------

    def auth(self, user: str, owned: frozenset[str]) -> StageAnswer:
        """A login was verified: its refusal is the answer to AUTH. Checks see
        the user; the login is in force for the other stages only once the
        session says so (`authenticated()`)."""
        facts = self.facts
        facts.user, facts.owned = user, owned
        answer = self._pipeline.run("auth", (facts,))
        if isinstance(answer, Verdict):
            facts.user, facts.owned = None, frozenset()
            return self._login_answered(user, owned, answer)
        return self._auth_later(answer, user, owned)

    async def _auth_later(
        self, answer: Awaitable[Verdict], user: str, owned: frozenset[str]
    ) -> Verdict:
        try:
            verdict = await answer
        finally:
            self.facts.user, self.facts.owned = None, frozenset()
        return self._login_answered(user, owned, verdict)

    def _login_answered(self, user: str, owned: frozenset[str], verdict: Verdict) -> Verdict:
        self._login = None if verdict.reply is not None else (user, owned, verdict)
        return verdict

    def authenticated(self) -> None:
        """The session is authenticated now (proto.events.Authenticated: 235
        sent). Until then, e.g. a SCRAM client that cancels after the
        server's final message, the client is not trusted as logged in."""
        if self._login is not None:
            user, owned, verdict = self._login
            self._login = None
            self.facts.user, self.facts.owned = user, owned
            self._keep("auth", verdict)

    def mail(self, sender: Address | None, params: MailParams) -> StageAnswer:
        answer = self._pipeline.run("mail", (self.facts, sender, params))
        if isinstance(answer, Verdict):  # the common case: no closure, no coroutine
            return self._mail_answered(answer, sender, params)
        return self._mail_later(answer, sender, params)

    async def _mail_later(
        self, answer: Awaitable[Verdict], sender: Address | None, params: MailParams
    ) -> Verdict:
        return self._mail_answered(await answer, sender, params)

    def _mail_answered(
        self, verdict: Verdict, sender: Address | None, params: MailParams
    ) -> Verdict:
        if verdict.reply is None:
            self.reset()
            facts = self.facts
            facts.sender, facts.mail_params = sender, params
            self._note(verdict)
        return verdict

    def rcpt(self, recipient: Address, params: RcptParams) -> StageAnswer:
        for held in self._held.values():
            if held.reply is not None:
                return Verdict(held.reply)  # smtpd_delay_reject (module contract)
        answer = self._pipeline.run("rcpt", (self.facts, recipient, params))
        if isinstance(answer, Verdict):
            return self._rcpt_answered(answer, recipient, params)
        return self._rcpt_later(answer, recipient, params)

    async def _rcpt_later(
        self, answer: Awaitable[Verdict], recipient: Address, params: RcptParams
    ) -> Verdict:
        return self._rcpt_answered(await answer, recipient, params)

    def _rcpt_answered(self, verdict: Verdict, recipient: Address, params: RcptParams) -> Verdict:
        if verdict.reply is None:
            if verdict.recipients is None:
                self.facts.recipients.append((recipient, params))
            if verdict.transport is not None:  # this recipient's next hop only
                self.routes = {**self.routes, str(recipient): verdict.transport}
                self._note(dataclasses.replace(verdict, transport=None))
            else:
                self._note(verdict)
        return verdict

    def data(self) -> StageAnswer:
        return self._then(self._pipeline.run("data", (self.facts,)), self._noted)

    def end_of_data(self, message: Message) -> StageAnswer:
        """The last word on the message: a refusal, or every effect of the
        session and transaction (headers in stage order, the quarantine
        reason, the recipient list if any stage changed it)."""
        answer = self._pipeline.run("end_of_data", (self.facts, message))
        return self._then(answer, self._final)

    def _final(self, verdict: Verdict) -> Verdict:
        if verdict.reply is not None:
            return verdict
        self._note(verdict)
        effects = [*self._held.values(), *self._tx]
        if not effects:
            return ACCEPT
        changed = any(v.recipients is not None for v in self._tx)
        return Verdict(
            None,
            tuple(h for v in effects for h in v.headers),
            next((v.quarantine for v in effects if v.quarantine), None),
            tuple(self.facts.recipients) if changed else None,
            *_effects(effects),
            **content_changes(effects),
        )

    def etrn(self, node: str) -> StageAnswer:
        return self._pipeline.run("etrn", (self.facts, node))

    def disconnect(self) -> None:
        """The connection ended: the checks that keep something per
        connection free it (`DisconnectCheck`); one that raises is logged."""
        for call, name in self._pipeline._disconnects:
            try:
                call(self.facts)
            except Exception:
                log.exception("receive check %s failed at disconnect", name)

    def reset(self) -> None:
        """The transaction is over (RSET, EHLO, end of data, aborted content)."""
        facts = self.facts
        facts.sender = facts.mail_params = None
        if facts.recipients:
            facts.recipients = []
        if self.routes:
            self.routes = _NO_ROUTES
        self._tx.clear()

    # -- helpers ----------------------------------------------------------------

    def _noted(self, verdict: Verdict) -> Verdict:
        if verdict.reply is None:
            self._note(verdict)
        return verdict

    def _note(self, verdict: Verdict) -> None:
        if verdict is ACCEPT:
            return
        if verdict.recipients is not None:
            self.facts.recipients = list(verdict.recipients)
        self._tx.append(verdict)

    @staticmethod
    def _then(answer: StageAnswer, after: Callable[[Verdict], Verdict]) -> StageAnswer:
        if isinstance(answer, Verdict):
            return after(answer)
        return _after(answer, after)


async def _after(answer: Awaitable[Verdict], after: Callable[[Verdict], Verdict]) -> Verdict:
    return after(await answer)

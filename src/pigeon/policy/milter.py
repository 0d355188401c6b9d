"""A milter as a receive check: one milter session per SMTP connection.

Contract:
  * `MilterCheck(config, hostname)` is one `[[milters]]` entry on the
    receive pipeline (policy/build.py adds one per entry, in order, after
    the built-in checks). It is a `DisconnectCheck`: it keeps one
    `MilterLink` per connection, keyed by the connection's `SessionFacts`,
    opened at the connect stage and closed (SMFIC_QUIT) at `disconnect`.
  * Stages and commands (Sendmail's order, milter protocol version 6):
    connect -> SMFIC_CONNECT; helo -> HELO; mail -> MAIL (an ABORT first
    when the milter's previous transaction is still open: RSET, a refused
    DATA); rcpt -> RCPT; data -> DATA; end_of_data -> every header field
    (our Received: first), EOH, the body in chunks, then end of message,
    whose answer comes with the modifications. Each is preceded by its
    macros (policy/miltermap.py) and left out when the milter negotiated
    it away; its answer is waited for only when the milter gives one.
  * Answers: continue goes on; accept at connect or helo leaves the milter
    out for the rest of the connection, at a later stage for the rest of
    the transaction; reject, tempfail and a custom reply refuse (at RCPT:
    that recipient only); discard drops the message (accepted with 250);
    skip ends the body. A refusal at connect or helo is held by the
    pipeline and given at every RCPT (smtpd_delay_reject); after one at
    connect the milter is asked nothing more on that connection, after one
    at helo it is asked again at the next HELO.
  * End of message: the modifications become the verdict's header edits,
    new body, recipients, sender and quarantine (miltermap.changes).
  * Failure (cannot connect, a timeout: `connect_timeout`,
    `command_timeout`, `content_timeout` for the message; a protocol error;
    the milter closing or shutting down) is logged once with the milter's
    name and the reason, the link is closed, and `default_action` applies
    for the rest of the connection: "tempfail" answers 451 4.7.1 at every
    later stage, "accept" goes on without the milter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pigeon.config.schema import MilterConfig
from pigeon.policy import miltermap
from pigeon.policy.api import Message, SessionFacts, Verdict
from pigeon.policy.milterlink import MilterFailure, MilterLink
from pigeon.proto import milter as M
from pigeon.proto.params import MailParams, RcptParams
from pigeon.vocab.address import Address

log = logging.getLogger("pigeon.milter")

__all__ = ["MilterCheck"]

_TEMPFAIL = Verdict(miltermap.TEMPFAIL)


@dataclass(slots=True, eq=False)
class _Session:
    """One connection's side of one milter."""

    link: MilterLink | None = None
    failed: bool = False  # default_action tempfail in force
    skip_session: bool = False  # accepted at connect/helo, or failed with "accept"
    tx_open: bool = False  # MAIL sent, the milter's transaction not ended
    skip_tx: bool = False  # accepted (or discarded) for this transaction
    discard_tx: bool = False


class MilterCheck:
    """One milter on the receive pipeline (module contract)."""

    def __init__(self, config: MilterConfig, hostname: str, *, max_body: int = 0) -> None:
        self.config = config
        self.name = config.name
        self.hostname = hostname
        self.max_body = max_body or (1 << 30)
        self._sessions: dict[SessionFacts, _Session] = {}

    # -- stages ------------------------------------------------------------------------

    async def connect(self, facts: SessionFacts) -> Verdict | None:
        state = self._sessions[facts] = _Session()
        try:
            state.link = await MilterLink.open(self.config)
        except MilterFailure as exc:
            return self._failed(state, "connect", str(exc))
        return await self._ask(
            state,
            facts,
            M.CONNECT,
            [M.encode_connect("unknown", facts.client_ip, facts.client_port)],
            "connect",
        )

    async def helo(self, facts: SessionFacts) -> Verdict | None:
        state = self._sessions.get(facts)
        if state is None or state.skip_session or state.failed:
            return None  # a failure is already held (connect) or answered later
        if state.tx_open:
            self._abort(state)
        packet = M.encode_strings(M.HELO, facts.helo or "")
        return await self._ask(state, facts, M.HELO, [packet], "helo")

    async def mail(
        self, facts: SessionFacts, sender: Address | None, params: MailParams
    ) -> Verdict | None:
        state = self._sessions.get(facts)
        if state is None or state.skip_session:
            return None
        if state.failed:
            return _TEMPFAIL
        if state.tx_open:
            self._abort(state)
        state.skip_tx = state.discard_tx = False
        state.tx_open = True
        packet = M.encode_strings(M.MAIL, *miltermap.mail_args(sender, params))
        return await self._ask(state, facts, M.MAIL, [packet], "mail", sender)

    async def rcpt(
        self, facts: SessionFacts, recipient: Address, params: RcptParams
    ) -> Verdict | None:
        state = self._active(facts)
        if state is None:
            return None
        if state.failed:
            return _TEMPFAIL
        packet = M.encode_strings(M.RCPT, *miltermap.rcpt_args(recipient, params))
        return await self._ask(state, facts, M.RCPT, [packet], "rcpt", recipient)

    async def data(self, facts: SessionFacts) -> Verdict | None:
        state = self._active(facts)
        if state is None:
            return None
        if state.failed:
            return _TEMPFAIL
        return await self._ask(state, facts, M.DATA, [M.encode(M.DATA)], "data")

    async def end_of_data(self, facts: SessionFacts, message: Message) -> Verdict | None:
        state = self._sessions.get(facts)
        if state is None or state.skip_session:
            return None
        if state.failed:
            return _TEMPFAIL
        if state.discard_tx:
            return Verdict(discard=f"milter {self.name}")
        if state.skip_tx or state.link is None:
            return None
        try:
            return await self._message(state, facts, message)
        except MilterFailure as exc:
            return self._failed(state, "end of message", str(exc))
        except M.MilterProtocolError as exc:
            return self._failed(state, "end of message", f"protocol error: {exc}")
        finally:
            state.tx_open = False

    def disconnect(self, facts: SessionFacts) -> None:
        state = self._sessions.pop(facts, None)
        if state is not None and state.link is not None:
            state.link.close(quit_first=True)
            state.link = None

    # -- the message ---------------------------------------------------------------------

    async def _message(
        self, state: _Session, facts: SessionFacts, message: Message
    ) -> Verdict | None:
        link = state.link
        assert link is not None
        neg, queue_id = link.negotiated, message.queue_id
        timeout = self.config.content_timeout
        if neg.sends(M.HEADER):
            for name, value in _header_fields(message.header_section()):
                link.send(M.encode_header(name, value))
                if neg.replies(M.HEADER):
                    verdict = await self._answered(state, facts, "header", timeout)
                    if verdict is not None or state.skip_tx:
                        return verdict
        if neg.sends(M.EOH):
            self._send_macros(link, M.EOH, facts, queue_id)
            link.send(M.encode(M.EOH))
            if neg.replies(M.EOH):
                verdict = await self._answered(state, facts, "end of header", timeout)
                if verdict is not None or state.skip_tx:
                    return verdict
        if neg.sends(M.BODY):
            verdict = await self._body(state, facts, message, timeout)
            if verdict is not None or state.skip_tx:
                return verdict
        self._send_macros(link, M.BODYEOB, facts, queue_id)
        link.send(M.encode(M.BODYEOB))
        mods, answer = await link.answer(timeout)
        refusal = miltermap.refusal(answer)
        if refusal is not None:
            return Verdict(refusal)
        if answer.kind == "discard":
            return Verdict(discard=f"milter {self.name}")
        if answer.kind not in ("accept", "continue"):
            raise M.MilterProtocolError(f"answered the end of the message with {answer.kind}")
        found = miltermap.changes(mods, facts, neg, self.max_body)
        if found:
            log.info("milter %s changed %s: %s", self.name, queue_id, ", ".join(sorted(found)))
        return Verdict(**found) if found else None

    async def _body(
        self, state: _Session, facts: SessionFacts, message: Message, timeout: float
    ) -> Verdict | None:
        link = state.link
        assert link is not None
        replies = link.negotiated.replies(M.BODY)
        with message.body() as body:
            while chunk := body.read(M.CHUNK):
                link.send(M.encode(M.BODY, chunk))
                if not replies:
                    await link.drain(timeout)
                    continue
                _, answer = await link.answer(timeout)
                if answer.kind == "skip":
                    return None
                verdict = self._verdict(state, answer, "body")
                if verdict is not None or state.skip_tx:
                    return verdict
        return None

    # -- commands and answers --------------------------------------------------------

    def _active(self, facts: SessionFacts) -> _Session | None:
        state = self._sessions.get(facts)
        if state is None or state.skip_session or state.skip_tx:
            return None
        return state

    async def _ask(
        self,
        state: _Session,
        facts: SessionFacts,
        command: bytes,
        packets: list[bytes],
        stage: str,
        address: Address | None = None,
    ) -> Verdict | None:
        """Send `command` with its macros (`address`: the MAIL or RCPT path)."""
        link = state.link
        if link is None:
            return None
        neg = link.negotiated
        if not neg.sends(command):
            return None
        try:
            self._send_macros(link, command, facts, "", address)
            link.send(*packets)
            if not neg.replies(command):
                return None
            return await self._answered(state, facts, stage, self.config.command_timeout)
        except MilterFailure as exc:
            return self._failed(state, stage, str(exc))
        except M.MilterProtocolError as exc:
            return self._failed(state, stage, f"protocol error: {exc}")

    async def _answered(
        self, state: _Session, facts: SessionFacts, stage: str, timeout: float
    ) -> Verdict | None:
        link = state.link
        assert link is not None
        changes, answer = await link.answer(timeout)
        if changes:
            raise M.MilterProtocolError(f"a modification at {stage}")
        return self._verdict(state, answer, stage)

    def _verdict(self, state: _Session, answer: M.Answer, stage: str) -> Verdict | None:
        kind = answer.kind
        if kind in ("shutdown", "conn_fail"):
            raise MilterFailure(f"answered {kind} at {stage}")
        if kind == "continue":
            return None
        session_level = stage in ("connect", "helo")
        if kind == "accept":
            if session_level:
                state.skip_session = True
            else:
                state.skip_tx, state.tx_open = True, False
            return None
        if kind == "discard":
            if session_level:
                state.skip_session = True  # nothing to discard yet (Postfix: accept)
            else:
                state.skip_tx = state.discard_tx = True
                state.tx_open = False
            return None
        refusal = miltermap.refusal(answer)
        if refusal is None:
            raise M.MilterProtocolError(f"answered {kind} at {stage}")
        if stage == "connect":
            state.skip_session = True  # the refusal is held for the session: nothing more to ask
        elif stage not in ("rcpt", "helo"):
            state.tx_open = False  # the milter ended its transaction
        log.info("milter %s refused at %s: %s", self.name, stage, refusal)
        return Verdict(refusal)

    def _send_macros(
        self,
        link: MilterLink,
        command: bytes,
        facts: SessionFacts,
        queue_id: str,
        address: Address | None = None,
    ) -> None:
        wanted = link.negotiated.macros.get(command)
        values = miltermap.macros(command, facts, self.hostname, queue_id, wanted, address)
        if values:
            link.send(M.encode_macros(command, values))

    def _abort(self, state: _Session) -> None:
        if state.link is not None:
            try:
                state.link.send(M.encode(M.ABORT))  # never answered
            except MilterFailure:
                pass
        state.tx_open = False

    def _failed(self, state: _Session, stage: str, reason: str) -> Verdict | None:
        action = self.config.default_action
        log.warning(
            "milter %s failed at %s: %s (default_action %s)", self.name, stage, reason, action
        )
        if state.link is not None:
            state.link.close()
            state.link = None
        state.tx_open = False
        if action == "accept":
            state.skip_session = True
            return None
        state.failed = True
        return _TEMPFAIL


def _header_fields(section: bytes) -> list[tuple[str, str]]:
    """(name, value) of each field, as Sendmail passes them: the value
    without the one space after the colon, folded lines joined by LF."""
    out: list[tuple[str, str]] = []
    text = section.decode("utf-8", "surrogateescape")
    for line in text.split("\r\n"):
        if not line:
            continue
        if line[0] in " \t" and out:
            name, value = out[-1]
            out[-1] = (name, value + "\n" + line)
            continue
        name, _, value = line.partition(":")
        out.append((name.rstrip(" \t"), value[1:] if value.startswith(" ") else value))
    return out

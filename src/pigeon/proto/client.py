"""ClientSession: the sans-IO SMTP/LMTP client (RFC 5321, RFC 2033 and extensions).

The API, as the driver (pigeon.delivery.smtpc) uses it:

    s = ClientSession(config, lmtp=False)   # expects the 220 greeting first
    s.receive_data(b"220 mx ESMTP\\r\\n")     # bytes from the peer
    s.data_to_send()                         # bytes to write now (may be b"")
    s.next_event()                           # a ClientEvent, or None
    s.starttls() / s.tls_established()       # RFC 3207 step (after Ready)
    s.send_transaction(tx)                   # MAIL, RCPT..., DATA/BDAT (after Ready)
    s.send_content(piece, last=...)          # after ContentWanted, until last=True
    s.reset() / s.quit()                     # RSET (cache check) / QUIT
    s.receive_eof()  s.on_timeout()          # the peer closed / s.timeout expired
    s.phase, s.timeout                       # what we wait for, and for how long

Events: Ready(extensions) when the session can take a transaction (after
EHLO/LHLO/HELO, again after STARTTLS); TlsReady / TlsRefused; ContentWanted;
TransactionDone(replies) with one RecipientReply per recipient; ResetDone;
Closed(reply) as the last event (reply None after a clean QUIT).

Contract:
  * No I/O and no clock (CONTRIBUTING.md, rules 1 and 2): bytes in, events and bytes out.
    The driver applies the timeout of the current phase (`timeout`, from
    ClientConfig, RFC 5321 §4.5.3.2) and calls `on_timeout()` when it expires.
  * Rule 1: every reply is matched to the command it answers through one
    FIFO of expectations, so pipelined (RFC 2920) and lock-step exchanges
    take the same path. With PIPELINING (and config.pipelining) MAIL, every
    RCPT and DATA go out in one batch; otherwise one command per reply.
  * Rule 2: every recipient of a transaction gets exactly one final reply in
    TransactionDone: its RCPT reply when that was not 2xx; else the reply to
    the end of data (SMTP: one reply for all, LMTP: one per accepted
    recipient in RCPT order, RFC 2033 §4.2); else the MAIL reply when MAIL
    failed; else the reason the session failed. `RecipientReply.stage`
    says which ("mail", "rcpt", "data"), `local` marks replies we made up
    (timeouts, lost connections, refusals before sending).
  * Rule 3: refusals decided before anything is sent: SMTPUTF8 needed but not
    offered -> 5.6.7 (RFC 6531 §3.4); message larger than the peer's SIZE ->
    5.3.4 (RFC 1870 §6); 8-bit content and no 8BITMIME -> 5.6.3 (the caller
    should have downgraded it, see delivery/downgrade.py).
  * Rule 4: a 421 reply to anything, a malformed reply (client_reply.py), a
    timeout or the peer closing fail the session: the open transaction is
    finished with that reason and Closed follows. Failing never raises.
  * Rule 5: after STARTTLS the parser is reset (bytes the peer sent in
    plaintext after its 220 are dropped, the STARTTLS command-injection
    defence) and EHLO is sent again (RFC 3207 §4.2).
  * Calling a method in the wrong phase is a driver bug: RuntimeError.
  * Rule 6 (addresses): every address pigeon's server parser accepts is
    written, in the canonical form `str(parse_path(...))` that the parser
    reads back as the same address (quoted local parts with ">", blanks,
    quotes or backslashes included; RFC 5321 §4.1.2). An address that has no
    such form (one that never came through our parser: an alias target,
    say) is never put on a command line: its recipient gets a local
    553 5.1.3, or, for the sender, every recipient 553 5.1.7 (RFC 3463
    "bad destination/sender mailbox address syntax"), as results of the
    transaction, never as an exception: a message we cannot write fails
    by itself and says nothing about the peer.
"""

from __future__ import annotations

import base64
import enum
from collections import deque
from dataclasses import dataclass, field

from pigeon.proto.client_config import ClientConfig
from pigeon.proto.client_content import DotStuffer, bdat_chunk
from pigeon.proto.client_reply import Extensions, MalformedReply, ReplyParser
from pigeon.proto.params import RcptParams, xtext_encode
from pigeon.proto.reply import Reply, reply
from pigeon.vocab.address import PathError, parse_path

__all__ = [
    "ClientSession",
    "ClientConfig",
    "Phase",
    "Transaction",
    "RecipientReply",
    "Ready",
    "TlsReady",
    "TlsRefused",
    "ContentWanted",
    "TransactionDone",
    "ResetDone",
    "Closed",
    "ClientEvent",
    "Extensions",
]


class Phase(str, enum.Enum):
    GREETING = "receiving the initial server greeting"
    HELO = "performing the EHLO handshake"
    STARTTLS = "performing the STARTTLS handshake"
    AUTH = "authenticating"
    READY = "idle"
    MAIL = "sending MAIL FROM"
    RCPT = "sending RCPT TO"
    DATA_INIT = "sending DATA command"
    DATA_BLOCK = "sending message body"
    DATA_DONE = "sending end of data -- message may be sent more than once"
    RSET = "sending RSET"
    QUIT = "sending QUIT"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Transaction:
    """One message to one set of recipients, as the client will send it."""

    sender: str  # "" = null reverse-path
    recipients: tuple[str, ...]
    rcpt_params: tuple[RcptParams, ...] = ()  # aligned with recipients, or empty
    size: int = 0  # octets of the content to send
    eight_bit: bool = False  # content holds octets > 127
    smtputf8: bool = False  # needs SMTPUTF8 (RFC 6531)
    ret: str | None = None  # DSN RET=FULL|HDRS (RFC 3461 §4.3)
    envid: str | None = None  # DSN ENVID, decoded (RFC 3461 §4.4)


@dataclass(frozen=True, slots=True)
class RecipientReply:
    address: str
    reply: Reply
    stage: str  # "mail" | "rcpt" | "data"
    local: bool = False  # made up by us, not sent by the peer


class ClientEvent:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Ready(ClientEvent):
    extensions: Extensions
    esmtp: bool  # False after a HELO fallback
    tls: bool  # the transport is TLS (after STARTTLS)


@dataclass(frozen=True, slots=True)
class TlsReady(ClientEvent):
    """The peer said 220 to STARTTLS: upgrade the transport, then tls_established()."""


@dataclass(frozen=True, slots=True)
class AuthDone(ClientEvent):
    """The peer answered our AUTH command: `reply.code == 235` means success."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class TlsRefused(ClientEvent):
    reply: Reply  # the session stays usable in plaintext


@dataclass(frozen=True, slots=True)
class ContentWanted(ClientEvent):
    bdat: bool


@dataclass(frozen=True, slots=True)
class TransactionDone(ClientEvent):
    replies: tuple[RecipientReply, ...]
    mail_reply: Reply | None = None


@dataclass(frozen=True, slots=True)
class ResetDone(ClientEvent):
    reply: Reply


@dataclass(frozen=True, slots=True)
class Closed(ClientEvent):
    reply: Reply | None  # why; None after a clean QUIT
    phase: Phase = Phase.CLOSED
    local: bool = False


# Expectation kinds (what the next reply answers).
_GREETING, _EHLO, _HELO, _STARTTLS, _MAIL, _RCPT, _DATA, _DOT, _BDAT, _RSET, _QUIT, _AUTH = range(
    12
)
_PHASE_OF = {
    _GREETING: Phase.GREETING,
    _EHLO: Phase.HELO,
    _HELO: Phase.HELO,
    _STARTTLS: Phase.STARTTLS,
    _MAIL: Phase.MAIL,
    _RCPT: Phase.RCPT,
    _DATA: Phase.DATA_INIT,
    _DOT: Phase.DATA_DONE,
    _BDAT: Phase.DATA_DONE,
    _RSET: Phase.RSET,
    _QUIT: Phase.QUIT,
    _AUTH: Phase.AUTH,
}
_STAGE_OF = {Phase.MAIL: "mail", Phase.RCPT: "rcpt"}


def _local(code: int, enhanced: str, text: str) -> Reply:
    return reply(code, enhanced, text)


@dataclass
class _Tx:
    tx: Transaction
    final: list[RecipientReply | None]
    mail_reply: Reply | None = None
    mail_ok: bool = False
    rcpt_seen: int = 0
    accepted: list[int] = field(default_factory=list)
    sendable: list[int] = field(default_factory=list)  # recipients whose RCPT goes out
    data_sent: bool = False  # DATA command (or first BDAT) is out
    content: str | None = None  # None | "data" | "bdat": content being sent
    content_done: bool = False  # last piece sent
    dot_seen: int = 0
    chunk_error: Reply | None = None


class ClientSession:
    """One client conversation; see the module docstring for the contract."""

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        lmtp: bool = False,
        helo_name: str | None = None,
    ) -> None:
        self.config = config or ClientConfig()
        self.lmtp = lmtp
        self.helo_name = helo_name or self.config.helo_name or "localhost"
        self.extensions = Extensions()
        self.esmtp = False
        self.tls = False
        self._parser = ReplyParser()
        self._out = bytearray()
        self._events: deque[ClientEvent] = deque()
        self._expect: deque[tuple[int, int]] = deque([(_GREETING, 0)])
        self._ready = False
        self._await_tls = False
        self._closed = False
        self._dirty = False  # server may hold transaction state: RSET first
        self._tx: _Tx | None = None
        self._stuffer: DotStuffer | None = None

    # --- public API -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def ready(self) -> bool:
        """True when a transaction, STARTTLS, RSET or QUIT may be started."""
        return self._ready and not self._closed

    @property
    def wants_content(self) -> bool:
        """True between ContentWanted and the last piece (or a failed BDAT chunk)."""
        t = self._tx
        return t is not None and t.content is not None and not t.content_done

    @property
    def pending_replies(self) -> int:
        return len(self._expect)

    @property
    def phase(self) -> Phase:
        if self._closed:
            return Phase.CLOSED
        if self._tx is not None and self._tx.content and not self._tx.content_done:
            return Phase.DATA_BLOCK
        if self._expect:
            return _PHASE_OF[self._expect[0][0]]
        if self._await_tls:
            return Phase.STARTTLS
        return Phase.READY

    @property
    def timeout(self) -> float | None:
        """Seconds the driver may wait in the current phase (None: not waiting)."""
        c = self.config
        return {
            Phase.GREETING: c.greeting_timeout,
            Phase.HELO: c.helo_timeout,
            Phase.STARTTLS: c.starttls_timeout,
            Phase.AUTH: c.helo_timeout,
            Phase.MAIL: c.mail_timeout,
            Phase.RCPT: c.rcpt_timeout,
            Phase.DATA_INIT: c.data_init_timeout,
            Phase.DATA_BLOCK: c.data_block_timeout,
            Phase.DATA_DONE: c.data_done_timeout,
            Phase.RSET: c.rset_timeout,
            Phase.QUIT: c.quit_timeout,
        }.get(self.phase)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None

    def receive_data(self, data: bytes) -> None:
        if self._closed or not data:
            return
        try:
            replies = self._parser.feed(data)
        except MalformedReply as exc:
            self._fail(_local(421, "4.5.0", f"malformed reply from peer: {exc}"), local=True)
            return
        for r in replies:
            if self._closed or self._await_tls:  # Rule 5: nothing may follow the 220
                return
            if not self._expect:
                self._fail(_local(421, "4.5.0", f"unexpected reply from peer: {r}"), local=True)
                return
            kind, arg = self._expect.popleft()
            if r.code == 421 and kind != _QUIT:  # RFC 5321 §3.8: service closing
                self._fail(r, phase=_PHASE_OF[kind])
                return
            self._on_reply(kind, arg, r)

    def receive_eof(self) -> None:
        if self._closed:
            return
        if self._expect and self._expect[0][0] == _QUIT or self.phase is Phase.READY:
            self._close(None)
            return
        self._fail(
            _local(421, "4.4.2", f"lost connection with peer while {self.phase.value}"), local=True
        )

    def on_timeout(self) -> None:
        if self._closed:
            return
        if self._expect and self._expect[0][0] == _QUIT:
            self._close(None)
            return
        self._fail(
            _local(421, "4.4.2", f"conversation timed out while {self.phase.value}"), local=True
        )

    def starttls(self) -> None:
        self._need_ready("starttls")
        self._ready = False
        self._send(b"STARTTLS\r\n", _STARTTLS)

    def tls_established(self) -> None:
        if not self._await_tls:
            raise RuntimeError("tls_established() without TlsReady")
        self._await_tls = False
        self.tls = True
        self._parser = ReplyParser()  # Rule 5: drop plaintext leftovers
        self.extensions = Extensions()
        self._send_ehlo()

    def authenticate(self, user: str, password: str) -> None:
        """AUTH PLAIN with an initial response (RFC 4954 §4, RFC 4616).

        The driver only calls this on a TLS connection: credentials never
        travel in plaintext. The answer comes back as `AuthDone`.
        """
        self._need_ready("authenticate")
        token = base64.b64encode(b"\0" + user.encode("utf-8") + b"\0" + password.encode("utf-8"))
        self._ready = False
        self._send(b"AUTH PLAIN " + token + b"\r\n", _AUTH)

    def reset(self) -> None:
        self._need_ready("reset")
        self._ready = False
        self._send(b"RSET\r\n", _RSET, 1)

    def quit(self) -> None:
        if self._closed:
            return
        if self._tx is not None:
            raise RuntimeError("quit() inside a transaction")
        self._ready = False
        self._send(b"QUIT\r\n", _QUIT)

    def send_transaction(self, tx: Transaction) -> None:
        self._need_ready("send_transaction")
        if not tx.recipients:
            raise ValueError("a transaction needs at least one recipient")
        if tx.rcpt_params and len(tx.rcpt_params) != len(tx.recipients):
            raise ValueError("rcpt_params must be aligned with recipients")
        t = _Tx(tx, [None] * len(tx.recipients))
        for i, address in enumerate(tx.recipients):
            if wire_path(address) is None:  # Rule 6
                t.final[i] = RecipientReply(address, BAD_RECIPIENT_ADDRESS, "rcpt", True)
            else:
                t.sendable.append(i)
        refusal = self._refusal(tx)
        if refusal is None and wire_path(tx.sender) is None:
            refusal = BAD_SENDER_ADDRESS
        if refusal is not None or not t.sendable:
            # Without a refusal, nothing was sendable: every recipient has its
            # final reply already, so `or BAD_RECIPIENT_ADDRESS` is never used.
            self._events.append(
                TransactionDone(
                    tuple(
                        t.final[i]
                        or RecipientReply(a, refusal or BAD_RECIPIENT_ADDRESS, "mail", True)
                        for i, a in enumerate(tx.recipients)
                    )
                )
            )
            return
        mail = self._mail_command(tx)
        rcpts = [self._rcpt_command(tx, i) for i in t.sendable]
        self._ready = False
        self._tx = t
        if self._dirty:
            self._send(b"RSET\r\n", _RSET, 0)
            self._dirty = False
        self._send(mail, _MAIL)
        if self._pipelining:
            for i, line in zip(t.sendable, rcpts):
                self._send(line, _RCPT, i)
            if not self._chunking:
                self._tx.data_sent = True
                self._send(b"DATA\r\n", _DATA)

    def send_content(self, piece: bytes, *, last: bool) -> None:
        t = self._tx
        if t is None or t.content is None or t.content_done:
            raise RuntimeError("send_content() without ContentWanted")
        if t.content == "data":
            assert self._stuffer is not None
            self._out += self._stuffer.feed(piece)
            if last:
                self._out += self._stuffer.end()
                t.content_done = True
                for i in range(len(t.accepted) if self.lmtp else 1):
                    self._expect.append((_DOT, i))
        else:
            if t.chunk_error is not None:  # a chunk failed: stop, RSET after the replies
                t.content_done = True
                self._after_chunk()
                return
            if not piece and not last:
                return
            self._out += bdat_chunk(piece, last)
            self._expect.append((_BDAT, int(last)))
            t.content_done = last

    # --- replies --------------------------------------------------------------

    def _on_reply(self, kind: int, arg: int, r: Reply) -> None:
        if kind == _GREETING:
            if r.code // 100 != 2:  # RFC 5321 §3.1: 554 = no service here
                self._fail(r, quit=True, phase=Phase.GREETING)
            else:
                self._send_ehlo()
        elif kind in (_EHLO, _HELO):
            self._on_helo(kind, r)
        elif kind == _STARTTLS:
            if r.code == 220:
                self._await_tls = True
                self._events.append(TlsReady())
            else:
                self._ready = True
                self._events.append(TlsRefused(r))
        elif kind == _RSET:
            if arg == 1:  # explicit reset(): a liveness check
                if r.positive:
                    self._ready = True
                    self._events.append(ResetDone(r))
                else:
                    self._fail(r, quit=True, phase=Phase.RSET)
            elif self._tx is not None and self._tx.mail_reply is not None:
                self._finish()  # the RSET that ends a failed transaction
        elif kind == _MAIL:
            self._on_mail(r)
        elif kind == _RCPT:
            self._on_rcpt(arg, r)
        elif kind == _DATA:
            self._on_data(r)
        elif kind == _DOT:
            self._on_dot(arg, r)
        elif kind == _BDAT:
            self._on_bdat(arg, r)
        elif kind == _QUIT:
            self._close(None)
        elif kind == _AUTH:
            self._ready = True  # a refusal leaves the session usable (QUIT)
            self._events.append(AuthDone(r))

    def _on_helo(self, kind: int, r: Reply) -> None:
        if r.positive:
            self.esmtp = kind == _EHLO
            self.extensions = (
                Extensions.parse(r)
                if self.esmtp
                else Extensions(r.lines[0].split()[0] if r.lines[0].split() else "")
            )
            self._ready = True
            self._events.append(Ready(self.extensions, self.esmtp, self.tls))
        elif kind == _EHLO and r.permanent and not self.lmtp and not self.tls:
            self._send(f"HELO {self.helo_name}\r\n".encode("ascii"), _HELO)  # RFC 5321 §4.1.4
        else:
            self._fail(r, quit=True, phase=Phase.HELO)

    def _on_mail(self, r: Reply) -> None:
        t = self._tx
        assert t is not None
        t.mail_reply = r
        t.mail_ok = r.positive
        if not r.positive:
            for i in t.sendable:
                t.final[i] = RecipientReply(t.tx.recipients[i], r, "mail")
            self._dirty = True
            if not self._pipelining:
                self._finish()
            elif self._expect_nothing_more():
                self._finish()
            return
        if not self._pipelining:
            first = t.sendable[0]
            self._send(self._rcpt_command(t.tx, first), _RCPT, first)

    def _on_rcpt(self, i: int, r: Reply) -> None:
        t = self._tx
        assert t is not None
        t.rcpt_seen += 1
        if t.mail_ok:
            if r.positive:
                t.accepted.append(i)
            else:
                t.final[i] = RecipientReply(t.tx.recipients[i], r, "rcpt")
        last = t.rcpt_seen == len(t.sendable)
        if not self._pipelining and not last:
            following = t.sendable[t.rcpt_seen]
            self._send(self._rcpt_command(t.tx, following), _RCPT, following)
            return
        if not last:
            return
        if not t.mail_ok:
            if self._expect_nothing_more():
                self._finish()
            return
        if not t.accepted:
            if t.data_sent:
                return  # pipelined DATA is coming back refused
            self._send(b"RSET\r\n", _RSET, 0)  # nobody to send to: end the transaction
            return
        if self._chunking:
            t.data_sent = True
            t.content = "bdat"
            self._events.append(ContentWanted(True))
        elif not t.data_sent:
            t.data_sent = True
            self._send(b"DATA\r\n", _DATA)

    def _on_data(self, r: Reply) -> None:
        t = self._tx
        assert t is not None
        if r.code == 354:
            if t.mail_ok and t.accepted:
                t.content = "data"
                self._stuffer = DotStuffer()
                self._events.append(ContentWanted(False))
            else:
                # RFC 2920 §3.1: DATA accepted although no RCPT was: send an
                # empty message so the server ends the transaction.
                self._out += b".\r\n"
                self._expect.append((_DOT, -1))
            return
        if t.mail_ok and t.accepted:
            for i in t.accepted:
                t.final[i] = RecipientReply(t.tx.recipients[i], r, "data")
        self._dirty = True
        self._finish()

    def _on_dot(self, n: int, r: Reply) -> None:
        t = self._tx
        assert t is not None
        if n == -1:  # the empty message after a stray 354
            self._finish()
            return
        targets = [t.accepted[n]] if self.lmtp else t.accepted
        for i in targets:
            t.final[i] = RecipientReply(t.tx.recipients[i], r, "data")
        t.dot_seen += 1
        if not self.lmtp or t.dot_seen == len(t.accepted):
            self._finish()

    def _on_bdat(self, last: int, r: Reply) -> None:
        t = self._tx
        assert t is not None
        if not r.positive and t.chunk_error is None:
            t.chunk_error = r
            t.content_done = True  # send no more chunks
        if last:
            result = t.chunk_error or r
            for i in t.accepted:
                t.final[i] = RecipientReply(t.tx.recipients[i], result, "data")
            self._dirty = t.chunk_error is not None
            self._finish()
        elif t.chunk_error is not None:
            self._after_chunk()

    def _after_chunk(self) -> None:
        """A BDAT chunk failed: once its replies are in, end the transaction with RSET."""
        t = self._tx
        assert t is not None and t.chunk_error is not None
        if not t.content_done or self._expect:
            return
        for i in t.accepted:
            t.final[i] = RecipientReply(t.tx.recipients[i], t.chunk_error, "data")
        self._send(b"RSET\r\n", _RSET, 0)

    # --- helpers ----------------------------------------------------------------

    @property
    def _pipelining(self) -> bool:
        return self.config.pipelining and self.extensions.has("PIPELINING")

    @property
    def _chunking(self) -> bool:
        # LMTP over BDAT is not covered by RFC 2033: LMTP always uses DATA.
        return self.config.chunking and not self.lmtp and self.extensions.has("CHUNKING")

    def _expect_nothing_more(self) -> bool:
        return not any(k in (_RCPT, _DATA) for k, _ in self._expect)

    def _need_ready(self, what: str) -> None:
        if not self.ready or self._tx is not None:
            raise RuntimeError(f"{what}() while {self.phase.value}")

    def _send(self, line: bytes, kind: int, arg: int = 0) -> None:
        self._out += line
        self._expect.append((kind, arg))

    def _send_ehlo(self) -> None:
        verb = "LHLO" if self.lmtp else "EHLO"  # RFC 2033 §4.1
        self._send(f"{verb} {self.helo_name}\r\n".encode("ascii"), _EHLO)

    def _refusal(self, tx: Transaction) -> Reply | None:
        ext = self.extensions
        if tx.smtputf8 and not ext.has("SMTPUTF8"):
            return _local(554, "5.6.7", "SMTPUTF8 is required, but was not offered by the server")
        limit = ext.size_limit
        if limit is not None and tx.size > limit:
            return _local(
                552,
                "5.3.4",
                f"message too big for remote: size {tx.size} exceeds "
                f"the limit {limit} the server announced",
            )
        if tx.eight_bit and not ext.has("8BITMIME"):
            return _local(554, "5.6.3", "8-bit content, but the server lacks 8BITMIME")
        return None

    def _mail_command(self, tx: Transaction) -> bytes:
        ext = self.extensions
        parts = [f"MAIL FROM:<{_path(tx.sender)}>"]
        if ext.has("SIZE"):
            parts.append(f"SIZE={tx.size}")
        if tx.eight_bit:
            parts.append("BODY=8BITMIME")
        if tx.smtputf8:
            parts.append("SMTPUTF8")
        if ext.has("DSN"):
            if tx.ret:
                parts.append(f"RET={tx.ret}")
            if tx.envid:
                parts.append(f"ENVID={xtext_encode(tx.envid)}")
        return (" ".join(parts) + "\r\n").encode("utf-8")

    def _rcpt_command(self, tx: Transaction, i: int) -> bytes:
        parts = [f"RCPT TO:<{_path(tx.recipients[i])}>"]
        if self.extensions.has("DSN") and tx.rcpt_params:
            p = tx.rcpt_params[i]
            if p.notify:
                parts.append("NOTIFY=" + ",".join(p.notify))
            if p.orcpt:
                parts.append(f"ORCPT={p.orcpt[0]};{xtext_encode(p.orcpt[1])}")
        return (" ".join(parts) + "\r\n").encode("utf-8")

    def _finish(self) -> None:
        t = self._tx
        assert t is not None
        self._tx = None
        self._stuffer = None
        self._ready = not self._closed
        self._events.append(TransactionDone(self._fill(t, None), t.mail_reply))

    def _fill(self, t: _Tx, why: RecipientReply | None) -> tuple[RecipientReply, ...]:
        out = []
        for i, addr in enumerate(t.tx.recipients):
            x = t.final[i]
            if x is None:
                x = why or RecipientReply(
                    addr, _local(451, "4.5.0", "no reply for recipient"), "data", True
                )
                x = RecipientReply(addr, x.reply, x.stage, x.local)
            out.append(x)
        return tuple(out)

    def _fail(
        self, r: Reply, *, local: bool = False, quit: bool = False, phase: Phase | None = None
    ) -> None:
        phase = phase or self.phase
        t = self._tx
        if t is not None:
            self._tx = None
            stage = _STAGE_OF.get(phase, "data" if t.data_sent else "mail")
            self._events.append(
                TransactionDone(self._fill(t, RecipientReply("", r, stage, local)), t.mail_reply)
            )
        if quit:
            self._out += b"QUIT\r\n"
        self._close(r, phase, local)

    def _close(self, r: Reply | None, phase: Phase | None = None, local: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False
        self._expect.clear()
        self._events.append(Closed(r, phase or self.phase, local))


#: Rule 6: local refusals for addresses that cannot be written.
BAD_RECIPIENT_ADDRESS = _local(
    553,
    "5.1.3",
    "recipient address cannot be sent over SMTP (bad destination mailbox address syntax)",
)
BAD_SENDER_ADDRESS = _local(
    553, "5.1.7", "sender address cannot be sent over SMTP (bad sender mailbox address syntax)"
)


def wire_path(address: str) -> str | None:
    """The text between "<" and ">" that pigeon's server parser reads back as
    `address` (Rule 6), "" for the null path, None when there is none."""
    if address == "":
        return ""
    try:
        parsed = parse_path(f"<{address}>", allow_null=False, smtputf8=True)
    except PathError:
        return None
    return str(parsed) if parsed is not None else None


def _path(address: str) -> str:
    path = wire_path(address)
    if path is None:  # send_transaction filters these out first (Rule 6)
        raise ValueError(f"address cannot go on a command line: {address!r}")
    return path

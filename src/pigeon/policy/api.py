"""The receive policy interface: staged checks and the verdicts they return.

This module is the plugin surface for receive-time decisions (it becomes
part of the public `pigeon.api`). It holds types only: `Verdict`,
`HeaderField`, the facts a check reads (`SessionFacts`, `Message`) and one
`typing.Protocol` per stage. The pipeline that runs checks is
`pigeon.policy.pipeline`; the built-in checks and the one place that
composes them from the configuration is `pigeon.policy.build`.

Contract:
  * A check is a small object with a method for each stage it cares about,
    and nothing else; the pipeline asks only the checks that have the
    stage's method (`isinstance(check, RcptCheck)`...):

      connect      a client connected (before the greeting)
      helo         EHLO/HELO accepted
      tls          a TLS handshake completed (STARTTLS or implicit TLS)
      auth         a login was verified (before 235 is sent)
      mail         MAIL FROM (sender, parameters)
      rcpt         RCPT TO (recipient, parameters)
      data         DATA or the first BDAT chunk, before any content
      end_of_data  the whole message is received, before it is committed
      etrn         ETRN (RFC 1985)

  * Every stage method returns a `Verdict`, None (accept, nothing to add:
    the cheap common answer), or an awaitable of either (a check that must
    wait, e.g. for DNS, is an `async def`; a synchronous check costs no
    task and no coroutine).
  * A verdict is accept (`reply` None) or a refusal (`reply` a 4xx
    tempfail or 5xx reject, from `pigeon.proto.reply`), plus effects that
    apply when the message is accepted: header fields to put on top of the
    message (above our Received:, RFC 5321 §4.4 keeps trace fields at the
    top), header fields to remove from the client's header section,
    quarantine (accept, then hold the message in the queue instead of
    delivering it), discard (accept with 250, then drop it, logged), a
    changed recipient list (added, removed or rewritten envelope
    recipients; `rcpt`, `data` and `end_of_data` only) and a transport
    (a next hop that overrides the routing: of one recipient at `rcpt`,
    of the message at `mail`, `data` and `end_of_data`).
  * Within one stage checks run in the order they were composed; the first
    refusal ends the stage (later checks are not asked). Headers and the
    quarantine reason of the checks that ran are kept.
  * End-of-data verdicts may also change the content (`header_edits`: add,
    insert, change or remove header fields; `body`: a new body) and the
    envelope sender (`sender`). The content changes of several checks
    apply in the order the checks ran; the last new body and sender win.
  * A check that keeps resources per connection (a milter's socket) has a
    `disconnect(session)` method (`DisconnectCheck`): the pipeline calls
    it once when the connection ends, whatever happened; it never refuses.
  * `SessionFacts` is what the pipeline knows about the connection and the
    transaction when it asks; checks read it and never change it (the
    pipeline updates it as the session goes on). A check keeps no
    per-connection state of its own (one instance serves every
    connection), except a `DisconnectCheck`, which keys it by the
    `SessionFacts` object and frees it at `disconnect`.
  * A check that raises is a bug in the check: the pipeline logs it and
    answers 451 4.3.0 (try again later), never a 250 and never a traceback
    to the client. A `StoreError` is the storage failing under the check
    (reading the spooled message, `Message`: EIO, a full disk): the answer
    is the commit's own 451 4.3.0 "queue file write error" and the log gets
    one line, no traceback.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, TypeAlias, runtime_checkable

from pigeon.config._delivery import parse_nexthop
from pigeon.proto.events import TlsInfo
from pigeon.proto.params import MailParams, RcptParams
from pigeon.proto.reply import Reply
from pigeon.vocab.address import Address

__all__ = [
    "ACCEPT",
    "AuthCheck",
    "CheckResult",
    "ConnectCheck",
    "DataCheck",
    "DisconnectCheck",
    "EnvelopeRecipient",
    "EtrnCheck",
    "HeaderEdit",
    "HeaderField",
    "HeloCheck",
    "MailCheck",
    "Message",
    "MessageCheck",
    "NewSender",
    "RcptCheck",
    "SessionFacts",
    "STAGES",
    "TlsCheck",
    "Verdict",
    "refuse",
]

#: The stages, in the order a session meets them (`etrn` stands apart).
STAGES = ("connect", "helo", "tls", "auth", "mail", "rcpt", "data", "end_of_data", "etrn")

#: One envelope recipient: the forward-path and its RCPT parameters (RFC 3461).
EnvelopeRecipient: TypeAlias = tuple[Address, RcptParams]

# RFC 5322 §3.6.8: a field name is printable US-ASCII but the colon.
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
# A folded value: every CR LF is followed by white space (RFC 5322 §2.2.3);
# no other CR or LF, no NUL (the smuggling defence holds for our headers too).
# Written as an unrolled loop, not (?:[^\r\n\x00]|\r\n[ \t])*: the same
# language, six times faster on a 300-character Authentication-Results value.
_FIELD_VALUE = re.compile(r"[^\r\n\x00]*(?:\r\n[ \t][^\r\n\x00]*)*")


@dataclass(frozen=True, slots=True)
class HeaderField:
    """A header field a check adds: `Name: value` (the value may be folded).

    Checked when made: a name that is not a field name, or a value with a
    bare CR or LF, a CR LF not followed by white space, or a NUL, raises
    ValueError, so no check can split a header or end the header section.
    """

    name: str
    value: str

    def __post_init__(self) -> None:
        if not _FIELD_NAME.fullmatch(self.name):
            raise ValueError(f"not a header field name: {self.name!r}")
        if not _FIELD_VALUE.fullmatch(self.value):
            raise ValueError(f"header field {self.name} has a bare CR/LF or NUL in its value")

    def to_bytes(self) -> bytes:
        return f"{self.name}: {self.value}\r\n".encode()


@dataclass(frozen=True, slots=True)
class HeaderEdit:
    """A change to the header section (the milter actions, RFC 5322 §3.6):

      add     append `name: value` at the end of the header section
      insert  put it before the field at `index` (0: on top)
      change  replace the `index`-th (from 1) field called `name`
              (case-insensitive); an empty value removes it; no such
              field: appended as by add

    The value is checked as `HeaderField` checks it (an empty value is
    allowed here: it removes).
    """

    action: str
    name: str
    value: str
    index: int = 0

    def __post_init__(self) -> None:
        if self.action not in ("add", "insert", "change"):
            raise ValueError(f"unknown header edit {self.action!r}")
        if self.index < 0:
            raise ValueError("a header index is never negative")
        if not (self.action == "change" and self.value == ""):
            HeaderField(self.name, self.value)  # the same rules (ValueError)
        elif not _FIELD_NAME.fullmatch(self.name):
            raise ValueError(f"not a header field name: {self.name!r}")


@dataclass(frozen=True, slots=True)
class NewSender:
    """A changed envelope sender (None: the null reverse-path <>), with the
    MAIL parameters that replace the client's (None: they stay)."""

    address: Address | None
    params: MailParams | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a check decided (module contract). `Verdict()` is ACCEPT."""

    #: None: accept; else the refusal to send (4xx tempfail, 5xx reject).
    reply: Reply | None = None
    #: Fields to put on top of the message, in this order, above Received:.
    headers: tuple[HeaderField, ...] = ()
    #: Accept, but hold the message (queue state 'hold') for this reason.
    quarantine: str | None = None
    #: The whole new recipient list (None: unchanged).
    recipients: tuple[EnvelopeRecipient, ...] | None = None
    #: Accept (250), then drop the message, logged with this reason (Postfix
    #: DISCARD; a milter's SMFIR_DISCARD is "milter NAME").
    discard: str | None = None
    #: Names of header fields to remove from the client's header section (every
    #: occurrence, any case); our Received: and fields added by checks stay.
    remove_headers: tuple[str, ...] = ()
    #: A next hop overriding the routing, in [transports] syntax ("smtp:[host]:port",
    #: "lmtp:unix:/path", "local", "discard"): for the recipient at `rcpt`, for
    #: every recipient at the other stages. None: routed as usual. "local:.Folder":
    #: local recipients get the message in that Maildir++ folder of their
    #: Maildir (the DMARC quarantine's ".Junk"); others are routed as usual.
    transport: str | None = None
    # -- content changes (end_of_data; a milter's modification actions) --
    #: Changes to the header section as received (our Received: first),
    #: applied in order, before `headers` are put on top.
    header_edits: tuple[HeaderEdit, ...] = ()
    #: A new body: every octet after the header section (None: unchanged).
    body: bytes | None = None
    #: A new envelope sender (None: unchanged).
    sender: NewSender | None = None

    def __post_init__(self) -> None:
        if self.reply is not None and self.reply.positive:
            raise ValueError(f"a verdict's reply refuses (4xx/5xx), not {self.reply.code}")
        for name in self.remove_headers:
            if not _FIELD_NAME.fullmatch(name):
                raise ValueError(f"not a header field name: {name!r}")
        if self.transport is not None:
            parse_nexthop(self.transport, folder=True)  # ValueError says what is wrong

    @property
    def refused(self) -> bool:
        return self.reply is not None


#: Accept with nothing to add.
ACCEPT = Verdict()


def refuse(reply: Reply) -> Verdict:
    """A verdict that refuses with `reply` (4xx: try again later, 5xx: never)."""
    return Verdict(reply)


#: What a stage method returns (module contract).
CheckResult: TypeAlias = Verdict | None | Awaitable[Verdict | None]


@dataclass(slots=True, eq=False)
class SessionFacts:
    """The connection and its transaction as the pipeline knows them (read-only for checks)."""

    client_ip: str
    client_port: int = 0
    #: The listener role: "smtp", "submission" or "submissions".
    role: str = "smtp"
    helo: str | None = None
    esmtp: bool = False
    tls: TlsInfo | None = None
    #: The account the client logged in as (None: not authenticated).
    user: str | None = None
    #: The addresses that account may send as, lowercased "local@domain".
    owned: frozenset[str] = frozenset()
    #: MAIL FROM of the transaction in progress (None: the null path <>, or no transaction).
    sender: Address | None = None
    #: MAIL parameters; None when no transaction is in progress.
    mail_params: MailParams | None = None
    #: The envelope recipients accepted so far, as they will be queued.
    recipients: list[EnvelopeRecipient] = field(default_factory=list)

    @property
    def authenticated(self) -> bool:
        return self.user is not None


class Message(Protocol):
    """The received message at end of data, before it is committed.

    The content begins with our Received: field. Nothing forces a copy of the
    body into memory: `header_section()` reads at most the header section
    (the session bounded it by `limits.header_size`), `headers()` is that
    section parsed into fields, `body()` streams.
    """

    @property
    def queue_id(self) -> str: ...

    @property
    def size(self) -> int:
        """Octets of content received (our Received: field included)."""

    @property
    def eight_bit(self) -> bool: ...

    def header_section(self) -> bytes:
        """The header section, up to and including the empty line that ends
        it (all of the content when there is none); OSError when unreadable."""

    def headers(self) -> list[tuple[str, str]]:
        """The header fields parsed: (name, value) in order, our Received:
        first, each value unfolded (RFC 5322 §2.2.3) and stripped, names as
        written (compare them without case); read once; OSError when
        unreadable."""

    def body(self) -> BinaryIO:
        """A stream of the body (after the empty line); the caller closes it."""


@runtime_checkable
class ConnectCheck(Protocol):
    def connect(self, session: SessionFacts) -> CheckResult: ...


@runtime_checkable
class HeloCheck(Protocol):
    def helo(self, session: SessionFacts) -> CheckResult: ...


@runtime_checkable
class TlsCheck(Protocol):
    def tls(self, session: SessionFacts) -> CheckResult: ...


@runtime_checkable
class AuthCheck(Protocol):
    def auth(self, session: SessionFacts) -> CheckResult: ...


@runtime_checkable
class MailCheck(Protocol):
    def mail(
        self, session: SessionFacts, sender: Address | None, params: MailParams
    ) -> CheckResult:
        """`sender` None is the null reverse-path <>."""


@runtime_checkable
class RcptCheck(Protocol):
    def rcpt(self, session: SessionFacts, recipient: Address, params: RcptParams) -> CheckResult:
        """`session.recipients` holds the ones accepted before this one."""


@runtime_checkable
class DataCheck(Protocol):
    def data(self, session: SessionFacts) -> CheckResult: ...


@runtime_checkable
class MessageCheck(Protocol):
    def end_of_data(self, session: SessionFacts, message: Message) -> CheckResult: ...


@runtime_checkable
class EtrnCheck(Protocol):
    def etrn(self, session: SessionFacts, node: str) -> CheckResult: ...


@runtime_checkable
class DisconnectCheck(Protocol):
    def disconnect(self, session: SessionFacts) -> None:
        """The connection ended: free what was kept for it, without waiting
        (module contract)."""

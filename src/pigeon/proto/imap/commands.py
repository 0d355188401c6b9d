"""The typed values of IMAP commands (RFC 9051 §6), as `grammar.parse_command` returns them.

Contract:
  * `Command(tag, name, uid, args)`: `name` upper case, `uid` for the UID
    forms (RFC 9051 §6.4.9), `args` one of the frozen values below, or None
    for a command without arguments.
  * Values only: no parsing, no behaviour. Mailbox names are Unicode (already
    decoded from modified UTF-7 when the client uses it); flags are canonical
    system flags or keywords as sent; sequence sets keep "*" unresolved.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pigeon.proto.imap.fetchspec import FetchAtt
from pigeon.proto.imap.searchparse import SearchArgs
from pigeon.proto.imap.seqset import SequenceSet


@dataclass(frozen=True, slots=True)
class Login:
    user: str
    password: bytes


@dataclass(frozen=True, slots=True)
class Authenticate:
    mechanism: str  # upper case
    initial: bytes | None  # SASL-IR (RFC 4959): decoded; b"" for "="; None if absent


@dataclass(frozen=True, slots=True)
class Enable:
    capabilities: tuple[str, ...]  # upper case


@dataclass(frozen=True, slots=True)
class Id:
    params: tuple[tuple[str, str | None], ...] | None  # None for "ID NIL"


@dataclass(frozen=True, slots=True)
class Select:
    mailbox: str
    condstore: bool = False  # RFC 7162 §3.1.8


@dataclass(frozen=True, slots=True)
class MailboxArg:
    """CREATE, DELETE, SUBSCRIBE, UNSUBSCRIBE."""

    mailbox: str
    special_use: tuple[str, ...] = ()  # CREATE ... (USE (\Sent)) RFC 6154 §3


@dataclass(frozen=True, slots=True)
class Rename:
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class ListArgs:
    """LIST (RFC 9051 §6.3.9, RFC 5258) and LSUB (RFC 3501 §6.3.9)."""

    reference: str
    patterns: tuple[str, ...]
    select_options: frozenset[str] = frozenset()
    return_options: frozenset[str] = frozenset()
    status_items: tuple[str, ...] = ()  # RETURN (STATUS (..)), RFC 5819
    extended: bool = False  # selection or return options given (RFC 5258 §3)


@dataclass(frozen=True, slots=True)
class Status:
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Append:
    mailbox: str
    flags: tuple[str, ...]
    internaldate: dt.datetime | None
    message: bytes
    binary: bool = False  # literal8 (RFC 3516 §4.4)


@dataclass(frozen=True, slots=True)
class Fetch:
    seqset: SequenceSet
    atts: tuple[FetchAtt, ...]
    changedsince: int | None = None  # RFC 7162 §3.1.4.1
    vanished: bool = False  # RFC 7162 §3.2.6 (UID FETCH only)


@dataclass(frozen=True, slots=True)
class Store:
    seqset: SequenceSet
    mode: str  # "set" | "add" | "remove"
    silent: bool
    flags: tuple[str, ...]
    unchangedsince: int | None = None  # RFC 7162 §3.1.3


@dataclass(frozen=True, slots=True)
class CopyArgs:
    """COPY and MOVE (RFC 6851)."""

    seqset: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class UidExpunge:
    seqset: SequenceSet


CommandArgs = (
    Login
    | Authenticate
    | Enable
    | Id
    | Select
    | MailboxArg
    | Rename
    | ListArgs
    | Status
    | Append
    | Fetch
    | Store
    | CopyArgs
    | UidExpunge
    | SearchArgs
    | None
)


@dataclass(frozen=True, slots=True)
class Command:
    tag: str
    name: str
    uid: bool = False
    args: CommandArgs = None

"""IMAP command grammar: a `RawCommand` from the reader becomes a typed `Command`.

Contract:
  * `parse_command(raw, utf8)` returns `Command(tag, name, uid, args)` or
    raises `ParseError(text)` (the reader answers it as a tagged BAD; the tag
    is read first, so a BAD names the command's own tag when it had one).
  * `name` is the upper-case command; `uid` is True for the UID forms
    (RFC 9051 §6.4.9); `args` is the command's typed value below, or None
    for commands without arguments (CAPABILITY, NOOP, LOGOUT, STARTTLS,
    CHECK, CLOSE, UNSELECT, EXPUNGE, IDLE, NAMESPACE).
  * Mailbox names are returned as Unicode: with `utf8` (IMAP4rev2 or
    UTF8=ACCEPT enabled; RFC 9051 §5.1, RFC 6855 §3) as sent, otherwise
    decoded from modified UTF-7 (RFC 3501 §5.1.3), where a name that is not
    valid modified UTF-7 is a ParseError. "INBOX" in any case is "INBOX"
    (RFC 9051 §5.1), also as the first level of a name ("inbox/x" is
    "INBOX/x", "/" being the hierarchy separator).
  * System flags are spelled canonically ("\\Seen"); keywords are kept as
    sent; a flag the client may not set (\\Recent, an unknown \\ flag) is a
    ParseError where a flag list is stored (STORE, APPEND).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from pigeon.proto.imap import mutf7
from pigeon.proto.imap.commands import (
    Append,
    Authenticate,
    Command,
    CommandArgs,
    CopyArgs,
    Enable,
    Fetch,
    Id,
    ListArgs,
    Login,
    MailboxArg,
    Rename,
    Select,
    Status,
    Store,
    UidExpunge,
)
from pigeon.proto.imap.fetchspec import parse_fetch_atts
from pigeon.proto.imap.lexer import (
    ATOM_CHARS,
    TAG_CHARS,
    Cursor,
    ParseError,
    RawCommand,
)
from pigeon.proto.imap.searchparse import MONTHS, SearchArgs, parse_search, sequence_set

SYSTEM_FLAGS = {f.upper(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
#: RFC 9051 §6.3.10 / RFC 3501 §6.3.10 status items (SIZE, DELETED: RFC 9051;
#: HIGHESTMODSEQ: RFC 7162 §3.1.8; RECENT: IMAP4rev1 only, always 0 here).
STATUS_ITEMS = frozenset(
    {"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "HIGHESTMODSEQ", "RECENT"}
)
LIST_SELECT_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
SPECIAL_USE = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
)


NO_ARGUMENTS = frozenset(
    {"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "IDLE"}
    | {"NAMESPACE"}
)
UID_COMMANDS = frozenset({"COPY", "MOVE", "FETCH", "SEARCH", "STORE", "EXPUNGE"})


def read_tag(raw: RawCommand) -> str | None:
    """The command's tag when its line starts with a valid one (for a BAD)."""
    first = raw.segments[0]
    end = first.find(b" ")
    tag = first[: end if end != -1 else len(first)]
    if tag and all(c in TAG_CHARS for c in tag):
        return tag.decode("ascii")
    return None


def parse_command(raw: RawCommand, utf8: bool = False) -> Command:
    cur = Cursor(raw)
    tag = cur.take(TAG_CHARS, "tag").decode("ascii")
    cur.sp()
    name = cur.atom().upper()
    uid = False
    if name == "UID":
        cur.sp()
        name = cur.atom().upper()
        uid = True
        if name not in UID_COMMANDS:
            raise ParseError(f"UID {name} is not a command")
    if name in NO_ARGUMENTS and not uid:
        cur.end()
        return Command(tag, name)
    parser = _PARSERS.get(name)
    if parser is None:
        raise ParseError(f"unknown command {name[:30]}")
    cur.sp()
    args = parser(cur, _Context(utf8, uid))
    cur.end()
    return Command(tag, name, uid, args)


@dataclass(frozen=True, slots=True)
class _Context:
    utf8: bool
    uid: bool


def decode_mailbox(name: str, utf8: bool) -> str:
    """A client's mailbox name as Unicode (RFC 9051 §5.1, RFC 3501 §5.1.3)."""
    if name.upper() == "INBOX":
        return "INBOX"
    if name[:6].upper() == "INBOX/":  # INBOX's children: the "/" separator of mailstore
        name = "INBOX" + name[5:]
    if utf8:
        return name
    try:
        return mutf7.decode(name)
    except ValueError as exc:
        raise ParseError(str(exc)) from None


def _mailbox(cur: Cursor, ctx: _Context) -> str:
    return decode_mailbox(cur.astring(), ctx.utf8)


def _flag(cur: Cursor, storable: bool) -> str:
    if cur.maybe(b"\\"):
        name = "\\" + (cur.take(ATOM_CHARS, "flag").decode("ascii") if not cur.maybe(b"*") else "*")
        canonical = SYSTEM_FLAGS.get(name.upper())
        if canonical is None and storable:
            raise ParseError(f"flag {name[:30]} cannot be set")
        return canonical or name
    return cur.atom()


def flag_list(cur: Cursor, storable: bool = True) -> tuple[str, ...]:
    cur.expect(b"(")
    flags: list[str] = []
    while not cur.maybe(b")"):
        if flags:
            cur.sp()
        flags.append(_flag(cur, storable))
    return tuple(dict.fromkeys(flags))


def _login(cur: Cursor, ctx: _Context) -> Login:
    user = cur.astring()
    cur.sp()
    return Login(user, cur.astring_bytes())


def _authenticate(cur: Cursor, ctx: _Context) -> Authenticate:
    mech = cur.atom().upper()
    initial = None
    if cur.maybe(b" "):
        text = cur.take(ATOM_CHARS | {ord("=")}, "initial response")
        if text == b"=":
            initial = b""
        else:
            try:
                initial = base64.b64decode(text, validate=True)
            except binascii.Error:
                raise ParseError("initial response is not base64") from None
    return Authenticate(mech, initial)


def _enable(cur: Cursor, ctx: _Context) -> Enable:
    caps = [cur.atom().upper()]
    while cur.maybe(b" "):
        caps.append(cur.atom().upper())
    return Enable(tuple(caps))


def _id(cur: Cursor, ctx: _Context) -> Id:
    if cur.maybe(b"NIL"):
        return Id(None)
    cur.expect(b"(")
    params: list[tuple[str, str | None]] = []
    while not cur.maybe(b")"):
        if params:
            cur.sp()
        key = cur.string()
        cur.sp()
        params.append((key, cur.nstring()))
        if len(params) > 30:  # RFC 2971 §3.3: at most 30 pairs
            raise ParseError("too many ID fields")
    return Id(tuple(params))


def _select(cur: Cursor, ctx: _Context) -> Select:
    mailbox = _mailbox(cur, ctx)
    condstore = False
    if cur.maybe(b" ("):
        while not cur.maybe(b")"):
            if condstore:
                cur.sp()
            param = cur.atom().upper()
            if param != "CONDSTORE":  # RFC 7162 §3.1.8 (QRESYNC not offered)
                raise ParseError(f"unknown SELECT parameter {param[:30]}")
            condstore = True
    return Select(mailbox, condstore)


def _mailbox_arg(cur: Cursor, ctx: _Context) -> MailboxArg:
    return MailboxArg(_mailbox(cur, ctx))


def _create(cur: Cursor, ctx: _Context) -> MailboxArg:
    mailbox = _mailbox(cur, ctx)
    uses: tuple[str, ...] = ()
    if cur.maybe(b" (USE "):  # RFC 6154 §3: CREATE-SPECIAL-USE
        uses = flag_list(cur, storable=False)
        if any(u not in SPECIAL_USE for u in uses):
            raise ParseError("unknown special-use attribute")
        cur.expect(b")")
    return MailboxArg(mailbox, uses)


def _rename(cur: Cursor, ctx: _Context) -> Rename:
    old = _mailbox(cur, ctx)
    cur.sp()
    return Rename(old, _mailbox(cur, ctx))


def _status_items(cur: Cursor) -> tuple[str, ...]:
    return tuple(dict.fromkeys(cur.atom_list(STATUS_ITEMS, "STATUS item", empty=False)))


def _list(cur: Cursor, ctx: _Context) -> ListArgs:
    select: list[str] = []
    extended = False
    if cur.peek_char(b"("):
        select = cur.atom_list(LIST_SELECT_OPTIONS, "LIST option")
        extended = True
        cur.sp()
    reference = decode_mailbox(cur.astring(), ctx.utf8)
    cur.sp()
    if cur.maybe(b"("):
        patterns = [cur.list_mailbox()]
        while cur.maybe(b" "):
            patterns.append(cur.list_mailbox())
        cur.expect(b")")
        extended = True
    else:
        patterns = [cur.list_mailbox()]
    returns: list[str] = []
    status_items: tuple[str, ...] = ()
    if cur.maybe(b" RETURN ("):
        extended = True
        while not cur.maybe(b")"):
            if returns:
                cur.sp()
            opt = cur.atom().upper()
            if opt not in LIST_RETURN_OPTIONS:
                raise ParseError(f"unknown LIST return option {opt[:30]}")
            if opt == "STATUS":  # RFC 5819 §2
                cur.sp()
                status_items = _status_items(cur)
            returns.append(opt)
    decoded = tuple(p if ctx.utf8 else _decode_pattern(p) for p in patterns)
    return ListArgs(
        reference, decoded, frozenset(select), frozenset(returns), status_items, extended
    )


def _decode_pattern(pattern: str) -> str:
    try:
        return mutf7.decode(pattern)
    except ValueError as exc:
        raise ParseError(str(exc)) from None


def _lsub(cur: Cursor, ctx: _Context) -> ListArgs:
    reference = cur.astring()
    cur.sp()
    pattern = cur.list_mailbox()
    ref = decode_mailbox(reference, ctx.utf8) if reference else ""
    pat = pattern if ctx.utf8 else _decode_pattern(pattern)
    return ListArgs(ref, (pat,), frozenset({"SUBSCRIBED"}))


def _status(cur: Cursor, ctx: _Context) -> Status:
    mailbox = _mailbox(cur, ctx)
    cur.sp()
    return Status(mailbox, _status_items(cur))


def parse_date_time(text: bytes) -> dt.datetime:
    """date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE (RFC 9051 §9)."""
    try:
        s = text.decode("ascii")
        day, month, rest = s.split("-", 2)
        year, clock, zone = rest.split(" ")
        hh, mm, ss = (int(x) for x in clock.split(":"))
        if len(day) != 2 or not day.strip().isdigit() or len(year) != 4 or len(clock) != 8:
            raise ValueError
        if len(zone) != 5 or zone[0] not in "+-" or not zone[1:].isdigit():
            raise ValueError
        offset = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
        tz = dt.timezone(-offset if zone[0] == "-" else offset)
        month_no = MONTHS.index(month.upper()) + 1
        return dt.datetime(int(year), month_no, int(day), hh, mm, ss, tzinfo=tz)
    except ValueError:
        raise ParseError("bad date-time") from None


def _append(cur: Cursor, ctx: _Context) -> Append:
    mailbox = _mailbox(cur, ctx)
    cur.sp()
    flags: tuple[str, ...] = ()
    date = None
    if cur.peek_char(b"("):
        flags = flag_list(cur)
        cur.sp()
    if cur.peek_char(b'"'):
        date = parse_date_time(cur.quoted_bytes())
        cur.sp()
    if cur.maybe(b"UTF8 ("):  # RFC 6855 §4: append-data =/ "UTF8" SP "(" literal8 ")"
        lit = cur.literal()
        if not lit.binary:
            raise ParseError("UTF8 data must be a literal8")
        cur.expect(b")")
        return Append(mailbox, flags, date, lit.data, binary=False)
    lit = cur.literal()
    return Append(mailbox, flags, date, lit.data, lit.binary)


def _fetch(cur: Cursor, ctx: _Context) -> Fetch:
    seqset = sequence_set(cur)
    cur.sp()
    atts = parse_fetch_atts(cur)
    changedsince = None
    vanished = False
    if cur.maybe(b" ("):  # fetch-modifiers, RFC 7162 §3.1.4.1 / §3.2.6
        seen: set[str] = set()
        while not cur.maybe(b")"):
            if seen:
                cur.sp()
            mod = cur.atom().upper()
            if mod == "CHANGEDSINCE" and mod not in seen:
                cur.sp()
                changedsince = cur.number()
            elif mod == "VANISHED" and ctx.uid and mod not in seen:
                vanished = True
            else:
                raise ParseError(f"bad FETCH modifier {mod[:30]}")
            seen.add(mod)
        if vanished and changedsince is None:
            raise ParseError("VANISHED needs CHANGEDSINCE")
    return Fetch(seqset, atts, changedsince, vanished)


def _store(cur: Cursor, ctx: _Context) -> Store:
    seqset = sequence_set(cur)
    cur.sp()
    unchangedsince = None
    if cur.maybe(b"(UNCHANGEDSINCE "):  # RFC 7162 §3.1.3
        unchangedsince = cur.number()
        cur.expect(b") ")
    mode = "add" if cur.maybe(b"+") else "remove" if cur.maybe(b"-") else "set"
    cur.expect(b"FLAGS")
    silent = cur.maybe(b".SILENT")
    cur.sp()
    if cur.peek_char(b"("):
        flags = flag_list(cur)
    else:
        items = [_flag(cur, True)]
        while cur.maybe(b" "):
            items.append(_flag(cur, True))
        flags = tuple(dict.fromkeys(items))
    return Store(seqset, mode, silent, flags, unchangedsince)


def _copy(cur: Cursor, ctx: _Context) -> CopyArgs:
    seqset = sequence_set(cur)
    cur.sp()
    return CopyArgs(seqset, _mailbox(cur, ctx))


def _expunge(cur: Cursor, ctx: _Context) -> UidExpunge:
    return UidExpunge(sequence_set(cur))  # only reached as UID EXPUNGE (RFC 4315 §2.1)


def _search(cur: Cursor, ctx: _Context) -> SearchArgs:
    return parse_search(cur)


_PARSERS: dict[str, Callable[[Cursor, _Context], CommandArgs]] = {
    "LOGIN": _login,
    "AUTHENTICATE": _authenticate,
    "ENABLE": _enable,
    "ID": _id,
    "SELECT": _select,
    "EXAMINE": _select,
    "CREATE": _create,
    "DELETE": _mailbox_arg,
    "SUBSCRIBE": _mailbox_arg,
    "UNSUBSCRIBE": _mailbox_arg,
    "RENAME": _rename,
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy,
    "MOVE": _copy,
    "EXPUNGE": _expunge,
    "SEARCH": _search,
}


def takes_literal(first_line: bytes) -> bool:
    """Whether the command a line starts could carry a literal: a known
    command with arguments (the reader answers BAD at once otherwise,
    instead of "+ Ready", RFC 9051 §7.5)."""
    words = first_line.split(b" ", 3)
    if len(words) < 2:
        return False
    name = words[1].upper().decode("ascii", "replace")
    if name == "UID":
        return len(words) > 2 and words[2].upper().decode("ascii", "replace") in UID_COMMANDS
    return name in _PARSERS

"""IMAP command grammar (pigeon.proto.imap.grammar and its parts), with RFC 9051 / 3501 examples."""

from __future__ import annotations

import datetime as dt

import pytest

from pigeon.proto.imap.commands import (
    Append,
    Authenticate,
    Command,
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
from pigeon.proto.imap.fetchspec import FetchAtt, Section
from pigeon.proto.imap.grammar import parse_command
from pigeon.proto.imap.lexer import Literal, ParseError, RawCommand
from pigeon.proto.imap.searchparse import (
    All,
    And,
    DateKey,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    Not,
    Or,
    SearchArgs,
    SeqKey,
    SizeKey,
    TextKey,
)
from pigeon.proto.imap.seqset import SequenceSet, compress, parse_sequence_set


def parse(line: str, *literals: bytes, utf8: bool = False) -> Command:
    segments = line.encode().split(b"\x01")  # \x01 marks where a literal goes
    assert len(segments) == len(literals) + 1
    return parse_command(RawCommand(tuple(segments), tuple(Literal(x) for x in literals)), utf8)


def bad(line: str, *literals: bytes, utf8: bool = False) -> None:
    with pytest.raises(ParseError):
        parse(line, *literals, utf8=utf8)


@pytest.mark.parametrize(
    "line",
    ["a CAPABILITY", "a noop", "a LOGOUT", "a STARTTLS", "a CHECK", "a CLOSE", "a UNSELECT"]
    + ["a EXPUNGE", "a IDLE", "a NAMESPACE"],
)
def test_commands_without_arguments(line: str) -> None:
    cmd = parse(line)
    assert cmd.args is None and cmd.name == line.split()[1].upper()
    bad(line + " extra")


def test_login_forms() -> None:
    assert parse("a001 LOGIN SMITH SESAME").args == Login("SMITH", b"SESAME")
    assert parse('a LOGIN "fred smith" "p\\"w"').args == Login("fred smith", b'p"w')
    assert parse("a LOGIN \x01 \x01", b"fred", b"\xffbin").args == Login("fred", b"\xffbin")
    bad("a LOGIN fred")
    bad("a LOGIN fred  pass")


def test_authenticate_with_and_without_initial_response() -> None:
    assert parse("a AUTHENTICATE plain").args == Authenticate("PLAIN", None)
    assert parse("a AUTHENTICATE PLAIN =").args == Authenticate("PLAIN", b"")
    assert parse("a AUTHENTICATE PLAIN AGEAYg==").args == Authenticate("PLAIN", b"\x00a\x00b")
    bad("a AUTHENTICATE PLAIN !!")


def test_enable_and_id() -> None:
    assert parse("t ENABLE condstore utf8=accept").args == Enable(("CONDSTORE", "UTF8=ACCEPT"))
    bad("t ENABLE")
    assert parse("a023 ID NIL").args == Id(None)
    assert parse('a ID ("name" "sodr" "version" NIL)').args == Id(
        (("name", "sodr"), ("version", None))
    )


def test_select_examine_condstore() -> None:
    assert parse("A142 SELECT INBOX").args == Select("INBOX")
    assert parse("a select inbox").args == Select("INBOX")
    assert parse("a select Inbox/Sub").args == Select("INBOX/Sub")
    assert parse("a select INBOXES").args == Select("INBOXES")
    assert parse("a EXAMINE blurdybloop (CONDSTORE)").args == Select("blurdybloop", True)
    bad("a SELECT INBOX (QRESYNC (1 2))")


def test_mailbox_commands() -> None:
    assert parse("A003 CREATE owatagusiam/").args == MailboxArg("owatagusiam/")
    assert parse("a CREATE Sent (USE (\\Sent))").args == MailboxArg("Sent", ("\\Sent",))
    assert parse("A683 DELETE blurdybloop").args == MailboxArg("blurdybloop")
    assert parse("A683 RENAME blurdybloop sarasoop").args == Rename("blurdybloop", "sarasoop")
    assert parse("A002 SUBSCRIBE #news.comp.mail.mime").args == MailboxArg("#news.comp.mail.mime")
    assert parse("a UNSUBSCRIBE \x01", b"a b").args == MailboxArg("a b")
    # RFC 3501 §5.1.3 example, modified UTF-7
    cmd = parse("a CREATE ~peter/mail/&U,BTFw-/&ZeVnLIqe-")
    assert cmd.args == MailboxArg("~peter/mail/台北/日本語")
    bad("a CREATE &Jjo!")  # RFC 3501: not valid modified UTF-7
    assert parse('a CREATE "台北"', utf8=True).args == MailboxArg("台北")


def test_list_forms() -> None:
    assert parse('A101 LIST "" ""').args == ListArgs("", ("",))
    assert parse('A102 LIST #news.comp.mail.misc ""').args == ListArgs(
        "#news.comp.mail.misc", ("",)
    )
    assert parse("a LIST ~/Mail/ %").args == ListArgs("~/Mail/", ("%",))
    # RFC 5258 §5 examples
    assert parse('A02 LIST (SUBSCRIBED) "" "*"').args == ListArgs(
        "", ("*",), frozenset({"SUBSCRIBED"}), extended=True
    )
    cmd = parse('a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" "Sent*") RETURN (CHILDREN)')
    assert cmd.args == ListArgs(
        "",
        ("INBOX", "Sent*"),
        frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}),
        frozenset({"CHILDREN"}),
        extended=True,
    )
    cmd = parse('a LIST "" % RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN))')
    assert isinstance(cmd.args, ListArgs)
    assert cmd.args.status_items == ("MESSAGES", "UNSEEN")
    assert cmd.args.return_options == {"SPECIAL-USE", "STATUS"}
    assert parse('a LSUB "" *').args == ListArgs("", ("*",), frozenset({"SUBSCRIBED"}))
    bad('a LIST (BOGUS) "" *')
    bad('a LIST "" * RETURN (BOGUS)')


def test_status() -> None:
    cmd = parse("A042 STATUS blurdybloop (UIDNEXT MESSAGES)")
    assert cmd.args == Status("blurdybloop", ("UIDNEXT", "MESSAGES"))
    assert parse("a STATUS INBOX (SIZE DELETED HIGHESTMODSEQ recent)").args == Status(
        "INBOX", ("SIZE", "DELETED", "HIGHESTMODSEQ", "RECENT")
    )
    bad("a STATUS INBOX ()")
    bad("a STATUS INBOX (BOGUS)")


def test_append_flags_and_date() -> None:
    msg = b"Date: x\r\n\r\nhi\r\n"
    cmd = parse(
        'A003 APPEND saved-messages (\\Seen $Label1) "17-Jul-1996 02:44:25 -0700" \x01', msg
    )
    assert cmd.args == Append(
        "saved-messages",
        ("\\Seen", "$Label1"),
        dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=dt.timezone(-dt.timedelta(hours=7))),
        msg,
    )
    assert parse('a APPEND INBOX " 1-Feb-2024 10:00:00 +0000" \x01', msg).args.internaldate.day == 1  # type: ignore[union-attr]
    assert parse("a APPEND INBOX \x01", msg).args == Append("INBOX", (), None, msg)
    bad("a APPEND INBOX (\\Recent) \x01", msg)  # \Recent cannot be set
    # RFC 6855 §4: UTF8 (literal8)
    utf8 = parse_command(
        RawCommand((b"a APPEND INBOX UTF8 (", b")"), (Literal("Subject: é".encode(), binary=True),))
    )
    assert utf8.args == Append("INBOX", (), None, "Subject: é".encode())
    with pytest.raises(ParseError):
        parse_command(RawCommand((b"a APPEND INBOX UTF8 (", b")"), (Literal(b"x"),)))
    bad('a APPEND INBOX "1-Feb-2024 10:00:00 +0000" \x01', msg)  # day not fixed width
    bad('a APPEND INBOX "31-Feb-2024 10:00:00 +0000" \x01', msg)
    bad('a APPEND INBOX "hello"')


def test_fetch_macros_and_attributes() -> None:
    cmd = parse("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])")
    assert cmd.args == Fetch(
        SequenceSet(((2, 4),)),
        (FetchAtt("FLAGS"), FetchAtt("BODY[]", Section((), "HEADER.FIELDS", ("DATE", "FROM")))),
    )
    all_ = parse("a FETCH 1 all").args
    assert isinstance(all_, Fetch)
    assert [a.name for a in all_.atts] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]
    full = parse("a FETCH 1 FULL").args
    assert isinstance(full, Fetch) and full.atts[-1] == FetchAtt("BODY")
    fast = parse("a FETCH 1 FAST").args
    assert isinstance(fast, Fetch) and len(fast.atts) == 3
    one = parse("a FETCH 1:* body.peek[1.2.3.MIME]<10.20>").args
    assert isinstance(one, Fetch)
    att = one.atts[0]
    assert att == FetchAtt("BODY[]", Section((1, 2, 3), "MIME"), (10, 20), peek=True)
    assert att.response_name() == "BODY[1.2.3.MIME]<10>"
    assert not att.sets_seen
    assert FetchAtt("BODY[]", Section()).sets_seen
    assert FetchAtt("BODY[]", Section()).response_name() == "BODY[]"
    m = parse("a UID FETCH 1:* (BINARY.PEEK[1] BINARY.SIZE[2] MODSEQ) (CHANGEDSINCE 12345)")
    assert m.uid and isinstance(m.args, Fetch) and m.args.changedsince == 12345
    assert m.args.atts[0].response_name() == "BINARY[1]"
    assert m.args.atts[1].response_name() == "BINARY.SIZE[2]"
    v = parse("a UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)").args
    assert isinstance(v, Fetch) and v.vanished
    for text in [
        "a FETCH 1 (FLAGS",
        "a FETCH 1 BODY[MIME]",  # MIME needs a part
        "a FETCH 1 BODY[1.]",
        "a FETCH 1 BODY[0]",
        "a FETCH 1 BODY[HEADER.FIELDS]",
        "a FETCH 1 BODY[]<1.0>",
        "a FETCH 1 BINARY[TEXT]",
        "a FETCH 0 FLAGS",
        "a FETCH 1 ALLX",
        "a FETCH 1 FLAGS (VANISHED)",  # VANISHED is UID FETCH only
        "a UID FETCH 1 FLAGS (VANISHED)",  # and needs CHANGEDSINCE
    ]:
        bad(text)


def test_store_forms() -> None:
    cmd = parse("A003 STORE 2:4 +FLAGS (\\Deleted)")
    assert cmd.args == Store(SequenceSet(((2, 4),)), "add", False, ("\\Deleted",))
    assert parse("a STORE 1 -flags.silent \\seen $Junk").args == Store(
        SequenceSet(((1, 1),)), "remove", True, ("\\Seen", "$Junk")
    )
    assert parse("a UID STORE 1:* (UNCHANGEDSINCE 320162338) FLAGS ()").args == Store(
        SequenceSet(((1, None),)), "set", False, (), 320162338
    )
    bad("a STORE 1 FLAGS (\\Recent)")
    bad("a STORE 1 XFLAGS (\\Seen)")


def test_copy_move_uid_expunge() -> None:
    assert parse("A003 COPY 2:4 MEETING").args == CopyArgs(SequenceSet(((2, 4),)), "MEETING")
    m = parse("a UID MOVE 42:69 foo")
    assert m.uid and m.name == "MOVE"
    e = parse("A003 UID EXPUNGE 3000:3002")
    assert e.uid and e.args == UidExpunge(SequenceSet(((3000, 3002),)))
    bad("a UID NOOP")
    bad("a UID LOGIN a b")


def test_search_keys() -> None:
    a = parse('A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"').args
    assert a == SearchArgs(
        And(
            (
                FlagKey("\\Flagged"),
                DateKey(False, "SINCE", dt.date(1994, 2, 1)),
                Not(HeaderKey("From", "Smith")),
            )
        )
    )
    a = parse("a SEARCH CHARSET UTF-8 TEXT \x01", "Grüße".encode()).args
    assert isinstance(a, SearchArgs) and a.charset == "UTF-8" and a.charset_supported
    assert a.key == TextKey(True, "Grüße")
    iso = parse("a SEARCH CHARSET ISO-8859-1 ALL").args
    assert isinstance(iso, SearchArgs) and not iso.charset_supported
    a = parse("a UID SEARCH RETURN () OR (SEEN LARGER 5) UID 1:* MODSEQ 7").args
    assert isinstance(a, SearchArgs) and a.return_options == {"ALL"}
    assert a.key == And(
        (
            Or(And((FlagKey("\\Seen"), SizeKey(True, 5))), SeqKey(SequenceSet(((1, None),)), True)),
            ModSeqKey(7),
        )
    )
    a = parse('a SEARCH MODSEQ "/flags/\\\\draft" all 620162338').args
    assert isinstance(a, SearchArgs) and a.key == ModSeqKey(620162338)
    assert parse("a SEARCH new").args == SearchArgs(
        And((FlagKey("\\Recent"), FlagKey("\\Seen", False)))
    )
    assert parse("a SEARCH 2,4:* keyword $Junk unkeyword foo").args == SearchArgs(
        And(
            (
                SeqKey(SequenceSet(((2, 2), (4, None)))),
                FlagKey("$Junk"),
                FlagKey("foo", False),
            )
        )
    )
    assert parse('a SEARCH SENTON "5-Mar-2020" SMALLER 10 ALL BODY x').args == SearchArgs(
        And(
            (
                DateKey(True, "ON", dt.date(2020, 3, 5)),
                SizeKey(False, 10),
                All(),
                TextKey(False, "x"),
            )
        )
    )
    for text in [
        "a SEARCH",
        "a SEARCH BOGUS",
        "a SEARCH SINCE 1-Foo-2020",
        "a SEARCH SINCE 32-Jan-2020",
        "a SEARCH OR SEEN",
        "a SEARCH RETURN (BOGUS) ALL",
        "a SEARCH (SEEN",
        "a SEARCH " + "(" * 100 + "ALL" + ")" * 100,
        "a SEARCH " + "NOT " * 100 + "ALL",
    ]:
        bad(text)


def test_sequence_sets() -> None:
    s = parse_sequence_set("1,3:5,7:*")
    assert s.ranges(10) == [(1, 1), (3, 5), (7, 10)]
    assert parse_sequence_set("4:2").ranges(9) == [(2, 4)]
    assert parse_sequence_set("*:4").ranges(3) == [(3, 4)]  # "*" below the start
    assert s.contains(4, 10) and not s.contains(6, 10)
    assert s.members([2, 3, 7, 100, 200]) == [3, 7, 100, 200]
    assert parse_sequence_set("1:*").members([]) == []
    assert str(s) == "1,3:5,7:*"
    for text in ["", "0", "1,,2", "1:", "a", "01", "4294967296", "1:2:3"]:
        with pytest.raises(ValueError):
            parse_sequence_set(text)
    assert compress([1, 2, 3, 5, 7, 8]) == "1:3,5,7:8"
    assert compress([]) == ""


def test_non_utf8_text_is_refused() -> None:
    with pytest.raises(ParseError):
        parse_command(RawCommand((b'a LOGIN "\xff" x',), ()))

"""IMAP response encoding (pigeon.proto.imap.response)."""

from __future__ import annotations

import datetime as dt

from pigeon.proto.imap import response as R


def test_strings_quoted_or_literal_by_content() -> None:
    assert R.encode("hello") == b'"hello"'
    assert R.encode('a"b\\c') == b'"a\\"b\\\\c"'
    assert R.encode("two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert R.encode(b"nul\x00") == b"{4}\r\nnul\x00"
    assert R.encode("Grüße") == b"{7}\r\nGr\xc3\xbc\xc3\x9fe"  # 8-bit to an IMAP4rev1 client
    assert R.encode("Grüße", utf8=True) == '"Grüße"'.encode()
    long = "x" * (R.QUOTED_MAX + 1)
    assert R.encode(long).startswith(b"{1025}\r\n")
    assert R.encode("") == b'""'


def test_nil_numbers_atoms_lists_literal8() -> None:
    assert R.encode(None) == b"NIL"
    assert R.encode(42) == b"42"
    assert R.encode([R.Atom("\\Seen"), "x", None, [1, 2]]) == b'(\\Seen "x" NIL (1 2))'
    assert R.encode([]) == b"()"
    assert R.encode(R.Literal8(b"\x00\x01")) == b"~{2}\r\n\x00\x01"


def test_astring_and_mailbox_names() -> None:
    assert R.astring("INBOX") == b"INBOX"
    assert R.astring("a b") == b'"a b"'
    assert R.astring("NIL") == b'"NIL"'
    assert R.mailbox("Entwürfe", utf8=False) == b'"Entw&APw-rfe"'
    assert R.mailbox("Entwürfe", utf8=True) == '"Entwürfe"'.encode()


def test_status_lines_and_codes() -> None:
    assert R.tagged("a1", "OK", "LOGIN completed") == b"a1 OK LOGIN completed\r\n"
    assert R.tagged("a", "OK", "done", R.code("UIDVALIDITY", 3857529045)) == (
        b"a OK [UIDVALIDITY 3857529045] done\r\n"
    )
    assert R.tagged("a", "NO", "evil\r\n* BYE injected") == b"a NO evil * BYE injected\r\n"
    assert R.tagged("a", "NO", "[x] text") == b"a NO  [x] text\r\n"  # never read as a code
    assert R.code("APPENDUID", 38505, 3955) == "APPENDUID 38505 3955"
    assert R.code("COPYUID", 38505, R.Atom("304,319:320"), R.Atom("3956:3958")) == (
        "COPYUID 38505 304,319:320 3956:3958"
    )
    assert (
        R.code("BADCHARSET", [R.Atom("UTF-8"), R.Atom("US-ASCII")]) == "BADCHARSET (UTF-8 US-ASCII)"
    )
    assert R.code("CAPABILITY", R.Atom("IMAP4rev2"), R.Atom("IDLE")) == "CAPABILITY IMAP4rev2 IDLE"
    assert R.untagged_status("OK", "hi", "ALERT") == b"* OK [ALERT] hi\r\n"
    assert R.bye("Autologout") == b"* BYE Autologout\r\n"
    assert R.untagged(172, R.Atom("EXISTS")) == b"* 172 EXISTS\r\n"
    assert R.continuation() == b"+ Ready for literal data\r\n"
    assert R.continuation_data(b"") == b"+ \r\n"
    assert R.continuation_data(b"abc") == b"+ YWJj\r\n"


def test_fetch_list_status_search_responses() -> None:
    when = dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=dt.timezone(-dt.timedelta(hours=7)))
    assert R.date_time(when) == "17-Jul-1996 02:44:25 -0700"
    assert R.date_time(dt.datetime(2024, 2, 1, 0, 0, 0)) == " 1-Feb-2024 00:00:00 +0000"
    out = R.fetch_response(
        12,
        [
            ("FLAGS", R.flags(["\\Seen"])),
            ("INTERNALDATE", R.date_time(when)),
            ("RFC822.SIZE", 44827),
            ("BODY[]<0>", b"a\r\nb"),
        ],
    )
    assert out == (
        b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" '
        b"RFC822.SIZE 44827 BODY[]<0> {4}\r\na\r\nb)\r\n"
    )
    assert R.list_response(["\\HasNoChildren", "\\Sent"], "/", "Sent", False) == (
        b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"\r\n'
    )
    assert R.list_response([], None, "x", False, verb="LSUB") == b'* LSUB () NIL "x"\r\n'
    assert R.status_response("blurdybloop", [("MESSAGES", 231), ("UIDNEXT", 44292)], False) == (
        b'* STATUS "blurdybloop" (MESSAGES 231 UIDNEXT 44292)\r\n'
    )
    assert R.search_response([2, 84, 882]) == b"* SEARCH 2 84 882\r\n"
    assert R.search_response([]) == b"* SEARCH\r\n"
    assert R.search_response([2], modseq=917162500) == b"* SEARCH 2 (MODSEQ 917162500)\r\n"
    assert R.esearch_response("A282", True, [("MIN", 2), ("COUNT", 3)]) == (
        b'* ESEARCH (TAG "A282") UID MIN 2 COUNT 3\r\n'
    )

"""SEARCH evaluation (pigeon.proto.imap.search) over messages parsed from real commands."""

from __future__ import annotations

import datetime as dt

import pytest

from pigeon.proto.imap.commands import Command
from pigeon.proto.imap.grammar import parse_command
from pigeon.proto.imap.lexer import Literal, RawCommand
from pigeon.proto.imap.search import Message, SearchContext, matches, needs_file
from pigeon.proto.imap.searchparse import SearchArgs, SearchKey

UTC = dt.UTC
MESSAGES = {
    1: (
        b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\n"
        b"Subject: =?UTF-8?B?R3LDvMOfZQ==?= from Alice\r\n"
        b"Date: Mon, 2 Dec 2024 23:30:00 -0800\r\nX-Tag: \r\n\r\nHello Bob\r\n"
    ),
    2: (
        b"From: carol@example.test\r\nSubject: invoice\r\nDate: garbage\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Stra=DFe and PAY NOW\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nPGI+w6l0w6k8L2I+\r\n--b--\r\n"
    ),
    3: b"Subject: no date\r\n\r\n\xff\xfe broken 8-bit body\r\n",
}
FLAGS = {1: {"\\Seen", "$Important"}, 2: {"\\Flagged", "\\Deleted"}, 3: set()}
DATES = {
    1: dt.datetime(2024, 12, 3, 8, 0, tzinfo=UTC),
    2: dt.datetime(2024, 12, 5, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    3: dt.datetime(2025, 1, 1, 0, 0, tzinfo=UTC),
}


class Counting:
    reads = 0


def message(seq: int, counter: type[Counting] = Counting) -> Message:
    data = MESSAGES[seq]

    def load() -> bytes:
        counter.reads += 1
        return data

    return Message(
        seq=seq,
        uid=seq * 10,
        flags=frozenset(FLAGS[seq]),
        size=len(data),
        internaldate=DATES[seq],
        modseq=100 + seq,
        load=load,
    )


def key_of(criteria: str, literal: bytes | None = None) -> SearchKey:
    line = f"t SEARCH {criteria}".encode()
    raw = (
        RawCommand((line, b""), (Literal(literal),))
        if literal is not None
        else RawCommand((line,), ())
    )
    cmd = parse_command(raw)
    assert isinstance(cmd, Command) and isinstance(cmd.args, SearchArgs)
    return cmd.args.key


def search(criteria: str, literal: bytes | None = None) -> list[int]:
    key = key_of(criteria, literal)
    ctx = SearchContext(largest_seq=3, largest_uid=30)
    return [seq for seq in MESSAGES if matches(key, message(seq), ctx)]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("ALL", [1, 2, 3]),
        ("SEEN", [1]),
        ("UNSEEN", [2, 3]),
        ("FLAGGED DELETED", [2]),
        ("UNDELETED", [1, 3]),
        ("KEYWORD $important", [1]),  # keywords compare case-blind
        ("UNKEYWORD $Important", [2, 3]),
        ("NEW", []),
        ("OLD", [1, 2, 3]),
        ("2:*", [2, 3]),
        ("*", [3]),
        ("UID 20:*", [2, 3]),
        ("UID 25,10", [1]),
        ("LARGER 200", [2]),
        ("SMALLER 60", [3]),
        ("MODSEQ 102", [2, 3]),
        ("NOT SEEN", [2, 3]),
        ("OR SEEN FLAGGED", [1, 2]),
        ("OR (SEEN LARGER 1) 3", [1, 3]),
        ("NOT (OR 1 2)", [3]),
        ("BEFORE 4-Dec-2024", [1]),
        ("ON 5-Dec-2024", [2]),  # 23:59 -0500: its own calendar date
        ("SINCE 5-Dec-2024", [2, 3]),
        ("SENTON 2-Dec-2024", [1]),  # the Date: field's own zone
        ("SENTBEFORE 1-Jan-2030", [1]),  # 2 and 3 have no readable Date:
        ("SENTSINCE 3-Dec-2024", []),
        ("FROM ALICE", [1]),
        ("FROM example.test", [1, 2]),
        ('SUBJECT "from alice"', [1]),
        ('SUBJECT "GRÜSSE"', [1]),  # encoded-word decoded, casefolded (ß -> ss)
        ('HEADER X-Tag ""', [1]),  # empty string: has the field
        ('HEADER x-missing ""', []),
        ("TO bob", [1]),
        ("CC bob", []),
        ("BODY hello", [1]),
        ('BODY "straße"', [2]),  # quoted-printable, ISO-8859-1
        ('BODY "été"', [2]),  # base64, UTF-8
        ("BODY invoice", []),  # a header, not the body
        ("TEXT invoice", [2]),
        ("TEXT broken", [3]),
    ],
)
def test_search_keys(criteria: str, expected: list[int]) -> None:
    assert search(criteria) == expected


def test_search_string_in_a_utf8_literal() -> None:
    assert search("CHARSET UTF-8 SUBJECT ", "grüße".encode()) == [1]


def test_flag_only_searches_never_read_the_file() -> None:
    class Reads(Counting):
        reads = 0

    ctx = SearchContext(3, 30)
    for criteria in ["SEEN", "OR FLAGGED 2:3", "UID 1:* LARGER 5 SINCE 1-Jan-2020 MODSEQ 1"]:
        key = key_of(criteria)
        assert not needs_file(key)
        for seq in MESSAGES:
            matches(key, message(seq, Reads), ctx)
    assert Reads.reads == 0
    # a cheap key that fails first spares the read of an expensive one
    key = key_of("BODY hello SEEN")
    assert needs_file(key)
    matches(key, message(2, Reads), ctx)
    assert Reads.reads == 0


def test_a_message_is_read_once_for_several_keys() -> None:
    class Reads(Counting):
        reads = 0

    msg = message(1, Reads)
    assert matches(
        key_of('FROM alice SUBJECT "grüße" BODY bob TEXT alice'), msg, SearchContext(3, 30)
    )
    assert Reads.reads == 1


def test_header_loader_spares_reading_the_whole_file() -> None:
    loads: list[str] = []
    data = MESSAGES[1]
    msg = Message(1, 10, frozenset(), len(data), DATES[1], 1, lambda: loads.append("all") or data)
    msg.load_header = lambda: loads.append("header") or data[: data.index(b"\r\n\r\n") + 4]
    assert matches(key_of("FROM alice"), msg, SearchContext(1, 10))
    assert loads == ["header"]


def test_esearch_results() -> None:
    from pigeon.proto.imap.search import esearch_results

    opts = frozenset({"MIN", "MAX", "ALL", "COUNT"})
    assert esearch_results([2, 3, 4, 10], opts) == [
        ("MIN", 2),
        ("MAX", 10),
        ("ALL", "2:4,10"),
        ("COUNT", 4),
    ]
    assert esearch_results([], opts) == [("COUNT", 0)]  # RFC 4731 §3.1
    assert esearch_results([5], frozenset({"MIN"})) == [("MIN", 5)]


@pytest.mark.parametrize(
    ("date", "on"),
    [
        ("Mon, 2 Dec 2024 23:30:00 -0800", "2-Dec-2024"),
        ("2 Dec 24 10:00 +0000", "2-Dec-2024"),  # RFC 5322 §4.3: two-digit year
        ("Thu, 01 Jan 70 00:00:00 GMT", "1-Jan-1970"),
        ("Tuesday, 3 September 2024 08:00", "3-Sep-2024"),
    ],
)
def test_sent_dates_as_written(date: str, on: str) -> None:
    data = f"Date: {date}\r\n\r\nx".encode()
    msg = Message(1, 1, frozenset(), len(data), DATES[1], 1, lambda: data)
    assert matches(key_of(f"SENTON {on}"), msg, SearchContext(1, 1))
    bad = Message(1, 1, frozenset(), 1, DATES[1], 1, lambda: b"Date: 31 Feb 2024\r\n\r\n")
    assert not matches(key_of(f"SENTON {on}"), bad, SearchContext(1, 1))

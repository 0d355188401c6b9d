"""Content changes of verdicts (policy/edits.py): header edits on a header
section, and several verdicts' changes combined. Applied to a real spool:
tests/unit/queue/test_spool_replace_head.py."""

from __future__ import annotations

import pytest

from pigeon.policy.api import HeaderEdit, NewSender, Verdict
from pigeon.policy.edits import content_changes, edit_header_section

SECTION = (
    b"Received: from client\r\n\tby mx; Thu, 1 Jan 2026 00:00:00 +0000\r\n"
    b"From: a@example.test\r\n"
    b"Subject: hello\r\n"
    b"X-Tag: one\r\n"
    b"X-Tag: two\r\n"
)


def test_add_goes_last_and_insert_before_the_index():
    edits = [
        HeaderEdit("add", "X-Last", "end"),
        HeaderEdit("insert", "X-Top", "top", 0),
        HeaderEdit("insert", "X-Second", "two", 2),  # counted after X-Top went in
        HeaderEdit("insert", "X-Past", "past", 99),
    ]
    out = edit_header_section(SECTION, edits)
    names = [line.split(b":")[0] for line in out.split(b"\r\n") if line and line[:1] != b"\t"]
    assert names == [
        b"X-Top",
        b"Received",
        b"X-Second",
        b"From",
        b"Subject",
        b"X-Tag",
        b"X-Tag",
        b"X-Last",
        b"X-Past",
    ]
    assert b"\tby mx; Thu" in out  # a folded field moves as one


def test_change_counts_fields_of_that_name_and_empty_removes():
    out = edit_header_section(
        SECTION,
        [
            HeaderEdit("change", "x-tag", "TWO", 2),  # names compared without case
            HeaderEdit("change", "Subject", "", 1),  # removed
            HeaderEdit("change", "X-New", "added", 1),  # no such field: added
            HeaderEdit("change", "X-Gone", "", 1),  # no such field, empty: nothing
        ],
    )
    assert b"X-Tag: one\r\nx-tag: TWO\r\n" in out  # written as the edit names it
    assert b"Subject" not in out and out.endswith(b"X-New: added\r\n")


def test_header_edits_are_checked_like_header_fields():
    with pytest.raises(ValueError):
        HeaderEdit("add", "X-Bad", "line\r\nInjected: yes")
    with pytest.raises(ValueError):
        HeaderEdit("add", "Bad Name", "x")
    with pytest.raises(ValueError):
        HeaderEdit("remove", "X-Tag", "x")
    assert HeaderEdit("change", "X-Tag", "", 1).value == ""  # empty only to remove


def test_content_changes_keep_order_and_the_last_body_and_sender():
    first = Verdict(header_edits=(HeaderEdit("add", "A", "1"),), body=b"one\r\n")
    second = Verdict(
        header_edits=(HeaderEdit("add", "B", "2"),),
        body=b"two\r\n",
        sender=NewSender(None),
    )
    combined = content_changes([first, Verdict(), second])
    assert [e.name for e in combined["header_edits"]] == ["A", "B"]
    assert combined["body"] == b"two\r\n" and combined["sender"] == NewSender(None)
    assert content_changes([Verdict()]) == {}

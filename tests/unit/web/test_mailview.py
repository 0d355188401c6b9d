"""The message views of the mailbox routes (web/mailview.py): pure, bytes in."""

from __future__ import annotations

import base64
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from pigeon.web.mailview import Query, attachment, detail, header_section, matches, summary


def message() -> bytes:
    msg = EmailMessage()
    msg["From"] = "=?utf-8?q?J=C3=B6rg?= <jorg@example.org>"
    msg["To"] = "bob@localhost"
    msg["Subject"] = "=?utf-8?b?" + base64.b64encode("Grüße".encode()).decode() + "?="
    msg.set_content("plain body café\n")
    msg.add_alternative("<p>html body</p>", subtype="html")
    msg.add_attachment(b"\x00\x01data", maintype="application", subtype="pdf", filename="r.pdf")
    return msg.as_bytes(policy=SMTP)


def test_detail_decodes_fields_bodies_and_lists_attachments():
    view = detail(message())
    assert view["from"] == "Jörg <jorg@example.org>"
    assert view["subject"] == "Grüße"
    assert view["text"] == "plain body café\n"
    assert view["html"].strip() == "<p>html body</p>"
    assert view["attachments"] == [
        {"index": 0, "filename": "r.pdf", "content_type": "application/pdf", "size": 6}
    ]
    assert ["To", "bob@localhost"] in view["headers"]
    assert attachment(message(), 0) == ("application/pdf", "r.pdf", b"\x00\x01data")
    with pytest.raises(IndexError):
        attachment(message(), 1)
    with pytest.raises(IndexError):
        attachment(message(), -1)


def test_summary_reads_the_header_section_only():
    head = header_section(message())
    assert head.endswith(b"\r\n\r\n") and b"plain body" not in head
    assert summary(head)["to"] == "bob@localhost"


def test_search_by_field_and_text():
    data = message()
    assert matches(data, Query(sender="JÖRG"))
    assert matches(data, Query(recipient="bob@", subject="grüße"))
    assert not matches(data, Query(recipient="alice"))
    assert matches(data, Query(text="CAFÉ"))
    assert matches(data, Query(text="html body"))
    assert not matches(data, Query(text="absent"))
    assert not Query()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"no header at all",
        b"From: =?bogus?x?zz?=\nSubject: \xff\xfe\n\nbody\n",
        b"Content-Type: text/plain; charset=x-unknown\n\n\xe9\n",
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\n"
        b"Subject: inner\n\nx\n--b--\n",
        b"To: <<<@@@>>>\nDate: not a date\n\n",
    ],
)
def test_malformed_messages_never_raise(data):
    view = detail(data)
    assert isinstance(view["headers"], list)
    for item in view["attachments"]:
        attachment(data, item["index"])
    summary(header_section(data))
    matches(data, Query(text="x", sender="y"))

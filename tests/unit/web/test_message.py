"""POST /api/send's body checked and built (pigeon.web.message)."""

from __future__ import annotations

import email
from email.policy import default

import pytest

from pigeon.web.message import STRUCTURED, Invalid, parse_send
from pigeon.web.send_route import _STRUCTURED


def fields(exc: pytest.ExceptionInfo[Invalid]) -> set[str]:
    return {e["field"] for e in exc.value.errors}


def test_structured_builds_a_mime_message_without_bcc():
    req = parse_send(
        {
            "from": {"name": "Ünïcode App", "address": "app@example.test"},
            "to": "alice@example.test",
            "cc": [{"address": "carol@example.test"}],
            "bcc": ["bob@example.test"],
            "subject": "Grüße",
            "text": "plain\n",
            "html": "<b>bold</b>",
            "attachments": [
                {"filename": "r.pdf", "content_type": "application/pdf", "content": "JVBERg=="}
            ],
            "headers": {"Reply-To": "help@example.test"},
        }
    )
    assert req.sender == "app@example.test" and not req.extract
    assert req.recipients == ["alice@example.test", "carol@example.test", "bob@example.test"]
    assert b"\r\n" in req.message and b"\n" not in req.message.replace(b"\r\n", b"")
    msg = email.message_from_bytes(req.message, policy=default)
    assert msg["Subject"] == "Grüße" and msg["Reply-To"] == "help@example.test"
    assert "bob" not in req.message.decode() and msg["Bcc"] is None
    assert msg.get_body(("plain",)).get_content().strip() == "plain"
    assert msg.get_body(("html",)).get_content().strip() == "<b>bold</b>"
    (part,) = list(msg.iter_attachments())
    assert part.get_filename() == "r.pdf" and part.get_content() == b"%PDF"


def test_html_only():
    req = parse_send({"from": "a@example.test", "to": ["b@example.test"], "html": "<p>x</p>"})
    assert b"Content-Type: text/html" in req.message


def test_every_problem_is_listed():
    with pytest.raises(Invalid) as exc:
        parse_send(
            {
                "to": ["no-at-sign", 3],
                "subject": "two\nlines",
                "attachments": [{"filename": "a", "content": "***"}, "x"],
                "headers": {"Bad Name": "1", "X-A": "1\r\nBcc: x@y", "Date": "now"},
                "extra": True,
            }
        )
    assert fields(exc) == {
        "from",
        "to[0]",
        "to[1]",
        "subject",
        "text",
        "attachments[0].content",
        "attachments[1]",
        "headers.Bad Name",
        "headers.X-A",
        "headers.Date",
        "extra",
    }


def test_a_recipient_is_needed():
    with pytest.raises(Invalid) as exc:
        parse_send({"from": "a@example.test", "text": "x"})
    assert fields(exc) == {"to"}


def test_raw_form():
    req = parse_send({"raw": "Subject: x\n\nbody\n"})
    assert req.extract and req.sender is None and req.recipients == []
    req = parse_send(
        {"raw": "Subject: x\n\nbody\n", "from": "a@example.test", "to": "b@example.test"}
    )
    assert not req.extract and req.sender == "a@example.test"
    assert req.recipients == ["b@example.test"]
    with pytest.raises(Invalid) as exc:
        parse_send({"raw": "", "subject": "x"})
    assert fields(exc) == {"raw", "subject"}


def test_the_documented_schema_has_the_same_fields():
    assert set(_STRUCTURED["properties"]) == set(STRUCTURED)

"""MailLog: the Postfix-like text line and the structured record behind it."""

from __future__ import annotations

import logging

import pytest

from pigeon.obs.maillog import MailLog, format_fields


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured():
    logger = logging.Logger("test.mail", level=logging.INFO)  # not in the global hierarchy
    handler = ListHandler()
    logger.addHandler(handler)
    return MailLog(logger), handler.records


def test_addresses_are_bracketed_and_values_plain():
    assert (
        format_fields({"from": "alice@example.org", "size": 1234, "nrcpt": 2}, "queued")
        == "from=<alice@example.org>, size=1234, nrcpt=2 (queued)"
    )


def test_empty_or_missing_sender_is_angle_brackets():
    assert format_fields({"from": ""}) == "from=<>"
    assert format_fields({"from": None}) == "from=<>"


def test_to_and_orig_to_are_bracketed():
    assert (
        format_fields({"to": "bob@example.test", "orig_to": "info@example.test", "relay": "local"})
        == "to=<bob@example.test>, orig_to=<info@example.test>, relay=local"
    )


def test_floats_have_two_decimals_bools_yes_no_none_left_out():
    assert (
        format_fields({"delay": 0.5234, "delays": 12.0, "tls": True, "auth": False, "relay": None})
        == "delay=0.52, delays=12.00, tls=yes, auth=no"
    )


def test_detail_alone():
    assert format_fields({}, "removed") == "(removed)"
    assert format_fields({}) == ""


def test_objects_render_with_str():
    class Addr:
        def __str__(self) -> str:
            return "a@b.test"

    assert format_fields({"to": Addr(), "dsn": Addr()}) == "to=<a@b.test>, dsn=a@b.test"


def test_log_line_and_structured_record(captured):
    maillog, records = captured
    maillog.log(
        "4F2A9C",
        {
            "to": "bob@example.test",
            "relay": "local",
            "delay": 0.5,
            "dsn": "2.0.0",
            "status": "sent",
        },
        "delivered to maildir",
    )
    (record,) = records
    assert (
        record.getMessage()
        == "4F2A9C: to=<bob@example.test>, relay=local, delay=0.50, dsn=2.0.0, status=sent (delivered to maildir)"
    )
    assert record.queue_id == "4F2A9C"
    assert record.fields == {
        "to": "bob@example.test",
        "relay": "local",
        "delay": 0.5,
        "dsn": "2.0.0",
        "status": "sent",
    }
    assert record.detail == "delivered to maildir"
    assert record.levelno == logging.INFO


def test_log_level_and_disabled_level(captured):
    maillog, records = captured
    maillog.log("Q1", {"status": "bounced"}, level=logging.WARNING)
    maillog.logger.setLevel(logging.ERROR)
    maillog.log("Q2", {"status": "sent"})
    assert [r.levelno for r in records] == [logging.WARNING]


def test_fields_are_copied(captured):
    maillog, records = captured
    fields = {"status": "deferred"}
    maillog.log("Q", fields)
    fields["status"] = "changed"
    assert records[0].fields == {"status": "deferred"}


def test_connect_and_disconnect(captured):
    maillog, records = captured
    maillog.connect("mail.example.org", "192.0.2.7")
    maillog.connect(None, "2001:db8::1")
    maillog.disconnect(
        "mail.example.org",
        "192.0.2.7",
        {"ehlo": 1, "mail": 1, "rcpt": (1, 2), "data": 1, "quit": 1},
    )
    maillog.disconnect(None, "192.0.2.8", {"ehlo": 1, "quit": 1})
    assert [r.getMessage() for r in records] == [
        "connect from mail.example.org[192.0.2.7]",
        "connect from unknown[2001:db8::1]",
        "disconnect from mail.example.org[192.0.2.7] ehlo=1 mail=1 rcpt=1/2 data=1 quit=1 commands=5/6",
        "disconnect from unknown[192.0.2.8] ehlo=1 quit=1 commands=2",
    ]
    assert records[2].fields == {
        "event": "disconnect",
        "client_name": "mail.example.org",
        "client_ip": "192.0.2.7",
        "ehlo": 1,
        "mail": 1,
        "rcpt": [1, 2],
        "data": 1,
        "quit": 1,
        "commands": [5, 6],
    }
    assert records[0].fields == {
        "event": "connect",
        "client_name": "mail.example.org",
        "client_ip": "192.0.2.7",
    }


def test_default_logger_is_pigeon_mail():
    assert MailLog().logger is logging.getLogger("pigeon.mail")


def test_public_exports():
    import pigeon.obs

    assert pigeon.obs.__all__ == ["MailLog", "setup_logging"]


def test_reject_lines_keep_postfix_field_meanings(captured):
    from pigeon.proto import reply as R

    maillog, records = captured
    maillog.reject(
        None,
        "RCPT",
        "192.0.2.1",
        R.RELAY_DENIED,
        sender="s@a.example",
        recipient="x@y.example",
        proto="ESMTP",
        helo="h.example",
    )
    maillog.reject(
        None,
        "MAIL",
        "192.0.2.1",
        R.SENDER_NOT_OWNED,
        sender="s@a.example",
        proto="ESMTP",
        helo="h.example",
    )
    maillog.reject(
        None,
        "RCPT",
        "192.0.2.1",
        R.UNKNOWN_USER,
        sender="",
        recipient="u@b.example",
        proto="SMTP",
        helo="h",
    )
    maillog.reject(
        "01ABC",
        "END-OF-MESSAGE",
        "2001:db8::1",
        R.MESSAGE_TOO_BIG,
        sender="s@a.example",
        proto="ESMTP",
        helo="h",
    )
    maillog.reject(None, "CONNECT", "192.0.2.1", R.too_many_connections("mx.example"))
    assert [r.getMessage() for r in records] == [
        "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 Error: relay access denied; "
        "from=<s@a.example> to=<x@y.example> proto=ESMTP helo=<h.example>",
        "NOQUEUE: reject: MAIL from unknown[192.0.2.1]: 553 5.7.1 Error: sender address not owned "
        "by the authenticated user; from=<s@a.example> proto=ESMTP helo=<h.example>",
        "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 550 5.1.1 Error: recipient address "
        "rejected: user unknown; from=<> to=<u@b.example> proto=SMTP helo=<h>",
        "01ABC: reject: END-OF-MESSAGE from unknown[2001:db8::1]: 552 5.3.4 Error: message size "
        "exceeds fixed limit; from=<s@a.example> proto=ESMTP helo=<h>",
        "NOQUEUE: reject: CONNECT from unknown[192.0.2.1]: 421 4.7.0 mx.example Error: too many "
        "connections; proto=SMTP",
    ]
    assert records[1].fields["from"] == "s@a.example" and records[1].fields["to"] is None
    assert records[0].fields["stage"] == "RCPT" and records[0].queue_id == "NOQUEUE"


def test_sasl_failure_and_session_ends(captured):
    maillog, records = captured
    maillog.sasl_failed(None, "192.0.2.1", "PLAIN")
    maillog.session_end("too many errors", "RCPT", None, "192.0.2.1")
    maillog.session_end("timeout", "DATA", None, "192.0.2.1")
    assert [r.getMessage() for r in records] == [
        "warning: unknown[192.0.2.1]: SASL PLAIN authentication failed: authentication failure",
        "too many errors after RCPT from unknown[192.0.2.1]",
        "timeout after DATA from unknown[192.0.2.1]",
    ]
    assert records[0].levelno == logging.WARNING
    # fail2ban's postfix-sasl pattern (its prefix stripped) matches the line as is.
    import re

    # (its inline (?i) is written as an explicit character choice: Python wants flags first)
    assert re.match(
        r"^warning: [-._\w]+\[(?P<host>[\d.]+)\]: SASL ([Ll][Oo][Gg][Ii][Nn]|PLAIN|"
        r"(?:CRAM|DIGEST)-MD5) authentication failed(:[ A-Za-z0-9+/:]*={0,2})?\s*$",
        records[0].getMessage(),
    )

"""The From: check for logged-in users sees the whole header section, read tolerantly.

Before, only the first 64 KiB of the spool were parsed, with a strict
parser: a From: field after 64 KiB of other fields, or written `From :`,
was not seen and the forged message was delivered. The header section is
now bounded (limits.header_size, 552 5.3.4 past it) and read whole, also
when the message spilled from memory to a spool file.
"""

from __future__ import annotations

import smtplib

import pytest
from secure_helpers import CONFIG, PASSWORD, USER, add_user, insecure_context

from pigeon.queue.spool import SPILL_THRESHOLD
from pigeon.testing.live import maildir_messages, wait_for

pytestmark = pytest.mark.e2e

#: Other header fields first: more than the old 64 KiB read, less than the
#: 100 KiB limits.header_size default.
PADDING = b"".join(b"X-Padding-%05d: %s\r\n" % (i, b"p" * 60) for i in range(1000))
#: A body that makes the message spill from memory to a spool file.
BIG_BODY = b"body line\r\n" * (SPILL_THRESHOLD // 11 + 100)


@pytest.fixture
def server(pigeon_factory):
    proc = pigeon_factory(CONFIG)
    add_user(proc)
    return proc


def _submit(server, message: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP_SSL(
        "127.0.0.1", server.submissions_port, timeout=30, context=insecure_context()
    ) as s:
        s.login(USER, PASSWORD)
        assert s.mail(USER)[0] == 250
        assert s.rcpt("bob@example.test")[0] == 250
        return s.data(message)


@pytest.mark.parametrize(
    "from_line, body",
    [
        (b"From: The Boss <boss@example.test>\r\n", b"hi\r\n"),
        (b"From: The Boss <boss@example.test>\r\n", BIG_BODY),
        (b"From : boss@example.test\r\n", b"hi\r\n"),
        (b"from\t:\r\n  The Boss <boss@example.test>\r\n", BIG_BODY),
        (b"From: alice@example.test\r\nFrom: boss@example.test\r\n", b"hi\r\n"),
    ],
    ids=[
        "after-64k",
        "after-64k-spilled",
        "space-before-colon",
        "tab-folded-spilled",
        "second-from",
    ],
)
def test_forged_from_after_64k_or_written_loosely_is_refused(server, from_line, body):
    assert len(PADDING) > 65536
    code, reply = _submit(server, PADDING + b"Subject: forged\r\n" + from_line + b"\r\n" + body)
    assert (code, reply[:5]) == (553, b"5.7.1"), reply
    assert maildir_messages(server.data_dir, "bob@example.test") == []


def test_own_from_after_64k_in_a_spilled_message_is_accepted(server):
    code, reply = _submit(
        server, PADDING + f"From: Alice <{USER}>\r\n".encode() + b"Subject: mine\r\n\r\n" + BIG_BODY
    )
    assert code == 250, reply
    assert wait_for(lambda: maildir_messages(server.data_dir, "bob@example.test"))


def test_header_section_over_the_limit_is_refused(server):
    code, reply = _submit(server, PADDING * 2 + f"From: {USER}\r\n\r\nhi\r\n".encode())
    assert (code, reply[:5]) == (552, b"5.3.4"), reply

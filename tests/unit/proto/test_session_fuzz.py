"""Property test: whatever bytes arrive, in whatever pieces, the session never
raises, only ever writes well-formed reply lines, and never produces more
messages than the client sent complete DATA/BDAT transactions for."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pigeon.proto import reply as R
from pigeon.proto.events import NEED_DATA, DataFinished, DataStarted, MailRequested, RcptRequested
from pigeon.proto.server import ServerSession, SessionConfig

REPLY_LINE = re.compile(rb"[2-5][0-9][0-9][ -][^\r\n]*")

FRAGMENTS = [
    b"EHLO x\r\n",
    b"HELO y\r\n",
    b"MAIL FROM:<a@b.example>\r\n",
    b"MAIL FROM:<>\r\n",
    b"RCPT TO:<c@localhost>\r\n",
    b"DATA\r\n",
    b"BDAT 5\r\n",
    b"BDAT 3 LAST\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"\r\n.\r\n",
    b".\r\n",
    b"\n.\n",
    b"\r.\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b"\xff\xfe",
    b"Received: x\r\n",
    b"hello\r\n",
    b"..dot\r\n",
    b"QUIT\r\n",
    b"VRFY a\r\n",
    b"x" * 600,
    b"MAIL FROM:<a@b> SIZE=99999999999\r\n",
    b"RCPT TO:<d@localhost> NOTIFY=NEVER,SUCCESS\r\n",
    b"BDAT\r\n",
]

chunks = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=40)), max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=chunks, split=st.integers(min_value=1, max_value=64))
def test_session_survives_anything(pieces, split):
    session = ServerSession(SessionConfig(max_errors=1000), now=0.0)
    session.start(0.0)
    data = b"".join(pieces)
    out = session.data_to_send()
    finished = 0
    for i in range(0, len(data), split):
        if session.closed:
            break
        session.receive_data(data[i : i + split], 1.0)
        while True:
            ev = session.next_event()
            if ev is NEED_DATA:
                break
            if isinstance(ev, DataFinished):
                finished += 1
                session.respond(R.queued("X"))
            elif isinstance(ev, (MailRequested, RcptRequested, DataStarted)):
                session.respond(None)
        out += session.data_to_send()
    lines = out.split(b"\r\n")
    assert lines[-1] == b""
    for line in lines[:-1]:
        assert REPLY_LINE.fullmatch(line), line
    # One message at most per end-of-data marker or BDAT LAST the client sent.
    assert finished <= data.count(b"\r\n.\r\n") + data.count(b"LAST")

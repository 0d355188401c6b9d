"""ServerSession: greeting, pregreet, decisions, timers (integer now), shutdown, EOF."""

from __future__ import annotations

import pytest
from proto_helpers import in_data, session

from pigeon.proto import reply as R
from pigeon.proto.events import (
    NEED_DATA,
    ConnectionClosing,
    DataStarted,
    HeloReceived,
    MailRequested,
    RcptRequested,
    TransactionReset,
)
from pigeon.proto.params import MailParams, RcptParams
from pigeon.proto.server import ServerSession, SessionConfig
from pigeon.vocab.address import Address


def test_greeting_and_pregreet() -> None:
    s = ServerSession(SessionConfig(hostname="mx.example"), now=0)
    s.start(0)
    assert s.data_to_send() == b"220 mx.example ESMTP pigeon\r\n"
    s = ServerSession(SessionConfig(), now=0)
    s.receive_data(b"EHLO early\r\n", 0)
    assert s.next_event() == ConnectionClosing("pregreet")
    assert s.data_to_send() == R.PREGREET.to_bytes(enhanced=False)
    s.start(1)
    assert s.data_to_send() == b"" and s.closed and s.next_event() is NEED_DATA


def test_enhanced_codes_only_after_ehlo() -> None:
    d = session()
    d.send(b"NOOP\r\nHELO c\r\nNOOP\r\nEHLO c\r\nNOOP\r\nHELO c\r\nNOOP\r\n")
    lines = bytes(d.out).split(b"\r\n")
    assert lines[1] == b"250 Ok" and lines[3] == b"250 Ok"
    assert b"250 2.0.0 Ok" in lines
    assert lines[-2] == b"250 Ok"
    assert [e for e in d.events if isinstance(e, HeloReceived)] == [
        HeloReceived("c", False),
        HeloReceived("c", True),
        HeloReceived("c", False),
    ]


def test_decisions_pause_pipelined_input() -> None:
    d = session()
    d.auto = False
    d.send(
        b"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=10\r\nRCPT TO:<x@y.example>\r\n"
        b"RCPT TO:<z@y.example> NOTIFY=NEVER\r\nNOOP\r\n"
    )
    assert isinstance(d.events[-1], MailRequested)
    assert d.events[-1] == MailRequested(Address("a", "b.example"), MailParams(size=10))
    assert d.session.next_event() is NEED_DATA  # paused
    assert d.session.next_deadline() is None
    d.session.respond(None)
    d.pump()
    assert d.session.sender == Address("a", "b.example")
    assert d.session.mail_params == MailParams(size=10)
    assert isinstance(d.events[-1], RcptRequested)
    d.session.respond(R.RELAY_DENIED)
    d.pump()
    assert d.events[-1] == RcptRequested(Address("z", "y.example"), RcptParams(("NEVER",)))
    d.session.respond(None)
    d.pump()
    assert d.session.recipients == [(Address("z", "y.example"), RcptParams(("NEVER",)))]
    tail = bytes(d.out).split(b"250 DSN\r\n")[1]
    assert tail == (
        R.SENDER_OK.to_bytes()
        + R.RELAY_DENIED.to_bytes()
        + R.RECIPIENT_OK.to_bytes()
        + R.NOOP_OK.to_bytes()
    )
    assert d.session.errors == 1


def test_refused_mail_leaves_no_transaction() -> None:
    d = session()
    d.auto = False
    d.send(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
    d.session.respond(R.reply(550, "5.7.1", "no"))
    d.send(b"RCPT TO:<x@y.example>\r\n")
    assert bytes(d.out).endswith(R.NEED_MAIL.to_bytes())


def test_respond_without_pending_is_a_driver_bug() -> None:
    with pytest.raises(RuntimeError):
        session().session.respond(None)


def test_command_timeout_not_extended_by_partial_bytes() -> None:
    d = session(command_timeout=10)
    assert d.session.next_deadline() == 10
    d.now = 5
    d.send(b"NOOP\r\n")
    assert d.session.next_deadline() == 15
    for t in (6, 7, 8, 9):
        d.now = t
        d.send(b"N")
        assert d.session.next_deadline() == 15
    d.session.on_timer(14)
    assert not d.session.closed
    d.session.on_timer(15)
    d.pump()
    assert d.session.closed
    assert bytes(d.out).endswith(R.timeout("localhost").to_bytes(enhanced=False))
    assert d.events[-1] == ConnectionClosing("timeout")


def test_data_timeouts() -> None:
    d = in_data(data_timeout=30, data_deadline=100)
    assert d.session.next_deadline() == 30
    for t in range(20, 200, 20):
        d.now = t
        d.send(b"x")
        assert d.session.next_deadline() == min(t + 30, 100)
    d.session.on_timer(100)
    d.pump()
    assert d.kinds()[-2:] == ["DataAborted", "ConnectionClosing"]
    assert bytes(d.out).endswith(R.timeout("localhost").to_bytes())


def test_shutdown_lets_the_transaction_in_progress_or_the_next_one_finish() -> None:
    # Idle (EHLO done): nothing is said at once; the next transaction goes through.
    d = session()
    d.send(b"EHLO c\r\n")
    d.out.clear()
    d.session.shutdown()
    d.pump()
    assert bytes(d.out) == b"" and not d.session.closed
    d.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nbody\r\n.\r\n")
    assert bytes(d.out).endswith(
        R.queued("Q1").to_bytes() + R.shutting_down("localhost").to_bytes()
    )
    assert d.session.closed
    # Inside DATA: the message finishes, then 421 4.3.2 (no second transaction).
    d = in_data()
    d.session.shutdown()
    d.send(b"body\r\n")
    assert not d.session.closed
    d.send(b".\r\nMAIL FROM:<x@b.example>\r\n")
    assert bytes(d.out) == R.queued("Q1").to_bytes() + R.shutting_down("localhost").to_bytes()
    assert d.kinds() == ["DataFinished", "ConnectionClosing"]
    # After MAIL: the transaction ends with RSET just the same.
    d = session()
    d.send(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
    d.out.clear()
    d.session.shutdown()
    d.send(b"RSET\r\nNOOP\r\n")
    assert bytes(d.out).endswith(b"250 2.0.0 Ok\r\n" + R.shutting_down("localhost").to_bytes())


def test_cut_off_answers_421_4_3_2_at_once_whatever_the_state() -> None:
    # Inside DATA: the transaction is abandoned, no wait for the final dot.
    d = in_data()
    d.send(b"half a message\r\n")
    d.session.cut_off()
    d.pump()
    assert bytes(d.out) == R.shutting_down("localhost").to_bytes()
    assert bytes(d.out).startswith(b"421 4.3.2 ")
    assert d.kinds() == ["DataAborted", "ConnectionClosing"]
    assert d.session.closed and d.session.next_deadline() is None
    # While a decision is pending (the commit after the dot): the late answer is dropped.
    d = in_data()
    d.auto = False
    d.send(b"body\r\n.\r\n")
    assert d.kinds() == ["DataFinished"]
    d.session.cut_off()
    d.session.respond(R.queued("Q1"))
    d.pump()
    assert bytes(d.out) == R.shutting_down("localhost").to_bytes()
    assert d.kinds() == ["DataFinished", "TransactionReset", "ConnectionClosing"]
    # Once closed, nothing more.
    d.session.cut_off()
    assert d.session.data_to_send() == b""


def test_eof_mid_transaction() -> None:
    d = in_data()
    d.send(b"partial")
    d.session.receive_eof()
    d.pump()
    assert d.kinds() == ["DataAborted", "ConnectionClosing"]
    d = session()
    d.send(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
    d.events.clear()
    d.session.receive_eof()
    d.pump()
    assert d.events == [TransactionReset(), ConnectionClosing("client closed the connection")]


def test_eof_processes_buffered_commands_first() -> None:
    d = session()
    d.session.receive_data(b"EHLO c\r\nQUIT\r\n", 0)
    d.session.receive_eof()
    d.pump()
    assert bytes(d.out).endswith(R.closing("localhost").to_bytes())
    assert d.events[-1] == ConnectionClosing("quit")


def test_internal_error_is_a_451_not_a_traceback(monkeypatch) -> None:
    d = session()

    def boom(*a, **k):
        raise KeyError("secret internal detail")

    monkeypatch.setattr(d.session, "_cmd_noop", boom)
    d.send(b"NOOP\r\n")
    assert bytes(d.out).endswith(R.LOCAL_ERROR.to_bytes(enhanced=False))
    assert b"secret" not in bytes(d.out)
    assert d.session.closed and "secret" in d.events[-1].reason


def test_too_many_errors() -> None:
    d = session(max_errors=2)
    d.send(b"X\r\nY\r\nZ\r\nNOOP\r\n")
    assert bytes(d.out).count(b"500 ") == 3
    assert bytes(d.out).endswith(R.too_many_errors("localhost").to_bytes(enhanced=False))
    assert d.session.closed


def test_output_is_batched() -> None:
    d = session()
    s = d.session
    s.receive_data(b"NOOP\r\nNOOP\r\nNOOP\r\n", 0)
    assert s.next_event() is NEED_DATA
    assert s.data_to_send() == R.NOOP_OK.to_bytes(enhanced=False) * 3


def test_data_refused_by_driver() -> None:
    d = session()
    d.auto = False
    d.send(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
    d.session.respond(None)
    d.send(b"RCPT TO:<x@y.example>\r\n")
    d.session.respond(None)
    d.send(b"DATA\r\n")
    assert isinstance(d.events[-1], DataStarted)
    d.session.respond(R.INSUFFICIENT_STORAGE)
    d.send(b"RSET\r\n")
    assert bytes(d.out).endswith(R.INSUFFICIENT_STORAGE.to_bytes() + R.RESET_OK.to_bytes())


def test_nothing_the_peer_sends_raises() -> None:
    import random

    rng = random.Random(1)
    alphabet = [
        b"\r",
        b"\n",
        b"\r\n",
        b".",
        b"\x00",
        b"\xff",
        b"MAIL FROM:<a@b>",
        b"RCPT TO:<c@d>",
        b"DATA",
        b"BDAT 3",
        b" LAST",
        b"EHLO x",
        b"RSET",
        b"x" * 700,
        b"<",
        b">",
        b" ",
    ]
    for _ in range(300):
        d = session(max_errors=1000)
        for _ in range(40):
            d.send(b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))))
            if d.session.closed:
                break
        assert not any("internal error" in getattr(e, "reason", "") for e in d.events)


def test_a_connection_refused_at_start_gets_the_421_instead_of_the_greeting():
    """RFC 5321 §3.8: 421 at any time, then the channel closes."""
    from pigeon.proto.events import ConnectionClosing
    from pigeon.proto.server import ServerSession

    s = ServerSession(now=0.0)
    busy = R.reply(421, "4.7.0", "localhost Error: busy")
    s.start(0.0, busy)
    assert s.data_to_send() == b"421 localhost Error: busy\r\n"
    assert s.closed and s.next_event() == ConnectionClosing("refused at connect")
    with pytest.raises(ValueError):  # a 5xx at connect would need 503s until QUIT (§3.1)
        ServerSession(now=0.0).start(0.0, R.RELAY_DENIED)


@pytest.mark.parametrize("verb", [b"MAIL FROM:<a@b.example>", b"DATA", b"BDAT 5 LAST"])
def test_a_421_answer_to_a_decision_closes_the_session(verb):
    from pigeon.proto.events import ConnectionClosing

    d = session()
    d.auto = False
    setup = b"EHLO c\r\n" if verb.startswith(b"MAIL") else b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n"
    d.send(setup)
    if not verb.startswith(b"MAIL"):
        d.session.respond(None)
        d.send(b"RCPT TO:<x@y.example>\r\n")
        d.session.respond(None)
        d.pump()
    d.out.clear()
    d.send(verb + b"\r\n" + (b"hello" if verb.startswith(b"BDAT") else b""))
    d.session.respond(R.reply(421, "4.3.2", "localhost Error: closing"))
    d.pump()
    assert bytes(d.out).endswith(b"421 4.3.2 localhost Error: closing\r\n")
    assert d.session.closed
    assert isinstance(d.events[-1], ConnectionClosing)


@pytest.mark.parametrize(
    "reads, pipelining, found",
    [
        ([b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n"], True, "EHLO"),  # RFC 2920 §3.1
        ([b"HELO c\r\nMAIL FROM:<a@b.example>\r\n"], True, "HELO"),
        ([b"HELO c\r\n", b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\n"], True, "MAIL"),
        ([b"EHLO c\r\n", b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\n"], False, "MAIL"),
        ([b"EHLO c\r\n", b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\n"], True, None),
        (
            [b"EHLO c\r\n", b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<x@y.example>\r\n"],
            False,
            None,
        ),
    ],
)
def test_the_session_notes_the_first_command_pipelined_too_early(reads, pipelining, found) -> None:
    d = session(enable_pipelining=pipelining)
    for data in reads:
        d.send(data)
    assert d.session.pipelined == found


def test_drop_answers_and_closes_at_once() -> None:
    d = session()
    d.send(b"EHLO c\r\n")
    d.session.drop(R.reply(521, "5.5.1", "go away"))
    d.pump()
    assert bytes(d.out).endswith(b"521 5.5.1 go away\r\n") and d.session.closed

"""ClientSession: feed server replies, check the commands and events (no I/O, no clock)."""

from __future__ import annotations

import pytest

from pigeon.proto.client import (
    ClientConfig,
    ClientSession,
    Closed,
    ContentWanted,
    Phase,
    Ready,
    ResetDone,
    TlsReady,
    TlsRefused,
    Transaction,
    TransactionDone,
)
from pigeon.proto.params import RcptParams

EHLO_FULL = [
    "PIPELINING",
    "SIZE 10000",
    "8BITMIME",
    "SMTPUTF8",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "STARTTLS",
]


def ehlo_reply(exts, name="mx.test") -> bytes:
    lines = [name, *exts]
    return b"".join(
        f"250{' ' if i == len(lines) - 1 else '-'}{x}\r\n".encode() for i, x in enumerate(lines)
    )


def events(s: ClientSession) -> list:
    out = []
    while (ev := s.next_event()) is not None:
        out.append(ev)
    return out


def ready(exts=EHLO_FULL, *, lmtp=False, config=None) -> ClientSession:
    s = ClientSession(config or ClientConfig(), lmtp=lmtp, helo_name="client.test")
    assert s.phase is Phase.GREETING and s.timeout == 300
    s.receive_data(b"220 mx.test ESMTP\r\n")
    assert s.data_to_send() == (b"LHLO client.test\r\n" if lmtp else b"EHLO client.test\r\n")
    s.receive_data(ehlo_reply(exts))
    evs = events(s)
    assert len(evs) == 1 and isinstance(evs[0], Ready)
    assert s.ready
    return s


def tx(*rcpts, **kw) -> Transaction:
    return Transaction(sender="a@src.test", recipients=rcpts or ("b@dst.test",), size=100, **kw)


def codes(done: TransactionDone) -> list[int]:
    return [r.reply.code for r in done.replies]


def test_pipelining_sends_mail_rcpts_and_data_in_one_batch():
    s = ready()
    s.send_transaction(tx("b@dst.test", "c@dst.test"))
    assert s.data_to_send() == (
        b"MAIL FROM:<a@src.test> SIZE=100\r\n"
        b"RCPT TO:<b@dst.test>\r\nRCPT TO:<c@dst.test>\r\nDATA\r\n"
    )
    assert s.phase is Phase.MAIL and s.timeout == 300
    s.receive_data(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <c@dst.test>: unknown\r\n")
    assert s.phase is Phase.DATA_INIT and s.timeout == 120
    s.receive_data(b"354 go\r\n")
    assert isinstance(events(s)[0], ContentWanted)
    assert s.phase is Phase.DATA_BLOCK and s.timeout == 180
    s.send_content(b"Subject: x\r\n\r\nhi\r\n", last=True)
    assert s.data_to_send() == b"Subject: x\r\n\r\nhi\r\n.\r\n"
    assert s.phase is Phase.DATA_DONE and s.timeout == 600
    s.receive_data(b"250 2.0.0 Ok: queued as X\r\n")
    [done] = events(s)
    assert codes(done) == [250, 550]
    assert [r.stage for r in done.replies] == ["data", "rcpt"]
    assert done.replies[1].reply.enhanced == "5.1.1"
    assert done.replies[1].reply.lines == ("<c@dst.test>: unknown",)
    assert s.ready


def test_lock_step_without_pipelining():
    s = ready(["SIZE 0"])
    # Unwritable recipients (Rule 6) are skipped: no RCPT, a local 553 each.
    s.send_transaction(tx("x y@dst.test", "b@dst.test", "a<b@dst.test", "c@dst.test"))
    assert s.data_to_send() == b"MAIL FROM:<a@src.test> SIZE=100\r\n"
    s.receive_data(b"250 ok\r\n")
    assert s.data_to_send() == b"RCPT TO:<b@dst.test>\r\n"
    s.receive_data(b"451 4.3.0 later\r\n")
    assert s.data_to_send() == b"RCPT TO:<c@dst.test>\r\n"
    s.receive_data(b"250 ok\r\n")
    assert s.data_to_send() == b"DATA\r\n"
    s.receive_data(b"354 go\r\n")
    events(s)
    s.send_content(b"x", last=True)
    assert s.data_to_send() == b"x\r\n.\r\n"
    s.receive_data(b"250 ok\r\n")
    [done] = events(s)
    assert codes(done) == [553, 451, 553, 250]
    assert done.replies[3].reply.enhanced is None


def test_no_recipient_accepted_sends_rset_instead_of_data():
    s = ready(["8BITMIME"])
    s.send_transaction(tx("b@dst.test"))
    s.data_to_send()
    s.receive_data(b"250 ok\r\n")
    s.data_to_send()
    s.receive_data(b"550 5.1.1 no\r\n")
    assert s.data_to_send() == b"RSET\r\n"
    assert events(s) == []
    s.receive_data(b"250 ok\r\n")
    [done] = events(s)
    assert codes(done) == [550]
    s.send_transaction(tx("d@dst.test"))
    assert s.data_to_send().startswith(b"MAIL FROM")  # clean: no second RSET


def test_pipelined_all_rejected_data_refused_then_next_transaction_resets():
    s = ready()
    s.send_transaction(tx("b@dst.test"))
    s.data_to_send()
    s.receive_data(b"250 ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n")
    [done] = events(s)
    assert codes(done) == [550]
    s.send_transaction(tx("d@dst.test"))
    assert s.data_to_send().startswith(b"RSET\r\nMAIL FROM")


def test_stray_354_after_all_rejected_gets_an_empty_message():
    s = ready()
    s.send_transaction(tx("b@dst.test"))
    s.data_to_send()
    s.receive_data(b"250 ok\r\n550 no\r\n354 go ahead anyway\r\n")
    assert s.data_to_send() == b".\r\n"
    s.receive_data(b"554 no recipients\r\n")
    [done] = events(s)
    assert codes(done) == [550]


def test_mail_refused_gives_every_recipient_the_mail_reply():
    s = ready()
    s.send_transaction(tx("b@dst.test", "c@dst.test"))
    s.data_to_send()
    s.receive_data(
        b"451 4.7.1 greylisted\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"
        b"503 5.5.1 need MAIL\r\n"
    )
    [done] = events(s)
    assert codes(done) == [451, 451]
    assert {r.stage for r in done.replies} == {"mail"}
    assert done.mail_reply.code == 451


def test_helo_fallback_when_ehlo_is_refused():
    s = ClientSession(ClientConfig(), helo_name="client.test")
    s.receive_data(b"220 old.test SMTP\r\n")
    s.data_to_send()
    s.receive_data(b"502 command not implemented\r\n")
    assert s.data_to_send() == b"HELO client.test\r\n"
    s.receive_data(b"250 old.test\r\n")
    [ev] = events(s)
    assert isinstance(ev, Ready) and not ev.esmtp and ev.extensions.server_name == "old.test"
    s.send_transaction(tx("b@dst.test", ret="FULL", rcpt_params=(RcptParams(("SUCCESS",)),)))
    assert s.data_to_send() == b"MAIL FROM:<a@src.test>\r\n"  # no extensions at all


def test_lmtp_never_falls_back_to_helo():
    s = ClientSession(ClientConfig(), lmtp=True, helo_name="c")
    s.receive_data(b"220 lmtp\r\n")
    assert s.data_to_send() == b"LHLO c\r\n"
    s.receive_data(b"500 5.5.1 unknown\r\n")
    evs = events(s)
    assert isinstance(evs[-1], Closed) and evs[-1].reply.code == 500
    assert s.data_to_send() == b"QUIT\r\n"


@pytest.mark.parametrize("greeting", [b"554 5.3.2 go away\r\n", b"421 busy\r\n"])
def test_non_2xx_greeting_closes_with_that_reply(greeting):
    s = ClientSession(ClientConfig())
    s.receive_data(greeting)
    [ev] = events(s)
    assert isinstance(ev, Closed) and ev.reply.code == int(greeting[:3])
    assert ev.phase is Phase.GREETING and not ev.local


def test_size_limit_refused_without_sending():
    s = ready()
    s.send_transaction(Transaction("a@x", ("b@y",), size=10001))
    assert s.data_to_send() == b""
    [done] = events(s)
    r = done.replies[0]
    assert r.local and r.reply.enhanced == "5.3.4" and "too big for remote" in r.reply.text
    assert s.ready


def test_smtputf8_required_but_not_offered():
    s = ready(["PIPELINING", "8BITMIME"])
    s.send_transaction(tx(smtputf8=True))
    [done] = events(s)
    assert done.replies[0].reply.enhanced == "5.6.7" and done.replies[0].reply.permanent
    assert s.data_to_send() == b""


def test_smtputf8_and_8bitmime_parameters_when_offered():
    s = ready()
    s.send_transaction(tx("b@dst.test", smtputf8=True, eight_bit=True))
    assert s.data_to_send().startswith(
        b"MAIL FROM:<a@src.test> SIZE=100 BODY=8BITMIME SMTPUTF8\r\n"
    )


def test_eight_bit_without_8bitmime_is_refused_not_sent():
    s = ready(["PIPELINING"])
    s.send_transaction(tx(eight_bit=True))
    [done] = events(s)
    assert done.replies[0].reply.enhanced == "5.6.3"


def test_dsn_parameters_only_when_offered():
    params = (RcptParams(("DELAY", "FAILURE")), RcptParams(None, ("rfc822", "B+x=y@dst.test")))
    t = tx("b@dst.test", "c@dst.test", rcpt_params=params, ret="HDRS", envid="id 1")
    s = ready()
    s.send_transaction(t)
    assert s.data_to_send() == (
        b"MAIL FROM:<a@src.test> SIZE=100 RET=HDRS ENVID=id+201\r\n"
        b"RCPT TO:<b@dst.test> NOTIFY=DELAY,FAILURE\r\n"
        b"RCPT TO:<c@dst.test> ORCPT=rfc822;B+2Bx+3Dy@dst.test\r\nDATA\r\n"
    )
    s2 = ready(["PIPELINING"])
    s2.send_transaction(t)
    assert s2.data_to_send() == (
        b"MAIL FROM:<a@src.test>\r\nRCPT TO:<b@dst.test>\r\nRCPT TO:<c@dst.test>\r\nDATA\r\n"
    )


@pytest.mark.parametrize(
    "pieces, wire",
    [
        ([b".first\r\nsecond\r\n..third\r\n"], b"..first\r\nsecond\r\n...third\r\n.\r\n"),
        ([b"a\r", b"\n.b\r\n"], b"a\r\n..b\r\n.\r\n"),
        ([b"a\r\n", b".b"], b"a\r\n..b\r\n.\r\n"),
        ([b"a\r", b"\n", b".\r\n"], b"a\r\n..\r\n.\r\n"),
        ([b"no final newline"], b"no final newline\r\n.\r\n"),
        ([b""], b".\r\n"),
        ([b".\r\n"], b"..\r\n.\r\n"),
    ],
)
def test_dot_stuffing(pieces, wire):
    s = ready()
    s.send_transaction(tx())
    s.data_to_send()
    s.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    events(s)
    for i, p in enumerate(pieces):
        s.send_content(p, last=i == len(pieces) - 1)
    assert s.data_to_send() == wire


def test_bdat_when_chunking_offered():
    s = ready(["PIPELINING", "CHUNKING", "8BITMIME"])
    s.send_transaction(tx("b@dst.test", "c@dst.test"))
    assert (
        s.data_to_send()
        == b"MAIL FROM:<a@src.test>\r\nRCPT TO:<b@dst.test>\r\nRCPT TO:<c@dst.test>\r\n"
    )
    s.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n")
    assert events(s) == [ContentWanted(True)]
    s.send_content(b".a\r\n", last=False)
    s.send_content(b"b\r\n", last=True)
    assert s.data_to_send() == b"BDAT 4\r\n.a\r\nBDAT 3 LAST\r\nb\r\n"
    s.receive_data(b"250 2.0.0 4 octets\r\n250 2.0.0 queued\r\n")
    [done] = events(s)
    assert codes(done) == [250, 250] and done.replies[0].reply.lines == ("queued",)


def test_bdat_chunk_failure_stops_and_resets():
    s = ready(["CHUNKING"])
    s.send_transaction(tx())
    s.data_to_send()
    s.receive_data(b"250 ok\r\n")
    s.data_to_send()
    s.receive_data(b"250 ok\r\n")
    events(s)
    s.send_content(b"x" * 10, last=False)
    s.receive_data(b"552 5.3.4 too big\r\n")
    assert not s.wants_content
    assert s.data_to_send() == b"BDAT 10\r\n" + b"x" * 10 + b"RSET\r\n"
    s.receive_data(b"250 ok\r\n")
    [done] = events(s)
    assert codes(done) == [552]


def test_lmtp_one_reply_per_accepted_recipient():
    s = ready(["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING"], lmtp=True)
    s.send_transaction(tx("b@d", "c@d", "e@d"))
    assert s.data_to_send().endswith(b"DATA\r\n")  # never BDAT over LMTP
    s.receive_data(b"250 ok\r\n250 ok\r\n550 5.1.1 no\r\n250 ok\r\n354 go\r\n")
    events(s)
    s.send_content(b"hi\r\n", last=True)
    s.receive_data(b"250 2.0.0 <b@d> saved\r\n")
    assert events(s) == []
    s.receive_data(b"452 4.2.2 <e@d> over quota\r\n")
    [done] = events(s)
    assert codes(done) == [250, 550, 452]
    assert done.replies[2].reply.enhanced == "4.2.2"


@pytest.mark.parametrize(
    "garbage", [b"hello\r\n", b"250-a\r\n251 b\r\n", b"2500 x\r\n", b"x" * 5000, b"190 low\r\n"]
)
def test_malformed_reply_is_a_transient_failure(garbage):
    s = ready()
    s.send_transaction(tx())
    s.data_to_send()
    s.receive_data(garbage)
    evs = events(s)
    assert isinstance(evs[0], TransactionDone) and isinstance(evs[1], Closed)
    r = evs[0].replies[0]
    assert r.local and r.reply.transient and r.reply.enhanced == "4.5.0" and r.stage == "mail"


def test_multiline_reply_split_anywhere():
    s = ready()
    s.send_transaction(tx())
    s.data_to_send()
    wire = (
        b"250 ok\r\n550-5.1.1 first line\r\n550-5.1.1 second\r\n550 5.1.1 third\r\n"
        b"554 5.5.1 no recipients\r\n"
    )
    for b in wire:
        s.receive_data(bytes([b]))
    [done] = events(s)
    assert done.replies[0].reply.lines == ("first line", "second", "third")


def test_421_anywhere_fails_the_session():
    s = ready()
    s.send_transaction(tx("b@d", "c@d"))
    s.data_to_send()
    s.receive_data(b"250 ok\r\n250 ok\r\n421 4.3.2 shutting down\r\n")
    done, closed = events(s)
    assert codes(done) == [250 if False else 421, 421] and closed.reply.code == 421
    assert not s.ready and s.closed


def test_timeout_and_eof_name_the_phase():
    s = ready()
    s.send_transaction(tx())
    s.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    events(s)
    s.send_content(b"x\r\n", last=True)
    s.on_timeout()
    done, closed = events(s)
    r = done.replies[0]
    assert r.local and r.reply.enhanced == "4.4.2" and r.stage == "data"
    assert "sending end of data" in r.reply.text
    s2 = ready()
    s2.receive_eof()
    [ev] = events(s2)
    assert isinstance(ev, Closed) and ev.reply is None  # idle close: not an error


def test_starttls_resets_parser_and_says_ehlo_again():
    s = ready()
    s.starttls()
    assert s.data_to_send() == b"STARTTLS\r\n"
    s.receive_data(b"220 go ahead\r\n250 injected\r\n")
    assert events(s) == [TlsReady()]
    assert s.phase is Phase.STARTTLS
    s.tls_established()
    assert s.data_to_send() == b"EHLO client.test\r\n"
    s.receive_data(ehlo_reply(["PIPELINING"]))
    [ev] = events(s)
    assert isinstance(ev, Ready) and ev.tls and not ev.extensions.has("STARTTLS")


def test_starttls_refused_keeps_the_session():
    s = ready()
    s.starttls()
    s.receive_data(b"454 4.7.0 TLS not available\r\n")
    [ev] = events(s)
    assert isinstance(ev, TlsRefused) and s.ready


def test_reset_and_quit():
    s = ready()
    s.reset()
    assert s.data_to_send() == b"RSET\r\n" and s.timeout == 20
    s.receive_data(b"250 ok\r\n")
    assert isinstance(events(s)[0], ResetDone)
    s.quit()
    assert s.data_to_send() == b"QUIT\r\n"
    s.receive_data(b"221 bye\r\n")
    [ev] = events(s)
    assert isinstance(ev, Closed) and ev.reply is None


def test_wrong_phase_raises():
    s = ClientSession()
    with pytest.raises(RuntimeError):
        s.send_transaction(tx())
    s = ready()
    with pytest.raises(RuntimeError):
        s.send_content(b"x", last=True)


def test_quoted_addresses_are_written_and_unwritable_ones_fail_alone():
    """Rule 6: what our parser accepted goes out re-quoted; what it could not
    accept is refused per recipient (5.1.3) or per message (5.1.7), no exception."""
    s = ready()
    s.send_transaction(
        Transaction(
            sender='"a>b"@src.test',
            recipients=("b@d>\r\nRSET", '"x y\\\\z"@dst.test', "c@dst.test"),
            size=1,
        )
    )
    assert s.data_to_send() == (
        b'MAIL FROM:<"a>b"@src.test> SIZE=1\r\n'
        b'RCPT TO:<"x y\\\\z"@dst.test>\r\nRCPT TO:<c@dst.test>\r\nDATA\r\n'
    )
    s.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert isinstance(events(s)[0], ContentWanted)
    s.send_content(b"hi\r\n", last=True)
    s.data_to_send()
    s.receive_data(b"250 2.0.0 queued\r\n")
    [done] = events(s)
    assert codes(done) == [553, 250, 250]
    assert done.replies[0].local and done.replies[0].reply.enhanced == "5.1.3"
    assert s.ready  # the session is fine for the next one
    s.send_transaction(Transaction(sender="a b@src.test", recipients=("c@dst.test",), size=1))
    assert s.data_to_send() == b""  # nothing written for it
    [done] = events(s)
    assert [(r.reply.code, r.reply.enhanced, r.local) for r in done.replies] == [
        (553, "5.1.7", True)
    ]
    assert s.ready


def test_config_validates():
    with pytest.raises(ValueError, match="rcpt_timeout"):
        ClientConfig(rcpt_timeout=0)
    with pytest.raises(ValueError, match="tls"):
        ClientConfig(tls="sometimes")

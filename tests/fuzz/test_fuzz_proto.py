"""Property and fuzz tests of the protocol core (issue 6, part 5).

CI runs a short default; `make fuzz` runs many more examples
(PIGEON_FUZZ_EXAMPLES) and the atheris entry points (tests/fuzz/atheris_*.py).
Properties:
  * no exception other than the protocol's own errors, no hang, bounded
    output (targets.py);
  * round trips: Address -> str -> parse_path; MailParams/RcptParams ->
    wire tokens -> parse; xtext encode -> decode; DotStuffer -> DotReader
    (dot-stuffing then unstuffing returns the input) and the same through a
    whole ServerSession; BDAT chunks arrive intact;
  * every seed in tests/fuzz/corpus/ passes its target (regression corpus).
"""

from __future__ import annotations

import os
from pathlib import Path

import fuzz_targets as targets
import pytest
from address_strategies import addresses
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pigeon.proto.params import (
    MailParams,
    RcptParams,
    parse_mail_params,
    parse_rcpt_params,
    xtext_decode,
    xtext_encode,
)
from pigeon.proto.server import SessionConfig
from pigeon.vocab.address import parse_path

EXAMPLES = int(os.environ.get("PIGEON_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CORPUS = Path(__file__).parent / "corpus"


@FUZZ
@given(addresses)
def test_address_round_trip(addr):
    assert parse_path(f"<{addr}>", allow_null=False, smtputf8=False) == addr


@FUZZ
@given(st.text(max_size=300))
@example("<@a.example,@b.example:user@c.example>")
@example('<"a\\"b"@example.test>')
def test_address_parser_only_raises_path_error(text):
    targets.address_target(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.text(max_size=100))
def test_xtext_round_trip(text):
    assert xtext_decode(xtext_encode(text)) == text


def render_mail(p: MailParams) -> list[str]:
    out = []
    if p.size is not None:
        out.append(f"SIZE={p.size}")
    if p.body:
        out.append(f"BODY={p.body}")
    if p.smtputf8:
        out.append("SMTPUTF8")
    if p.ret:
        out.append(f"RET={p.ret}")
    if p.envid is not None:
        out.append(f"ENVID={xtext_encode(p.envid)}")
    return out


def render_rcpt(p: RcptParams) -> list[str]:
    out = []
    if p.notify is not None:
        out.append("NOTIFY=" + ",".join(p.notify))
    if p.orcpt is not None:
        out.append(f"ORCPT={p.orcpt[0]};{xtext_encode(p.orcpt[1])}")
    return out


mail_params = st.builds(
    MailParams,
    size=st.none() | st.integers(0, 10**19),
    body=st.sampled_from([None, "7BIT", "8BITMIME"]),
    smtputf8=st.booleans(),
    ret=st.sampled_from([None, "FULL", "HDRS"]),
    envid=st.none()
    | st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=30),
)
rcpt_params = st.builds(
    RcptParams,
    notify=st.none()
    | st.just(("NEVER",))
    | st.sets(st.sampled_from(["DELAY", "FAILURE", "SUCCESS"]), min_size=1).map(
        lambda s: tuple(sorted(s))
    ),
    orcpt=st.none() | st.tuples(st.just("rfc822"), addresses.map(str)),
)


@FUZZ
@given(mail_params)
def test_mail_params_round_trip(p):
    assert parse_mail_params(render_mail(p), cfg=SessionConfig()) == p


@FUZZ
@given(rcpt_params)
def test_rcpt_params_round_trip(p):
    assert parse_rcpt_params(render_rcpt(p), cfg=SessionConfig()) == p


@FUZZ
@given(st.binary(max_size=400))
def test_params_parser_only_raises_param_error(data):
    targets.params_target(data)


# --- command lines and sessions ---------------------------------------------------

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
    b"..dot\r\n",
    b"QUIT\r\n",
    b"AUTH PLAIN\r\n",
    b"STARTTLS\r\n",
    b"x" * 600,
    b"MAIL FROM:<a@b> SIZE=99999999999\r\n",
    b"RCPT TO:<d@localhost> NOTIFY=NEVER,SUCCESS ORCPT=rfc822;a+2Bb@c\r\n",
    b"BDAT 18446744073709551616 LAST\r\n",
    b"Content-Type: multipart/mixed; boundary=a\r\n",
]
session_bytes = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=40)), max_size=60
).map(b"".join)


@FUZZ
@given(st.integers(0, 255), session_bytes)
def test_session_contract_holds_for_any_input(split, data):
    targets.session_target(bytes([split]) + data)


@FUZZ
@given(st.binary(max_size=3000) | session_bytes)
def test_command_reader_and_parser(data):
    targets.command_target(data)


# --- DATA and BDAT readers --------------------------------------------------------

line = st.binary(max_size=120).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")
)
dotty_line = st.one_of(
    line, line.map(lambda b: b"." + b), st.just(b"."), st.just(b".."), st.just(b"")
)
contents = st.tuples(st.lists(dotty_line, max_size=30), st.booleans()).map(
    lambda t: b"\r\n".join(t[0]) + (b"\r\n" if t[1] and t[0] else b"")
)


@FUZZ
@given(contents, st.lists(st.integers(0, 5000), max_size=8), st.integers(1, 300))
@example(b".", [], 1)
@example(b"a\r\n.\r\nMAIL FROM:<x@y>\r\n", [1, 2, 3], 2)
@example(b"a\r\n", [2], 1)
def test_dot_stuffing_then_unstuffing_returns_the_input(content, cuts, split):
    wire = targets.stuff(content, cuts)
    got, status = targets.unstuff(wire, split)
    assert status == "done"
    assert got == targets.expected_content(content)


@FUZZ
@given(contents, st.lists(st.integers(0, 5000), max_size=6), st.integers(1, 200))
def test_whole_session_receives_exactly_what_the_client_stuffed(content, cuts, split):
    wire = (
        b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@localhost>\r\nDATA\r\n"
        + targets.stuff(content, cuts)
        + b"QUIT\r\n"
    )
    _, messages, _ = targets.run_session(wire, split, SessionConfig(max_message_size=0))
    assert messages == [targets.expected_content(content)]


@FUZZ
@given(
    st.lists(
        st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
        min_size=1,
        max_size=5,
    ),
    st.integers(1, 100),
)
def test_bdat_chunks_arrive_intact(chunks, split):
    wire = bytearray(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@localhost>\r\n")
    for i, chunk in enumerate(chunks):
        last = " LAST" if i == len(chunks) - 1 else ""
        wire += f"BDAT {len(chunk)}{last}\r\n".encode() + chunk
    _, messages, _ = targets.run_session(bytes(wire), split, SessionConfig(max_message_size=0))
    content = b"".join(chunks)
    if b"\x00" in content:
        assert messages == []  # NUL: 554 5.6.0, refused
    else:
        assert messages == [content]


@FUZZ
@given(st.binary(max_size=2000))
def test_data_target(data):
    targets.data_target(data)


# --- the regression corpus ---------------------------------------------------------

#: The IMAP seeds (corpus/imap_*) are test_fuzz_imap.py's.
SEEDS = sorted(
    p for p in CORPUS.glob("*/*") if p.is_file() and not p.parent.name.startswith("imap_")
)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_seed(seed):
    target = {
        "session": targets.session_target,
        "address": targets.address_target,
        "data": targets.data_target,
        "command": targets.command_target,
        "params": targets.params_target,
    }[seed.parent.name]
    target(seed.read_bytes())

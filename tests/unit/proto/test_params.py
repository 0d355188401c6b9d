"""MAIL/RCPT ESMTP parameters (RFC 1870, 6152, 6531, 3461)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pigeon.proto import reply as R
from pigeon.proto.params import (
    MailParams,
    ParamError,
    RcptParams,
    parse_mail_params,
    parse_rcpt_params,
    xtext_decode,
    xtext_encode,
)
from pigeon.proto.server import SessionConfig

CFG = SessionConfig()


def mail(*tokens: str, cfg: SessionConfig = CFG) -> MailParams:
    return parse_mail_params(list(tokens), cfg=cfg)


def rcpt(*tokens: str, cfg: SessionConfig = CFG) -> RcptParams:
    return parse_rcpt_params(list(tokens), cfg=cfg)


def test_mail_params() -> None:
    assert mail() == MailParams()
    assert mail("SIZE=1000", "body=8bitmime", "SmtpUtf8", "RET=hdrs", "ENVID=QQ+2B1") == MailParams(
        size=1000, body="8BITMIME", smtputf8=True, ret="HDRS", envid="QQ+1"
    )
    assert mail("BODY=7BIT").body == "7BIT"


@pytest.mark.parametrize(
    "tokens",
    [
        ["SIZE=abc"],
        ["SIZE="],
        ["SIZE"],
        ["SIZE=-1"],
        ["SIZE=" + "9" * 21],
        ["BODY=BINARYMIME"],
        ["RET=ALL"],
        ["ENVID=a+zz"],
        ["ENVID=" + "x" * 101],
        ["SMTPUTF8=yes"],
        ["SIZE=1", "size=2"],
        ["=x"],
        ["-X=1"],
        ["ENVID=a=b"],
    ],
)
def test_mail_syntax_errors(tokens: list[str]) -> None:
    with pytest.raises(ParamError) as exc:
        mail(*tokens)
    assert exc.value.reply == R.SYNTAX_ERROR


@pytest.mark.parametrize(
    "tokens, cfg",
    [
        (["FOO=1"], CFG),
        (["AUTH=<>"], CFG),
        (["NOTIFY=NEVER"], CFG),
        (["RET=FULL"], dataclasses.replace(CFG, enable_dsn=False)),
        (["ENVID=x"], dataclasses.replace(CFG, enable_dsn=False)),
        (["BODY=8BITMIME"], dataclasses.replace(CFG, enable_8bitmime=False)),
        (["SMTPUTF8"], dataclasses.replace(CFG, enable_smtputf8=False)),
    ],
)
def test_mail_unknown(tokens: list[str], cfg: SessionConfig) -> None:
    with pytest.raises(ParamError) as exc:
        mail(*tokens, cfg=cfg)
    assert exc.value.reply == R.PARAM_UNKNOWN


def test_rcpt_params() -> None:
    assert rcpt() == RcptParams()
    assert rcpt("NOTIFY=never").notify == ("NEVER",)
    assert rcpt("NOTIFY=success,Delay,FAILURE").notify == ("DELAY", "FAILURE", "SUCCESS")
    assert rcpt("ORCPT=RFC822;Bob+40example.org").orcpt == ("rfc822", "Bob@example.org")
    assert rcpt("ORCPT=rfc822;" + "x" * 500).orcpt == ("rfc822", "x" * 500)


@pytest.mark.parametrize(
    "tokens",
    [
        ["NOTIFY=NEVER,SUCCESS"],
        ["NOTIFY=SOMETIMES"],
        ["NOTIFY="],
        ["NOTIFY=SUCCESS,"],
        ["ORCPT=bob@example.org"],
        ["ORCPT=rfc822;"],
        ["ORCPT=;bob"],
        ["ORCPT=rfc822;a+4"],
        ["ORCPT=rfc822;" + "x" * 501],
        ["NOTIFY=NEVER", "notify=NEVER"],
    ],
)
def test_rcpt_syntax_errors(tokens: list[str]) -> None:
    with pytest.raises(ParamError) as exc:
        rcpt(*tokens)
    assert exc.value.reply == R.SYNTAX_ERROR


def test_rcpt_unknown() -> None:
    for tokens in (["SIZE=1"], ["BODY=7BIT"]):
        with pytest.raises(ParamError) as exc:
            rcpt(*tokens)
        assert exc.value.reply == R.PARAM_UNKNOWN
    with pytest.raises(ParamError) as exc:
        rcpt("NOTIFY=NEVER", cfg=dataclasses.replace(CFG, enable_dsn=False))
    assert exc.value.reply == R.PARAM_UNKNOWN


def test_xtext() -> None:
    assert xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"
    assert xtext_decode("a+2Bb+3Dc+20d") == "a+b=c d"
    with pytest.raises(ParamError):
        xtext_decode("a b")


@given(st.text(max_size=50))
def test_xtext_round_trip(text: str) -> None:
    assert xtext_decode(xtext_encode(text)) == text


def test_to_from_dict() -> None:
    m = MailParams(size=1, body="8BITMIME", smtputf8=True, ret="FULL", envid="x")
    assert MailParams.from_dict(m.to_dict()) == m
    # Every field, in declaration order: the queue stores this dict as JSON.
    for params in (m, MailParams(), MailParams(auth="<>")):
        assert list(params.to_dict().items()) == list(dataclasses.asdict(params).items())
    r = RcptParams(("DELAY",), ("rfc822", "a@b"))
    assert RcptParams.from_dict(r.to_dict()) == r

"""What a milter is told and what its answers mean (policy/miltermap.py), and the
[[milters]] configuration (config/_milter.py)."""

from __future__ import annotations

import pytest

from pigeon.config import ConfigError, load_config
from pigeon.policy import miltermap
from pigeon.policy.api import HeaderEdit, NewSender, SessionFacts
from pigeon.proto import milter as M
from pigeon.proto.events import TlsInfo
from pigeon.proto.params import MailParams, RcptParams
from pigeon.vocab.address import Address

ALICE = Address("alice", "example.test")
BOB = Address("bob", "example.test")
EVERYTHING = M.Negotiated(6, M.ACTIONS_OFFERED, 0)


def facts() -> SessionFacts:
    f = SessionFacts("192.0.2.1", 4242, "submission", helo="client.test")
    f.tls, f.user = TlsInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128), "alice@example.test"
    f.recipients = [(BOB, RcptParams())]
    return f


def test_macros_of_each_stage():
    f = facts()
    connect = miltermap.macros(M.CONNECT, f, "mx.test")
    assert connect["j"] == "mx.test" and connect["v"].startswith("pigeon ")
    assert connect["daemon_name"] == "submission" and connect["client_port"] == "4242"
    assert connect["client_addr"] == "192.0.2.1" and connect["client_name"] == "unknown"
    assert miltermap.macros(M.HELO, f, "mx.test") == {
        "tls_version": "TLSv1.3",
        "cipher": "TLS_AES_128_GCM_SHA256",
        "cipher_bits": "128",
    }
    mail = miltermap.macros(M.MAIL, f, "mx.test", address=ALICE)
    assert mail["mail_addr"] == "alice@example.test" and mail["auth_authen"] == "alice@example.test"
    assert miltermap.macros(M.MAIL, f, "mx.test", address=None)["mail_mailer"] == "smtp"
    assert "mail_addr" not in miltermap.macros(M.MAIL, f, "mx.test", address=None)  # <>: empty
    assert miltermap.macros(M.RCPT, f, "mx.test", address=BOB)["rcpt_addr"] == "bob@example.test"
    assert miltermap.macros(M.BODYEOB, f, "mx.test", "QID1") == {"i": "QID1"}
    assert miltermap.macros(M.DATA, f, "mx.test") == {}  # no queue ID yet: not sent


def test_a_milter_that_names_its_macros_gets_those_that_have_a_value():
    wanted = ("i", "auth_authen", "client_addr", "no_such")
    assert miltermap.macros(M.BODYEOB, facts(), "mx.test", "QID1", wanted) == {
        "i": "QID1",
        "auth_authen": "alice@example.test",
        "client_addr": "192.0.2.1",
    }


def test_arguments_as_the_client_gave_them():
    params = MailParams(size=120, body="8BITMIME", smtputf8=True, ret="HDRS", envid="a+b")
    assert miltermap.mail_args(ALICE, params) == [
        "<alice@example.test>",
        "SIZE=120",
        "BODY=8BITMIME",
        "SMTPUTF8",
        "RET=HDRS",
        "ENVID=a+2Bb",
    ]
    assert miltermap.mail_args(None, MailParams()) == ["<>"]
    rcpt = RcptParams(notify=("DELAY", "FAILURE"), orcpt=("rfc822", "Bob@example.test"))
    assert miltermap.rcpt_args(BOB, rcpt) == [
        "<bob@example.test>",
        "NOTIFY=DELAY,FAILURE",
        "ORCPT=rfc822;Bob@example.test",
    ]


@pytest.mark.parametrize(
    "answer, wire",
    [
        (M.Answer("reject"), b"550 5.7.1 Command rejected\r\n"),
        (M.Answer("tempfail"), b"451 4.7.1 Service unavailable - try again later\r\n"),
        (M.Answer("reply", "554 5.7.1 Gtube pattern"), b"554 5.7.1 Gtube pattern\r\n"),
        (M.Answer("reply", "452 try later"), b"452 4.7.1 try later\r\n"),  # enhanced code added
        (
            M.Answer("reply", "550-5.7.1 first\r\n550 5.7.1 second"),
            b"550-5.7.1 first\r\n550 5.7.1 second\r\n",
        ),
    ],
)
def test_refusals(answer, wire):
    assert miltermap.refusal(answer).to_bytes() == wire


@pytest.mark.parametrize("text", ["250 fine", "hello", "", "99 x"])
def test_a_custom_reply_must_refuse(text):
    with pytest.raises(M.MilterProtocolError):
        miltermap.refusal(M.Answer("reply", text))


def test_continue_and_accept_are_no_refusal():
    assert miltermap.refusal(M.Answer("continue")) is None
    assert miltermap.refusal(M.Answer("accept")) is None


def test_modifications_become_verdict_fields():
    mods = [
        M.Modification("insert_header", "DKIM-Signature", "v=1;\n\tb=abc", 0),
        M.Modification("change_header", "Subject", "", 1),
        M.Modification("add_header", "X-Spam", "Yes"),
        M.Modification("replace_body", data=b"line one\nline two\r\n"),
        M.Modification("add_rcpt", "<carol@example.test>"),
        M.Modification("delete_rcpt", "<BOB@example.test>"),
        M.Modification("change_from", "<>"),
        M.Modification("quarantine", value="suspicious"),
    ]
    out = miltermap.changes(mods, facts(), EVERYTHING, 1 << 20)
    assert out["header_edits"] == (
        HeaderEdit("insert", "DKIM-Signature", "v=1;\r\n\tb=abc", 0),  # LF folding -> CRLF
        HeaderEdit("change", "Subject", "", 1),
        HeaderEdit("add", "X-Spam", "Yes"),
    )
    assert out["body"] == b"line one\r\nline two\r\n"
    assert [str(a) for a, _ in out["recipients"]] == ["carol@example.test"]
    assert out["sender"] == NewSender(None)
    assert out["quarantine"] == "suspicious"


def test_esmtp_arguments_of_an_added_recipient_and_a_new_sender():
    mods = [
        M.Modification("add_rcpt", "<carol@example.test>", "NOTIFY=NEVER ORCPT=rfc822;C+40x"),
        M.Modification("change_from", "<bounces@example.test>", "BODY=8BITMIME RET=HDRS"),
    ]
    out = miltermap.changes(mods, facts(), EVERYTHING, 1 << 20)
    added = out["recipients"][-1]
    assert added == (Address("carol", "example.test"), RcptParams(("NEVER",), ("rfc822", "C@x")))
    assert out["sender"] == NewSender(
        Address("bounces", "example.test"), MailParams(body="8BITMIME", ret="HDRS")
    )
    plain = miltermap.changes([M.Modification("change_from", "<>", "")], facts(), EVERYTHING, 10)
    assert plain["sender"] == NewSender(None, None)  # no arguments: the MAIL parameters stay


@pytest.mark.parametrize(
    "mod, negotiated",
    [
        (M.Modification("add_header", "X", "y"), M.Negotiated(6, M.CHGHDRS, 0)),  # not asked for
        (M.Modification("add_header", "X", "bare\rCR"), EVERYTHING),
        (M.Modification("add_header", "X", "no\nfold"), EVERYTHING),  # would end the field
        (M.Modification("add_rcpt", "<not an address>"), EVERYTHING),
        (M.Modification("replace_body", data=b"x" * 11), EVERYTHING),  # over the size limit
        (M.Modification("add_rcpt", "<c@d.test>", "NOTIFY=SOMETIMES"), EVERYTHING),
        (M.Modification("change_from", "<c@d.test>", "FOO=1"), EVERYTHING),
    ],
)
def test_bad_or_unasked_modifications_are_protocol_errors(mod, negotiated):
    with pytest.raises(M.MilterProtocolError):
        miltermap.changes([mod], facts(), negotiated, 10)


def _load(tmp_path, text):
    path = tmp_path / "pigeon.toml"
    path.write_text(text)
    return load_config(path)


def test_milters_config(tmp_path):
    config = _load(
        tmp_path,
        '[[milters]]\nname = "dkim"\nsocket = "unix:/run/dkim.sock"\n'
        '[[milters]]\nname = "spam"\nsocket = "inet:[::1]:11332"\ncontent_timeout = 60\n'
        'default_action = "accept"\n',
    )
    dkim, spam = config.milters
    assert (dkim.address, dkim.default_action, dkim.command_timeout) == (
        "/run/dkim.sock",
        "tempfail",
        30.0,
    )
    assert (spam.address, spam.content_timeout, spam.default_action) == (
        ("::1", 11332),
        60.0,
        "accept",
    )


@pytest.mark.parametrize(
    "entry, message",
    [
        ('name = "a"\nsocket = "tcp:1.2.3.4:5"', 'milters[0].socket: "tcp:1.2.3.4:5": expected'),
        ('name = "a"\nsocket = "unix:relative"', "milters[0].socket"),
        ('name = "a"\nsocket = "inet:host:99999"', "milters[0].socket"),
        ('name = "a"', "milters[0].socket: is required"),
        (
            'name = "a"\nsocket = "unix:/x"\ntimeout = 3',
            'milters[0].timeout: unknown key (did you mean "',
        ),
        ('name = "a"\nsocket = "unix:/x"\ndefault_action = "reject"', "milters[0].default_action"),
        ('name = "a b"\nsocket = "unix:/x"', "milters[0].name"),
    ],
)
def test_bad_milters_are_refused_naming_the_key(tmp_path, entry, message):
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, f"[[milters]]\n{entry}\n")
    assert message in str(refused.value)


def test_every_entrys_problem_in_one_run_with_its_line(tmp_path):
    text = (
        '[[milters]]\nname = "a"\nsocket = "unix:/x"\ntimeout = 3\n\n'
        '[[milters]]\nname = "b"\nsocket = "tcp:x"\n'
    )
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, text)
    found = [(p.line, p.key) for p in refused.value.problems]
    assert found == [(4, "milters[0].timeout"), (8, "milters[1].socket")]


def test_a_name_used_twice_is_refused(tmp_path):
    entry = '[[milters]]\nname = "a"\nsocket = "unix:/x"\n'
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, entry * 2)
    assert 'milters[1].name: "a" is used twice' in str(refused.value)

"""The IMAP session state machine (pigeon.proto.imap.state)."""

from __future__ import annotations

import pytest

from pigeon.proto.imap.commands import Command
from pigeon.proto.imap.reader import CommandReader
from pigeon.proto.imap.state import MIN_AUTOLOGOUT, Refusal, Session, State


def cmd(line: str) -> Command:
    (ev,) = CommandReader(max_literal=1000).feed(line.encode() + b"\r\n")
    assert isinstance(ev, Command), ev
    return ev


def session(tls: bool = False, state: State = State.NOT_AUTHENTICATED) -> Session:
    s = Session(tls=tls, now=0.0)
    if state is not State.NOT_AUTHENTICATED:
        s.logged_in(0.0)
    if state is State.SELECTED:
        s.selected(readonly=False)
    return s


ANY = ["a CAPABILITY", "a NOOP", "a LOGOUT", "a ID NIL"]
AUTH = ["a SELECT INBOX", "a EXAMINE INBOX", "a CREATE x", "a DELETE x", "a RENAME x y"]
AUTH += ["a SUBSCRIBE x", "a UNSUBSCRIBE x", 'a LIST "" *', 'a LSUB "" *', "a NAMESPACE"]
AUTH += ["a STATUS x (MESSAGES)", "a APPEND x {1+}\r\nx", "a IDLE", "a ENABLE CONDSTORE"]
SELECTED = ["a CLOSE", "a UNSELECT", "a EXPUNGE", "a SEARCH ALL", "a FETCH 1 FLAGS", "a CHECK"]
SELECTED += [
    "a STORE 1 FLAGS ()",
    "a COPY 1 x",
    "a MOVE 1 x",
    "a UID FETCH 1 FLAGS",
    "a UID EXPUNGE 1",
]


@pytest.mark.parametrize("line", ANY + AUTH + SELECTED)
def test_commands_per_state(line: str) -> None:
    c = cmd(line)
    pre, auth, sel = (session(True, st) for st in State if st is not State.LOGOUT)
    refusal = pre.check(c)
    if line in ANY:
        assert refusal is None
    else:
        assert refusal is not None and refusal.status == "BAD"
    assert (auth.check(c) is None) == (line not in SELECTED)
    if line == "a ENABLE CONDSTORE":  # RFC 5161 §3.1: before SELECT only
        assert sel.check(c) == Refusal("BAD", "ENABLE only before SELECT")
    else:
        assert sel.check(c) is None


def test_login_before_tls_is_privacy_required() -> None:
    s = session(tls=False)
    assert s.check(cmd("a LOGIN u p")) == Refusal(
        "NO", "Login only after STARTTLS", "PRIVACYREQUIRED"
    )
    refusal = s.check(cmd("a AUTHENTICATE PLAIN"))
    assert refusal is not None and refusal.code == "PRIVACYREQUIRED"
    refusal = s.check(cmd("a AUTHENTICATE SCRAM-SHA-256"))
    assert refusal is not None and refusal.code == "PRIVACYREQUIRED"
    assert s.check(cmd("a STARTTLS")) is None
    s.tls_started()
    assert s.check(cmd("a STARTTLS")) == Refusal("BAD", "TLS is already active")
    assert s.check(cmd("a LOGIN u p")) is None
    assert s.check(cmd("a AUTHENTICATE PLAIN")) is None
    assert s.check(cmd("a AUTHENTICATE CRAM-MD5")) == Refusal(
        "NO", "Unsupported authentication mechanism"
    )
    s.logged_in(1.0)
    refusal = s.check(cmd("a LOGIN u p"))
    assert refusal is not None and refusal.status == "BAD"


def test_capabilities_per_state_and_tls() -> None:
    clear = session(tls=False).capabilities()
    assert "LOGINDISABLED" in clear and "STARTTLS" in clear
    assert not [c for c in clear if c.startswith("AUTH=")]
    assert clear[:2] == ("IMAP4rev2", "IMAP4rev1")
    tls = session(tls=True).capabilities()
    assert "AUTH=PLAIN" in tls and "AUTH=SCRAM-SHA-256" in tls
    assert "LOGINDISABLED" not in tls and "STARTTLS" not in tls
    after = session(tls=True, state=State.AUTHENTICATED).capabilities()
    assert "IDLE" in tls and "IDLE" in after
    for cap in ["NAMESPACE", "UIDPLUS", "MOVE", "CONDSTORE", "SPECIAL-USE", "ESEARCH", "UNSELECT"]:
        assert cap in after and cap not in tls
    no_starttls = Session(tls=False, now=0, starttls_available=False)
    assert "STARTTLS" not in no_starttls.capabilities()
    assert no_starttls.check(cmd("a STARTTLS")) == Refusal("BAD", "STARTTLS not offered")


def test_read_only_mailbox_refuses_changes() -> None:
    s = session(True, State.AUTHENTICATED)
    s.selected(readonly=True)
    for line in ["a STORE 1 +FLAGS (\\Seen)", "a EXPUNGE", "a MOVE 1 x", "a UID EXPUNGE 1"]:
        assert s.check(cmd(line)) == Refusal("NO", "Mailbox is read-only", "READ-ONLY")
    assert s.check(cmd("a FETCH 1 FLAGS")) is None
    assert s.check(cmd("a COPY 1 x")) is None
    s.unselected()
    assert s.state is State.AUTHENTICATED and not s.readonly


def test_enable_bookkeeping() -> None:
    s = session(True, State.AUTHENTICATED)
    assert not s.utf8
    assert s.enable(("condstore", "QRESYNC", "X-UNKNOWN")) == ["CONDSTORE"]
    assert s.condstore and not s.utf8
    assert s.enable(("IMAP4rev2", "CONDSTORE")) == ["IMAP4rev2"]
    assert s.utf8 and s.rev2
    assert s.enable(("UTF8=ACCEPT",)) == ["UTF8=ACCEPT"]
    t = session(True, State.AUTHENTICATED)
    assert t.enable_condstore() and not t.enable_condstore()


def test_autologout_deadlines() -> None:
    s = Session(tls=True, now=100.0, autologout=60.0, preauth_timeout=30.0)
    assert s.autologout == MIN_AUTOLOGOUT  # RFC 9051 §5.4: at least 30 minutes
    assert s.deadline == 130.0 and not s.expired(129.9) and s.expired(130.0)
    s.logged_in(120.0)
    assert s.deadline == 120.0 + 30 * 60
    s.touch(1000.0)  # any command, IDLE included, resets the timer
    assert not s.expired(1000.0 + 29 * 60) and s.expired(1000.0 + 30 * 60)


def test_logout_state_refuses_everything() -> None:
    s = session(True, State.SELECTED)
    s.logout()
    assert s.check(cmd("a NOOP")) == Refusal("BAD", "Logging out")

"""POP3 with real clients (issue 14, item 4): fetchmail and getmail6 pulling mail.

Each scenario runs against pigeon and against a private Dovecot, the
reference (reader_helpers.readers), with the settings docs/pop3.md gives
(pigeon.testing.mailclients): POP3S, or POP3 + STLS, the test CA's
certificate verified. Kept mail stays on the server; deleted mail is gone
once the client has said QUIT (RFC 1939 §6, the UPDATE state).
"""

from __future__ import annotations

import pytest
from reader_helpers import pop_subjects

from pigeon.testing.live import require_tool, wait_for
from pigeon.testing.mailclients import Fetchmail, Getmail

pytestmark = pytest.mark.e2e


def _pop3_ports(readers) -> None:
    if not readers.pop3s_port:
        pytest.fail(f"{readers.name} has no POP3 listener")


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_fetchmail_keeps_then_deletes(readers, tls):
    require_tool("fetchmail")
    _pop3_ports(readers)
    readers.deliver_all("pop one", "pop two", "pop three")
    client = Fetchmail(readers.workdir / f"fetchmail-{tls}", readers.pop3(tls))

    got = client.fetch(keep=True)
    assert pop_subjects(got) == ["pop one", "pop three", "pop two"]
    assert all(b"Hello." in data for data in got)
    # Kept: a second session gets them all again.
    assert pop_subjects(client.fetch(keep=True)) == ["pop one", "pop three", "pop two"]

    assert len(client.fetch(keep=False)) == 3
    assert wait_for(lambda: readers.stored() == 0, timeout=10), "deleted mail is still stored"
    assert client.fetch(keep=True) == []


def test_getmail_keeps_then_deletes(readers):
    require_tool("getmail")
    _pop3_ports(readers)
    readers.deliver_all("getmail one", "getmail two")
    client = Getmail(readers.workdir / "getmail", readers.pop3())

    assert pop_subjects(client.fetch(keep=True)) == ["getmail one", "getmail two"]
    assert readers.stored() == 2
    assert pop_subjects(client.fetch(keep=False)) == ["getmail one", "getmail two"]
    assert wait_for(lambda: readers.stored() == 0, timeout=10), "deleted mail is still stored"
    # And fetchmail, another client, finds nothing either.
    require_tool("fetchmail")
    assert Fetchmail(readers.workdir / "fetchmail", readers.pop3()).fetch() == []


def test_getmail_fetches_only_new_mail_by_uidl(readers):
    """getmail remembers the UIDLs it saw (RFC 1939 §7): mail delivered after a
    session is the only one the next session fetches, so the old messages
    kept their UIDLs across sessions."""
    require_tool("getmail")
    _pop3_ports(readers)
    readers.deliver_all("early one", "early two")
    client = Getmail(readers.workdir / "getmail", readers.pop3())
    assert pop_subjects(client.fetch(read_all=False)) == ["early one", "early two"]
    assert client.fetch(read_all=False) == []
    readers.deliver_all("late")
    assert pop_subjects(client.fetch(read_all=False)) == ["late"]

"""A real Exim relaying into pigeon: every message arrives exactly once.

Exim pipelines the end of data with QUIT and shuts down its side of the
connection before it reads the replies. A server that closes at that EOF
without writing the 250 has queued the message, but Exim keeps it and tries
again: the message is delivered twice. (Exim is unpacked by .ci/run;
see pigeon.testing.exim.)
"""

from __future__ import annotations

import email
import re
from collections import Counter

import pytest

from pigeon.testing.exim import EximRelay, require_exim
from pigeon.testing.live import wait_for

pytestmark = pytest.mark.e2e

MESSAGES = 20
CONFIG = '[domains."pigeon.test"]\nmailboxes = ["rcpt"]\n'


def _message(n: int) -> bytes:
    return (
        f"From: sender@exim.test\nTo: rcpt@pigeon.test\nSubject: message {n}\n"
        f"Message-ID: <exim-{n}@exim.test>\n\nbody {n}\n"
    ).encode()


def _message_ids(maildir) -> Counter:
    ids: Counter = Counter()
    new = maildir / "new"
    for path in new.iterdir() if new.is_dir() else ():
        ids[email.message_from_bytes(path.read_bytes())["Message-ID"]] += 1
    return ids


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "starttls"])
def test_exim_relaying_into_pigeon_delivers_each_message_once(pigeon_factory, tls):
    binary = require_exim()
    proc = pigeon_factory(CONFIG)
    with EximRelay(binary, proc.port, tls=tls) as exim:
        _relay_and_check(exim, proc, tls)


def _relay_and_check(exim: EximRelay, proc, tls: bool) -> None:
    for n in range(MESSAGES):
        exim.submit("sender@exim.test", "rcpt@pigeon.test", _message(n))
    # A message whose 250 Exim did not see is still in its queue: a queue run
    # sends it again, which is how the duplicates showed in production.
    exim.run_queue()
    maildir = proc.data_dir / "mailboxes" / "pigeon.test" / "rcpt"
    expected = {f"<exim-{n}@exim.test>" for n in range(MESSAGES)}
    ids = wait_for(
        lambda: (lambda c: c if set(c) >= expected else None)(_message_ids(maildir)), timeout=30
    )
    log = exim.mainlog()
    assert ids, f"not every message arrived: {_message_ids(maildir)}\n{log}"
    assert ids == Counter({mid: 1 for mid in expected}), f"duplicates: {ids}\n{log}"
    assert exim.queue_count() == 0, log
    # Exim saw every 250, and pigeon logged each of those queue ids as queued once.
    queued_as = re.findall(r'C="250 2\.0\.0 Ok: queued as (\w+)"', log)
    assert len(queued_as) == MESSAGES and len(set(queued_as)) == MESSAGES, log
    # (the log is written by a background thread: wait for the last lines)
    pigeon_log = wait_for(
        lambda: (lambda text: text if all(f"{q}: client=" in text for q in queued_as) else None)(
            proc.log()
        )
    )
    assert pigeon_log, proc.log()
    for qid in queued_as:
        assert len(re.findall(rf"{qid}: client=.*\(queued\)", pigeon_log)) == 1, qid
    if tls:
        assert pigeon_log.count("TLS established") >= MESSAGES

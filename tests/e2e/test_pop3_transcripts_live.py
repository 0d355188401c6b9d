"""Every POP3 transcript (tests/transcripts/pop3/*.pop3) against a live pigeon.

The same files run in memory through the driver (tests/unit/readers/
test_pop3_transcripts.py); here they go through the listeners, a real TLS
handshake for `!starttls`, and the server's own account store and Maildir.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pigeon.auth.accounts import AccountStore
from pigeon.testing.live import PigeonProcess
from pigeon.testing.pop3_transcript import fixture_maildir, write_fixture
from pigeon.testing.transcript import TRANSCRIPT_USER, load_transcript
from pigeon.testing.transcript_live import live_skip_reason, run_live

pytestmark = pytest.mark.e2e

FILES = sorted((Path(__file__).parent.parent / "transcripts" / "pop3").glob("*.pop3"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = PigeonProcess(
        tmp_path_factory.mktemp("pop3-live"),
        # Each transcript fails a login or two: no slowing down between them.
        '[domains."localhost"]\n[auth]\nslow_after = 100\nmax_failures = 100\n',
        hostname="localhost",
    )
    with AccountStore.in_data_dir(proc.data_dir).open() as accounts:
        accounts.add(*TRANSCRIPT_USER)
    yield proc.start()
    proc.stop()


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_pop3_transcript_live(path, server):
    transcript = load_transcript(path)
    reason = live_skip_reason(transcript)
    if reason:
        pytest.skip(f"in-memory only: {reason}")
    write_fixture(fixture_maildir(server.data_dir / "mailboxes"))
    run_live(transcript, "127.0.0.1", server.pop3_port)

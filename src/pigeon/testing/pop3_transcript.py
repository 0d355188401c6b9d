r"""POP3 transcripts (`tests/transcripts/pop3/*.pop3`) played in memory through the real driver.

The format is the SMTP transcripts' (pigeon.testing.transcript: `C:`, `R:`,
`S:`, `S~`, `!starttls`, `!wait`, `!close`; no `!config`). The conversation
runs through `readers.pop3_driver.Pop3Connection` over a `MemoryStream`,
with the real login rules over a real account store and a real Maildir:

  * account `alice@localhost`, password `secret` (TRANSCRIPT_USER), on the
    plaintext role "pop3" (STLS offered; `!starttls` completes it);
  * her Maildir holds FIXTURE, three messages, in this order:
      1  new/1700000001.M1P1Q1.test,S=56,W=61       "Subject: one" (a line
         starting with ".", to see the stuffing): 61 octets
      2  new/1700000002.M1P1Q1.test                 no size in the name: 40
         octets with CRLF
      3  cur/1700000003.M1P1Q1.test:2,S             18 octets with CRLF
  * time is the stream's: `!wait 600` fires the auto-logout (600 s).

The same files run against a live pigeon (tests/e2e/test_pop3_transcripts_live.py:
`write_fixture` lays the same Maildir out in its data directory first).

`run_pop3(text)` returns what the run left: the output, whether the
connection was closed, and the unique ids still in the Maildir (so a test
can see that DELE took effect at QUIT only). Mismatches raise
TranscriptMismatch naming the line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pigeon.auth.accounts import AccountStore
from pigeon.auth.ratelimit import FailureLimiter, LimitSettings
from pigeon.auth.service import AuthService
from pigeon.config.schema import Config
from pigeon.mailstore import ensure_maildir, maildir_path
from pigeon.mailstore.maildrop import scan
from pigeon.obs.maillog import MailLog
from pigeon.readers.login import ReaderLogins
from pigeon.readers.pop3_driver import Pop3Connection
from pigeon.readers.pop3_service import role_contexts
from pigeon.testing.memstream import MemoryStream
from pigeon.testing.transcript import MEMORY_TLS, TRANSCRIPT_USER, parse_transcript
from pigeon.testing.transcript_memory import RunResult, play_with_driver, transcript_accounts

__all__ = ["FIXTURE", "Pop3Run", "fixture_maildir", "run_pop3", "write_fixture"]

#: (subdirectory, file name, content) of the transcripts' maildrop (module docstring).
FIXTURE = (
    (
        "new",
        "1700000001.M1P1Q1.test,S=56,W=61",
        b"From: a@example.test\nSubject: one\n\nfirst body\n.dot line\n",
    ),
    ("new", "1700000002.M1P1Q1.test", b"Subject: two\n\nline 1\nline 2\nline 3\n"),
    ("cur", "1700000003.M1P1Q1.test:2,S", b"Subject: three\n\n"),
)


def fixture_maildir(mailbox_root: Path) -> Path:
    """The Maildir of TRANSCRIPT_USER under `mailbox_root`."""
    local, _, domain = TRANSCRIPT_USER[0].partition("@")
    return maildir_path(mailbox_root, local, domain)


def write_fixture(maildir: Path) -> None:
    """Make `maildir` hold exactly FIXTURE (a live server's, before each transcript)."""
    ensure_maildir(maildir, fsync=False)
    for sub in ("new", "cur"):
        for old in (maildir / sub).iterdir():
            old.unlink()
    for sub, file_name, content in FIXTURE:
        (maildir / sub / file_name).write_bytes(content)


@dataclass
class Pop3Run:
    output: bytes = b""
    closed: bool = False
    remaining: list[str] = field(default_factory=list)  # unique ids left in the Maildir


def run_pop3(text: str, name: str = "<pop3 transcript>", **context: Any) -> Pop3Run:
    """Play a POP3 transcript (module docstring); `context` overrides Pop3Context fields."""
    return asyncio.run(_run(text, name, context))


async def _run(text: str, name: str, overrides: dict[str, Any]) -> Pop3Run:
    transcript = parse_transcript(text, name)
    with tempfile.TemporaryDirectory(prefix="pigeon-pop3-transcript-") as tmp:
        root = Path(tmp) / "mailboxes"
        maildir = fixture_maildir(root)
        write_fixture(maildir)
        limiter = FailureLimiter(LimitSettings())
        auth = AuthService(
            AccountStore.in_data_dir(transcript_accounts()).open(), limiter, workers=1
        )
        stream = MemoryStream(MEMORY_TLS)
        logins = ReaderLogins(auth, MailLog(), protocol="pop3", clock=stream.clock)
        # The service's own contexts under the default configuration; the
        # handshake is the stream's.
        config = Config(data_dir=Path(tmp))
        context = role_contexts(config, logins, cast(Any, lambda: None))["pop3"]
        context = dataclasses.replace(context, fsync=False, **overrides)
        driver = Pop3Connection(cast(Any, stream), context, ("127.0.0.1", 40000)).run()
        try:
            await play_with_driver(transcript, stream, driver, RunResult())
        finally:
            auth.close()
        return Pop3Run(bytes(stream.output), stream.closed, [m.uid for m in scan(maildir)])

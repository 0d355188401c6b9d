"""Every transcript in tests/transcripts, played against a live pigeon server.

The same files run in memory (tests/unit/test_transcripts.py); here they go
through the asyncio driver, the real recipient policy and the durable queue.
Transcripts with the same !config share one server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pigeon.auth.accounts import AccountStore
from pigeon.testing.live import PigeonProcess
from pigeon.testing.transcript import TRANSCRIPT_USER, load_transcript
from pigeon.testing.transcript_live import (
    LIVE_BASE_CONFIG,
    live_config_toml,
    live_role,
    live_skip_reason,
    run_live,
)

pytestmark = pytest.mark.e2e

FILES = sorted((Path(__file__).parent.parent / "transcripts").glob("*.smtp"))


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    running: dict[str, PigeonProcess] = {}

    def get(config_toml: str) -> PigeonProcess:
        if config_toml not in running:
            workdir = tmp_path_factory.mktemp("live")
            proc = PigeonProcess(workdir, LIVE_BASE_CONFIG + config_toml, hostname="localhost")
            with AccountStore.in_data_dir(proc.data_dir).open() as accounts:
                accounts.add(*TRANSCRIPT_USER)  # the account DefaultPolicy knows
            running[config_toml] = proc.start()
        return running[config_toml]

    yield get
    for proc in running.values():
        proc.stop()


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript_live(path, servers):
    transcript = load_transcript(path)
    reason = live_skip_reason(transcript)
    if reason:
        pytest.skip(f"in-memory only: {reason}")
    server = servers(live_config_toml(transcript))
    port = server.submission_port if live_role(transcript) == "submission" else server.port
    run_live(transcript, "127.0.0.1", port)


@pytest.mark.parametrize(
    "script",
    [
        "S: 220 localhost ESMTP pigeon\nC: NOOP\nS: 250 2.0.0 Okay\n",  # wrong text
        "S: 220 localhost ESMTP pigeon\nC: NOOP\n",  # unexpected output
        "S: 220 localhost ESMTP pigeon\nC: NOOP\nS: 250 Ok\n!close\n",  # no close
    ],
)
def test_live_runner_detects_differences(script, servers):
    from pigeon.testing.transcript import TranscriptMismatch, parse_transcript

    server = servers("")
    with pytest.raises(TranscriptMismatch):
        run_live(parse_transcript(script, "negative"), "127.0.0.1", server.port, reply_timeout=1.0)

"""Run every tests/transcripts/*.smtp conversation in memory: the real driver,
pipeline, login rules and queue store, without a socket (testing/transcript_memory.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pigeon.testing.transcript import TranscriptMismatch, load_transcript, parse_transcript
from pigeon.testing.transcript_memory import run_in_memory

TRANSCRIPTS = sorted((Path(__file__).resolve().parents[1] / "transcripts").glob("*.smtp"))


def test_there_are_transcripts() -> None:
    assert len(TRANSCRIPTS) >= 40


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript_in_memory(path: Path) -> None:
    run_in_memory(load_transcript(path))


def test_smuggling_never_yields_a_second_message() -> None:
    for path in TRANSCRIPTS:
        if path.stem.startswith("smuggle-"):
            result = run_in_memory(load_transcript(path))
            assert len(result.messages) == 0, path.stem


@pytest.mark.parametrize(
    "script",
    [
        "S: 220 localhost ESMTP pigeon\nC: NOOP\nS: 250 2.0.0 Okay\n",  # wrong text
        "S: 220 localhost ESMTP pigeon\nC: NOOP\n",  # unexpected output
        "S: 220 localhost ESMTP pigeon\nC: NOOP\nS: 250 Ok\n!close\n",  # no close
        "S: 220 localhost ESMTP pigeon\nC: QUIT\nS: 221 localhost closing connection\n",  # closed
        "S: 220 localhost ESMTP pigeon\nC: NOOP\nS: 250 Ok\n!starttls\n",  # no STARTTLS
    ],
)
def test_memory_runner_detects_differences(script: str) -> None:
    with pytest.raises(TranscriptMismatch):
        run_in_memory(parse_transcript(script, "negative"))


def test_memory_runner_asks_the_real_pipeline() -> None:
    """known.example is a local domain with a mailbox list (the live runner's
    configuration): another mailbox there is unknown (550 5.1.1), not a
    relay attempt (the fixed fake the runner had answered 554 5.7.1)."""
    run_in_memory(
        parse_transcript(
            "S: 220 localhost ESMTP pigeon\n"
            "C: HELO client.example\n"
            "S: 250 localhost\n"
            "C: MAIL FROM:<someone@elsewhere.example>\n"
            "S: 250 Ok\n"
            "C: RCPT TO:<other@known.example>\n"
            "S: 550 Error: recipient address rejected: user unknown\n"
            "C: RCPT TO:<known@known.example>\n"
            "S: 250 Ok\n"
            "C: RSET\n"
            "S: 250 Ok\n",
            "real-pipeline",
        )
    )

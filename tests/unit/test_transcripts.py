"""Run every tests/transcripts/*.smtp conversation in memory against ServerSession."""

from __future__ import annotations

from pathlib import Path

import pytest

from pigeon.testing.transcript import load_transcript, run_in_memory

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

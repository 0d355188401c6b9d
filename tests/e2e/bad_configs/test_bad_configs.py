"""Every tests/e2e/bad_configs/c-NN-*/config.toml is refused by `pigeon check-config`.

Each case directory holds config.toml and expected_error: one line per
problem the file has, "LINE: key: message" (the start of the message is
enough). The test runs `python -m pigeon check-config FILE` as a subprocess,
the way an operator would, and expects exit status 78 (EX_CONFIG) and
exactly one line "pigeon: FILE:LINE: key: message" on stderr for each
expected line, in that order: every problem is reported in one run, each
with its line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CASES = sorted(p for p in HERE.iterdir() if p.is_dir() and p.name.startswith("c-"))


def test_there_are_cases():
    assert len(CASES) >= 12


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_config(case: Path):
    config = case / "config.toml"
    expected = (case / "expected_error").read_text(encoding="utf-8").strip().splitlines()
    done = subprocess.run(
        [sys.executable, "-m", "pigeon", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 78, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == len(expected), done.stderr  # one line each, no traceback
    for line, wanted in zip(lines, expected):
        assert line.startswith(f"pigeon: {config}:{wanted}"), (line, wanted)

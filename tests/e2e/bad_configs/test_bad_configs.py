"""Every tests/e2e/bad_configs/c-NN-*/config.toml is refused by `pigeon check-config`.

Each case directory holds config.toml and expected_error (a substring of the
message). The test runs `python -m pigeon check-config FILE` as a subprocess,
the way an operator would, and expects exit status 78 (EX_CONFIG) and
"pigeon: FILE: ..." on stderr containing the expected text.
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
    expected = (case / "expected_error").read_text(encoding="utf-8").strip()
    done = subprocess.run([sys.executable, "-m", "pigeon", "check-config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith(f"pigeon: {config}: "), done.stderr
    assert expected in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1, "one line, no traceback"

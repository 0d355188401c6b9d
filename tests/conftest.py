"""Fixtures shared by the unit and end-to-end tests."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DATADIR_0_1_0 = FIXTURES / "datadir-0.1.0"


@pytest.fixture
def datadir_0_1_0() -> Callable[[Path], dict]:
    """`copy(dest)`: the data directory written by pigeon 0.1.0
    (tests/fixtures/make_datadir_0_1_0.py) copied to `dest`, with the modes
    pigeon gives its files (git keeps none: directories 0700, files 0600);
    returns its description (datadir-0.1.0.json: messages, accounts)."""

    def copy(dest: Path) -> dict:
        shutil.copytree(DATADIR_0_1_0, dest)
        for path in [dest, *dest.rglob("*")]:
            os.chmod(path, 0o700 if path.is_dir() else 0o600)
        return json.loads((FIXTURES / "datadir-0.1.0.json").read_text())

    return copy


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL cluster for the whole session (pigeon.testing.postgres),
    started on first use; skips (fails under CI=true) when PostgreSQL is missing."""
    from pigeon.testing.postgres import PostgresCluster

    with PostgresCluster() as cluster:
        yield cluster


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test an old build: a compiled module (setup.py, pigeon/compiled.py)
    whose extension is older than its source would run instead of the edit."""
    from pigeon.compiled import stale

    old = stale()
    if old and os.environ.get("PIGEON_PURE") != "1":
        pytest.exit(
            "extensions older than their sources: "
            + ", ".join(old)
            + ": run `make venv` to compile them again (or set PIGEON_PURE=1 for plain Python)",
            returncode=4,
        )

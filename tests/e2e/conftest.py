"""Fixtures for end-to-end tests: a real pigeon process on a loopback port."""

from __future__ import annotations

import shutil

import pytest
from reader_helpers import make_open_tmp, start_readers

from pigeon.testing.live import PigeonProcess


@pytest.fixture
def pigeon_factory(tmp_path):
    started: list[PigeonProcess] = []

    def make(config_text: str = "", **kwargs) -> PigeonProcess:
        proc = PigeonProcess(tmp_path / f"p{len(started)}", config_text, **kwargs)
        proc.workdir.mkdir(parents=True, exist_ok=True)
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def pigeon(pigeon_factory):
    """pigeon with its defaults: local domain localhost, no relaying."""
    return pigeon_factory(
        '[domains."localhost"]\n[domains."example.test"]\nmailboxes = ["alice", "bob"]\n'
        '[aliases]\n"team@example.test" = ["alice@example.test", "bob@example.test"]\n'
    )


@pytest.fixture(autouse=True)
def _no_server_outlives_its_test(tmp_path):
    """Stop every pigeon a test started in its own directory and left running (a
    failed assertion before its stop, or a test that never stops it): the next
    tests, and the machine, must not inherit it. Servers a module- or
    session-scoped fixture shares (in their own tmp_path_factory directories)
    are that fixture's to stop."""
    before = set(PigeonProcess.started)
    yield
    for server in PigeonProcess.started - before:
        if server.workdir.is_relative_to(tmp_path):
            server.stop()


@pytest.fixture
def open_tmp():
    """A directory Dovecot's mail user may search (0755, tmp_path's parents are
    not), removed afterwards (tests/e2e/reader_helpers.py)."""
    path = make_open_tmp()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["pigeon", "dovecot"])
def readers(request, open_tmp):
    """A mail-reader server with alice's mailbox: pigeon, and Dovecot as the
    reference the same client scenario must pass on (reader_helpers)."""
    server = start_readers(request.param, open_tmp)
    yield server
    server.stop()

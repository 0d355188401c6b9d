"""Fixtures for end-to-end tests: a real pigeon process on a loopback port."""

from __future__ import annotations

import pytest

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

"""Fixtures for the admin tests: the in-process back end of pigeon.testing.admin_backend."""

from __future__ import annotations

import pytest

from pigeon.testing.admin_backend import Backend

__all__ = ["Backend", "backend"]


@pytest.fixture
def backend(tmp_path):
    b = Backend(tmp_path)
    yield b
    b.close()

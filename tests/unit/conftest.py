"""Fixtures shared by unit tests of several packages."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def no_system_config(monkeypatch, tmp_path_factory):
    """Commands under test never read this machine's /etc/pigeon/pigeon.toml or $PIGEON_CONFIG."""
    monkeypatch.setattr(
        "pigeon.cli._config.SYSTEM_CONFIG",
        tmp_path_factory.getbasetemp() / "no-system-config" / "pigeon.toml",
    )
    monkeypatch.delenv("PIGEON_CONFIG", raising=False)


@pytest.fixture
def restore_logging():
    """Undo what a test's setup_logging() did to the "pigeon" and "asyncio" loggers."""
    saved = {}
    for name in ("pigeon", "asyncio"):
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if handler not in handlers:
                logger.removeHandler(handler)
                handler.close()
        logger.setLevel(level)
        logger.propagate = propagate

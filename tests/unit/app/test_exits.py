"""pigeon.app.exits: the one table from start-up failures to `pigeon serve`'s exit statuses.

The statuses themselves are proven end to end, in both modes, by
tests/e2e/test_exit_modes.py and tests/unit/cli/test_exit_statuses.py.
"""

from __future__ import annotations

import logging
import re

import pytest

from pigeon.admin.control import ControlError
from pigeon.admin.pidfile import PidFileError
from pigeon.app.datalock import DataDirInUse
from pigeon.app.exits import exit_status
from pigeon.auth.accounts import AccountError
from pigeon.cli.serve import EPILOG
from pigeon.config.schema import Config
from pigeon.net.listener import ListenError
from pigeon.net.tls import TlsError
from pigeon.privileges import PrivilegeError
from pigeon.vocab.errors import StoreError

CONFIG = Config(data_dir="/srv/pigeon")  # type: ignore[arg-type]

CASES = [
    (ListenError("cannot listen on 127.0.0.1:25 (smtp): Address already in use"), 69),
    (ControlError("control.sock: another pigeon is answering"), 69),
    (PidFileError("admin.pid_file: pigeon (pid 7) is already running"), 69),
    (StoreError("queue database is damaged"), 73),
    (DataDirInUse("the data directory /srv/pigeon is in use by pigeon (pid 7)"), 75),
    (AccountError("accounts.db: not a database"), 73),
    (PermissionError(13, "Permission denied"), 73),
    (PrivilegeError('user: cannot switch to "root": not started as root'), 77),
    (TlsError("cert.pem: not a PEM certificate"), 78),
]


@pytest.mark.parametrize("exc, status", CASES, ids=lambda c: type(c).__name__)
def test_each_failure_has_its_status_and_one_log_line(exc, status, caplog):
    with caplog.at_level(logging.ERROR, logger="pigeon"):
        assert exit_status(exc, CONFIG) == status
    (record,) = caplog.records
    assert record.exc_info is None  # a condition, not a bug: no traceback
    if isinstance(exc, PermissionError):
        assert record.getMessage() == f"data directory /srv/pigeon is not usable: {exc}"
    else:
        assert record.getMessage() == str(exc)


def test_a_bug_has_no_status_and_is_not_logged(caplog):
    for bug in (RuntimeError("bug"), KeyError("x"), OSError(5, "I/O error")):
        assert exit_status(bug, CONFIG) is None
    assert caplog.records == []


def test_the_statuses_are_the_documented_ones():
    paragraph = EPILOG[EPILOG.index("exit status") :]
    documented = {int(n) for n in re.findall(r"\b(\d{1,3})\b", paragraph)}
    assert {status for _, status in CASES} | {0} == documented

"""How `pigeon serve` ends: one table from start-up failures to exit statuses.

Contract:
  * The statuses are those documented in docs/admin.md and `pigeon serve
    --help` (sysexits.h): 0 after a clean shutdown; 69 (EX_UNAVAILABLE) a
    listener, the control socket or the PID file is taken; 73
    (EX_CANTCREAT) data_dir, its queue database or its account store is
    unusable, or data in it is of a format newer than this pigeon's; 75
    (EX_TEMPFAIL) another pigeon owns data_dir (its lock, app/datalock.py:
    stop it first, or `pigeon restart`), or a live node of the shared
    queue runs under this node's `queue.node` (store/pg/nodes.py); 77 (EX_NOPERM) pigeon cannot become the configured user; 78
    (EX_CONFIG) a broken TLS certificate or key, or a `[[plugins]]` entry
    that cannot be loaded (its problems listed, one line each, naming the
    key). (A configuration that does not load is 78 too, decided by the CLI
    before anything starts.)
  * `exit_status(exc, config)` is the ONE place that maps a failure to its
    status, for every process of both modes (one process, `workers > 1`):
    the main process, its workers, and the start-up steps run before they
    are forked. It logs the failure in one line (no traceback: these are
    conditions, not bugs) and returns the status; for anything else (a bug)
    it returns None and logs nothing, so the caller lets it propagate with
    its traceback.
"""

from __future__ import annotations

import logging

from pigeon.admin.control import ControlError
from pigeon.admin.pidfile import PidFileError
from pigeon.app.datalock import DataDirInUse
from pigeon.auth.accounts import AccountError
from pigeon.config.load import ConfigError
from pigeon.config.schema import Config
from pigeon.dataformat import FormatError
from pigeon.net.listener import ListenError
from pigeon.net.tls import TlsError
from pigeon.privileges import PrivilegeError
from pigeon.store.pg.nodes import NodeNameInUse
from pigeon.vocab.errors import StoreError

__all__ = [
    "EX_CANTCREAT",
    "EX_CONFIG",
    "EX_NOPERM",
    "EX_OK",
    "EX_TEMPFAIL",
    "EX_UNAVAILABLE",
    "exit_status",
]

log = logging.getLogger("pigeon")

EX_OK = 0
EX_UNAVAILABLE = 69  # sysexits.h: a listener, the control socket or the PID file is taken
EX_CANTCREAT = 73  # sysexits.h: data_dir, the queue database or the account store is unusable
EX_TEMPFAIL = 75  # sysexits.h: another pigeon owns data_dir (try again once it has stopped)
EX_NOPERM = 77  # sysexits.h: could not switch to the configured user
EX_CONFIG = 78  # sysexits.h: a broken TLS certificate or key, a plugin that does not load

#: Failure -> status, first match wins (PermissionError has its own message below).
_STATUSES: tuple[tuple[type[BaseException], int], ...] = (
    (DataDirInUse, EX_TEMPFAIL),
    (NodeNameInUse, EX_TEMPFAIL),  # a live node runs under our queue.node (store/pg/nodes.py)
    (ListenError, EX_UNAVAILABLE),
    (ControlError, EX_UNAVAILABLE),
    (PidFileError, EX_UNAVAILABLE),
    (PrivilegeError, EX_NOPERM),
    (TlsError, EX_CONFIG),
    (ConfigError, EX_CONFIG),  # a [[plugins]] entry (hooks/load.py)
    (FormatError, EX_CANTCREAT),  # data of a newer format (docs/upgrade.md)
    (AccountError, EX_CANTCREAT),
    (StoreError, EX_CANTCREAT),  # a damaged queue.db, a rebuild running
)


def exit_status(exc: BaseException, config: Config) -> int | None:
    """The documented status for `exc`, logged in one line; None for a bug (see the contract)."""
    if isinstance(exc, PermissionError):
        log.error("data directory %s is not usable: %s", config.data_dir, exc)
        return EX_CANTCREAT
    for kind, status in _STATUSES:
        if isinstance(exc, kind):
            for problem in exc.problems if isinstance(exc, ConfigError) else [exc]:
                log.error("%s", problem)
            return status
    return None

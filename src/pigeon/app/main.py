"""`pigeon serve`'s one entry point: configuration in, a running MTA out, an exit status back.

Contract:
  * `run(config, reload_config)` blocks until SIGTERM/SIGINT, then drains
    (app/lifecycle.py) and returns the process exit status; the statuses and
    their causes are app/exits.py's, the same with one process and with
    `workers > 1` (app/workers.py).
  * Before anything is built: the umask is made private (077), valid but
    risky settings (pigeon.config.risks: an open relay...) are logged as
    warnings, and data_dir is created when missing and checked: not a
    directory, not creatable or not writable is exit 73 (EX_CANTCREAT),
    logged once, never a TLS error's 78; a data_dir that is a symbolic link
    while root will give it to `user` is 77 (pigeon.privileges).
  * `reload_config` loads the configuration again (same file and flags) on
    SIGHUP or `pigeon reload`; without it a reload only re-reads the TLS
    certificate. `config_path` is the file it reads (None: the embedded
    defaults), the one the web console's settings pages edit.
  * Then the data-directory lock (app/datalock.py): another pigeon owning
    data_dir is refused in one line, exit 75, before anything else is logged
    or built; a process started by `pigeon restart` waits for it instead
    (app/restart.py). Listening sockets passed in the systemd protocol
    (socket activation, `pigeon restart`) are taken once, here
    (net/inherit.py); one that serves no role is exit 69.
  * One process: the "full" role (app/roles.py) under the lifecycle.
    `workers > 1`: app/workers.py.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from pigeon.app.datalock import DataDirLock
from pigeon.app.exits import EX_CANTCREAT, EX_NOPERM, EX_TEMPFAIL, EX_UNAVAILABLE
from pigeon.app.handover import Predecessor
from pigeon.app.lifecycle import Lifecycle
from pigeon.app.roles import full_role
from pigeon.app.workers import run_with_workers
from pigeon.config.risks import risks
from pigeon.config.schema import Config
from pigeon.net.inherit import assign, listen_fds
from pigeon.net.listener import ListenError
from pigeon.net.smtp_service import SMTP_ROLES, smtp_listeners
from pigeon.privileges import PrivilegeError, make_data_dir, tighten_umask
from pigeon.readers.imap_service import IMAP_ROLES, imap_listeners
from pigeon.readers.pop3_service import POP3_ROLES, pop3_listeners

__all__ = ["run"]

log = logging.getLogger("pigeon")


def _data_dir_problem(config: Config) -> str | None:
    """Why data_dir cannot hold pigeon's data (after make_data_dir), or None."""
    if not config.data_dir.is_dir():
        return "not a directory"
    if not os.access(config.data_dir, os.W_OK | os.X_OK):
        return "not writable by this user"
    return None


def run(
    config: Config,
    reload_config: Callable[[], Config] | None = None,
    *,
    config_path: Path | None = None,
) -> int:
    """Run pigeon in the foreground until SIGTERM/SIGINT (see the module contract)."""
    tighten_umask()  # queue files, Maildirs, sockets: private to pigeon's user
    try:
        # Before anything writes there (the self-signed certificate, the
        # queue): an unusable data_dir is 73, never a TLS error's 78.
        make_data_dir(config.data_dir, config.user)
        problem = _data_dir_problem(config)
    except PrivilegeError as exc:
        log.error("%s", exc)
        return EX_NOPERM
    except FileExistsError:
        problem = "not a directory"
    except OSError as exc:
        problem = exc.strerror or str(exc)
    if problem is not None:
        log.error("data directory %s is not usable: %s", config.data_dir, problem)
        return EX_CANTCREAT
    # The data-directory lock before anything else is said or built: a second
    # pigeon on this data_dir is refused in one line (app/datalock.py). One
    # started by `pigeon restart` waits for it instead (app/restart.py).
    predecessor = Predecessor.from_environment()
    lock = DataDirLock(config.data_dir)
    if not lock.try_acquire() and predecessor is None:
        log.error("%s", lock.in_use())
        return EX_TEMPFAIL
    log.info("pigeon starting (pid %d)", os.getpid())
    for risk in risks(config):
        log.warning("configuration: %s: %s", risk.key, risk.message)
    try:
        inherited, restart = listen_fds()
        plan = assign(
            inherited,
            smtp_listeners(config, tls=True) + pop3_listeners(config) + imap_listeners(config),
            SMTP_ROLES + POP3_ROLES + IMAP_ROLES,
            restart=restart,
        )
    except ListenError as exc:
        log.error("%s", exc)
        return EX_UNAVAILABLE
    if config.workers > 1:
        return run_with_workers(
            config,
            reload_config,
            lock=lock,
            inherited=plan,
            predecessor=predecessor,
            config_path=config_path,
        )
    return Lifecycle(
        lambda: full_role(config),
        config,
        load_config=reload_config,
        lock=lock,
        inherited=plan,
        predecessor=predecessor,
        config_path=config_path,
    ).run()

"""Several processes sharing the listening sockets (config `workers`).

Contract:
  * With `workers = N > 1`, the main process, before anything else runs
    (`prepare`): makes the TLS files (so no two processes race to create a
    self-signed certificate), recovers the queue (recovery must never run
    while another process has a commit half-way), creates the account store
    and the abuse controls' state file (so no two processes race to set up
    a schema and WAL mode), upgrades
    data of an older format or refuses a newer one (docs/upgrade.md), binds
    every listener, opens a trigger pipe, and forks N - 1 workers. A failure
    there ends the process with the same status as in one process
    (app/exits.py). Then every process accepts connections on the same
    sockets (the kernel hands each new connection to one of them).
  * Roles (app/roles.py): the workers are "acceptor" processes: they commit
    to the shared queue (SQLite in WAL mode and content files, both safe
    across processes; queue IDs end in a per-process tail drawn after the
    fork, and content files are created exclusively) and write one byte to
    the trigger pipe after each 250, like Postfix's pickup trigger. The main
    process is "full": it reads the pipe and nudges its queue manager, the
    single owner of queue state and the only one delivering.
  * Every process runs under the same lifecycle (app/lifecycle.py), so
    signals and exit statuses are the same as with one process. The main
    process passes SIGTERM on for a SIGTERM or SIGINT (the workers ignore
    SIGINT: a Ctrl-C reaches the whole group), `pigeon stop` included, and
    SIGHUP at every reload (`pigeon reload` included: the control socket
    lives in the main process; the outcome it prints is the main process's,
    the workers load the same file). Each process makes the same bounded
    stop (app/lifecycle.py) with its own sessions. The main process waits
    for the workers at most until its own stop deadline (grace + 4 s after
    the stop began, app/deadline.py), then kills any left (SIGKILL, logged):
    so the whole group is gone within grace + 5 s, as one process is.
  * Limits are per process: `limits.connections` and `connections_per_ip`
    apply to each worker. The control socket and the metrics endpoint live
    in the main process and count its own sessions only.
  * Workers die with the main process (PR_SET_PDEATHSIG): a crash of the
    main process is a crash of all, so a restart finds the ports free.
  * The data-directory lock (app/datalock.py) is the main process's,
    taken before `prepare`; the workers share its descriptor. Inherited
    sockets (net/inherit.py: socket activation, `pigeon restart`) are kept
    and shared like the bound ones. Started by `pigeon restart` while the
    old pigeon still runs, the main process checks its certificate, tells
    the old one to retire at once (it stops accepting: connections wait in
    the kernel's queue of the shared sockets) and waits for the lock
    (bounded) before `prepare`: recovery must not run while the old
    processes may still commit. A `pigeon restart` of this pigeon sends
    the workers RETIRE_SIGNAL (app/restart.py).
  * Partial: a worker that dies is not restarted (the others go on; the
    main process logs it when it reaps it at exit).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from pigeon.app.datalock import DataDirLock
from pigeon.app.deadline import HARD_MARGIN
from pigeon.app.exits import EX_TEMPFAIL, exit_status
from pigeon.app.handover import Predecessor
from pigeon.app.lifecycle import CONTROL_SIGNALS, Lifecycle
from pigeon.app.restart import TAKEOVER_MARGIN, Restart
from pigeon.app.roles import acceptor_role, full_role
from pigeon.app.wiring import abuse_state
from pigeon.config.schema import Config, ListenAddress
from pigeon.mailstore.layout import open_mailboxes
from pigeon.net.inherit import ListenPlan
from pigeon.net.listener import bind_sockets
from pigeon.net.smtp_service import smtp_listeners
from pigeon.net.tls import TlsProvider
from pigeon.obs.logsetup import flush_logs, setup_logging
from pigeon.store.factory import account_store, queue_store

__all__ = ["prepare", "run_with_workers"]

log = logging.getLogger("pigeon")

Sockets = dict[tuple[ListenAddress, str], socket.socket]

#: Seconds between two looks at the workers while the main process waits for them.
REAP_POLL = 0.02


def prepare(config: Config, inherited: ListenPlan | None = None) -> Sockets:
    """What must happen once, before the fork (module contract); raises what
    app/exits.py maps to a status."""
    TlsProvider.create(config)  # data_dir was made by pigeon.app.main.run
    store = queue_store(config)
    store.open(owner=True)  # a damaged queue.db, a rebuild running: StoreError
    try:
        report = store.recover()
    finally:
        store.close()
    account_store(config).open(owner=True).close()
    abuse_state(config).open().close()  # its schema and WAL mode, once
    open_mailboxes(config.mailbox_root)  # its format, like the stores' (docs/upgrade.md)
    log.info(
        "queue recovered: %d entries, %d reactivated, %d corrupt",
        report.queued,
        len(report.reactivated),
        len(report.missing_content),
    )
    # TLS is always set up (a self-signed certificate at worst), so all roles.
    # Inherited sockets (net/inherit.py) are kept; the rest are bound now.
    plan = inherited or ListenPlan()
    managed = {role.name for (_, role), _sock in plan.managed}
    missing = [
        (addr, role)
        for addr, role in smtp_listeners(config, tls=True)
        if role.name not in managed and (addr, role.name) not in plan.bound
    ]
    return {**plan.bound, **bind_sockets(missing)}


def _after_predecessor(config: Config, lock: DataDirLock, predecessor: Predecessor | None) -> bool:
    """Started by `pigeon restart` with workers: the queue is recovered before
    any process of ours accepts (see the module contract), so we tell the old
    pigeon to stop accepting now and wait for it to end; connections wait in
    the kernel's queue of the shared sockets meanwhile. False: it did not end."""
    if predecessor is None or lock.held:
        return True
    # Refused while the old one still serves: a broken certificate, files we may not create.
    TlsProvider.create(config)
    Restart.preflight(config)
    predecessor.accepting()
    bound = 2 * config.timeouts.shutdown_grace + TAKEOVER_MARGIN
    holder = lock.holder()
    if lock.wait_blocking(bound):
        log.info("restart: the previous pigeon (pid %s) has ended; this one owns the queue", holder)
        return True
    log.error("%s", lock.in_use())
    return False


def run_with_workers(
    config: Config,
    load_config: Callable[[], Config] | None,
    *,
    lock: DataDirLock | None = None,
    inherited: ListenPlan | None = None,
    predecessor: Predecessor | None = None,
    config_path: Path | None = None,
) -> int:
    """The `workers > 1` form of pigeon.app.main.run (see the module contract)."""
    lock = lock or DataDirLock(config.data_dir)
    try:
        if not _after_predecessor(config, lock, predecessor):
            return EX_TEMPFAIL
        lock.acquire()  # DataDirInUse; the workers share it (app/datalock.py)
        sockets = prepare(config, inherited)
    except Exception as exc:
        status = exit_status(exc, config)
        if status is None:
            raise
        return status
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    children: list[int] = []
    parent = os.getpid()
    managed = ListenPlan(managed=inherited.managed) if inherited else None
    # The listeners answer as soon as a worker runs: until each process has
    # its handlers (Lifecycle unblocks them), a stop signal waits instead of
    # killing it.
    signal.pthread_sigmask(signal.SIG_BLOCK, CONTROL_SIGNALS)
    for _ in range(config.workers - 1):
        pid = os.fork()
        if pid == 0:  # a worker
            _die_with(parent)
            os.close(r)
            _worker(config, load_config, sockets, w, managed)  # never returns
        children.append(pid)
    os.close(w)
    log.info(
        "pigeon: %d worker process(es) started: %s", len(children), ", ".join(map(str, children))
    )

    def forward(sig: int) -> None:
        for pid in children:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    lifecycle = Lifecycle(
        lambda: full_role(config, wake_fd=r),
        config,
        load_config=load_config,
        sockets=sockets,
        recover=False,
        forward=forward,
        lock=lock,
        inherited=managed,
        config_path=config_path,
    )
    try:
        return lifecycle.run()
    finally:
        until = lifecycle.deadline.at  # None: the start failed (the workers got SIGTERM)
        if until is None:
            until = time.monotonic() + config.timeouts.shutdown_grace + HARD_MARGIN
        _reap(children, until)
        os.close(r)
        for sock in sockets.values():
            sock.close()


def _reap(children: list[int], until: float) -> None:
    """Wait for the workers until `until` (monotonic), then kill those left (module contract)."""
    left = set(children)
    while left:
        for pid in list(left):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                left.discard(pid)
                continue
            if done:
                left.discard(pid)
                if status:
                    log.warning("worker %d exited with status %d", pid, status)
        if not left or time.monotonic() >= until:
            break
        time.sleep(REAP_POLL)  # bounded by `until`
    for pid in left:
        log.warning("worker %d still running at the stop deadline: killed", pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    # What SIGKILL cannot end at once (a process in an uninterruptible disk
    # wait) is reaped by init once we are gone: never wait on it here.
    for _ in range(25):
        for pid in list(left):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    left.discard(pid)
            except ChildProcessError:
                left.discard(pid)
        if not left:
            break
        time.sleep(REAP_POLL)


def _worker(
    config: Config,
    load_config: Callable[[], Config] | None,
    sockets: Sockets,
    w: int,
    managed: ListenPlan | None,
) -> None:
    """A forked worker: run the acceptor role, then leave without running the
    parent's clean-up (atexit handlers, buffered files belong to the parent)."""
    code = 1
    try:
        setup_logging(config.log)  # the log writer thread did not survive fork()
        code = Lifecycle(
            lambda: acceptor_role(config, trigger_fd=w),
            config,
            load_config=load_config,
            sockets=sockets,
            inherited=managed,
            ignore_sigint=True,  # the main process decides, and passes SIGTERM on
        ).run()
    except BaseException:
        log.exception("worker %d failed", os.getpid())
    finally:
        flush_logs()
        os._exit(code)


def _die_with(parent: int) -> None:
    """A worker must not outlive the main process: it would keep the
    listeners (a restart could not bind them) and accept mail nobody
    delivers. Linux: PR_SET_PDEATHSIG = SIGKILL, i.e. the main process's
    crash is the workers' crash too (nothing acknowledged is lost: a 250 is
    only sent after the commit)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        log.warning("worker %d: cannot ask to die with the main process", os.getpid())
    if os.getppid() != parent:  # it died before prctl()
        os._exit(1)

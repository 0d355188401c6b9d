"""Several worker processes sharing the listening sockets (config `workers`).

Contract:
  * With `workers = N > 1`, the main process, before anything else runs:
    makes the TLS files (so no two processes race to create a self-signed
    certificate), recovers the queue (recovery must never run while another
    process has a commit half-way), binds every listener, opens a trigger
    pipe, and forks N - 1 workers. Then every process accepts connections on
    the same sockets (the kernel hands each new connection to one of them).
  * Workers only receive: they commit to the shared queue (SQLite in WAL
    mode and content files, both safe across processes; queue IDs end in a
    per-process tail drawn after the fork, and content files are created
    exclusively) and write one byte
    to the trigger pipe after each 250, like Postfix's pickup trigger. The
    main process reads the pipe and nudges its queue manager, the single
    owner of queue state and the only one delivering.
  * Signals: the main process forwards SIGTERM, SIGINT and SIGHUP to the
    workers; each drains its own sessions. The main process waits for them
    before it exits. `pigeon reload` (the control socket lives in the main
    process) sends the workers SIGHUP too; the outcome it prints is the main
    process's (the workers load the same file).
  * Limits are per process: `limits.connections` and `connections_per_ip`
    apply to each worker. The control socket and the metrics endpoint live
    in the main process and count its own sessions only.
  * Workers die with the main process (PR_SET_PDEATHSIG): a crash of the
    main process is a crash of all, so a restart finds the ports free.
  * Partial: a worker that dies is not restarted (the others go on; the
    main process logs it when it reaps it at exit).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import time
from collections.abc import Callable

from pigeon.config.schema import Config, ListenAddress
from pigeon.net.listener import ListenError, bind_failure, configured_listeners

log = logging.getLogger("pigeon")


def bind_all(
    config: Config, *, patience: float = 3.0
) -> dict[tuple[ListenAddress, str], socket.socket]:
    """Bind every listener. EADDRINUSE is retried for `patience` seconds: after
    a crash, the workers of the previous run may still be dying (PDEATHSIG).
    ListenError names the address, its role and the key and flag that set it."""
    out = {}
    # TLS is always set up (a self-signed certificate at worst), so all roles.
    for addr, role in configured_listeners(config, tls=True):
        family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
        deadline = time.monotonic() + patience
        while True:
            try:
                sock = socket.create_server((addr.host, addr.port), family=family, backlog=1024)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    for s in out.values():
                        s.close()
                    raise ListenError(bind_failure(addr, role, exc)) from exc
                time.sleep(0.05)
        sock.setblocking(False)
        out[(addr, role)] = sock
    return out


def _trigger(fd: int) -> Callable[[object], None]:
    def pull(_envelope: object) -> None:
        try:
            os.write(fd, b"!")
        except BlockingIOError:
            pass  # the pipe is full: the main process is already due to scan
        except OSError:
            pass  # the main process is gone; its successor will recover the queue

    return pull


def run_with_workers(config: Config, reload_config, *, new_loop, build) -> int:
    """The `workers > 1` form of pigeon.app.run (see the module contract)."""
    from pigeon.app import EX_CANTCREAT, EX_CONFIG, EX_UNAVAILABLE
    from pigeon.net.tls import TlsError, TlsProvider
    from pigeon.queue.store import QueueStore, StoreError

    try:
        TlsProvider.create(config)  # data_dir was made by pigeon.app.run
    except TlsError as exc:
        log.error("%s", exc)
        return EX_CONFIG
    store = QueueStore(config.queue_dir, fsync=config.queue.fsync)
    try:
        store.open(owner=True)
    except StoreError as exc:  # a damaged queue.db, a rebuild running: one line
        log.error("%s", exc)
        return EX_CANTCREAT
    report = store.recover()
    store.close()
    # Create the account store (schema, WAL mode) once, before several
    # processes open it at the same instant and race to switch its journal.
    from pigeon.auth.accounts import AccountError, AccountStore

    try:
        AccountStore.in_data_dir(config.data_dir).open().close()
    except AccountError as exc:
        log.error("%s", exc)
        return EX_UNAVAILABLE
    log.info(
        "queue recovered: %d entries, %d reactivated, %d corrupt",
        report.queued,
        len(report.reactivated),
        len(report.missing_content),
    )
    try:
        sockets = bind_all(config)
    except ListenError as exc:
        log.error("%s", exc)
        return EX_UNAVAILABLE
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    children: list[int] = []
    parent = os.getpid()
    for _ in range(config.workers - 1):
        pid = os.fork()
        if pid == 0:  # a worker
            _die_with(parent)
            os.close(r)
            code = 1
            try:
                code = _worker(config, reload_config, sockets, w, new_loop, build)
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                from pigeon.obs.logsetup import flush_logs

                flush_logs()
                os._exit(code)
        children.append(pid)
    os.close(w)
    log.info(
        "pigeon: %d worker process(es) started: %s", len(children), ", ".join(map(str, children))
    )
    try:
        return _main(config, reload_config, sockets, r, children, new_loop, build)
    finally:
        for pid in children:
            try:
                _, status = os.waitpid(pid, 0)
                if status:
                    log.warning("worker %d exited with status %d", pid, status)
            except ChildProcessError:
                pass
        os.close(r)
        for sock in sockets.values():
            sock.close()


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


def _restart_logging(config: Config) -> None:
    # The log writer thread did not survive fork(): start one of our own.
    from pigeon.obs.logsetup import setup_logging

    setup_logging(config.log)


def _worker(config, reload_config, sockets, w, new_loop, build) -> int:
    from pigeon.app import reload_on_signal

    _restart_logging(config)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, lambda: None)  # the main process decides
        app = build(config)
        app.reload_config = reload_config
        app.server.on_queued = _trigger(w)
        loop.add_signal_handler(signal.SIGHUP, reload_on_signal(app))
        await app.serve_acceptor(stop, sockets)
        return 0

    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main())


def _main(config, reload_config, sockets, r, children, new_loop, build) -> int:
    from pigeon.app import EX_OK, EX_UNAVAILABLE, reload_on_signal

    def forward(sig: int) -> None:
        for pid in children:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_stop(sig: int) -> None:
            forward(sig)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_stop, sig)
        app = build(config)

        def on_trigger() -> None:
            try:
                while os.read(r, 4096):
                    pass
            except BlockingIOError:
                pass
            app.manager.nudge()

        loop.add_reader(r, on_trigger)

        # SIGHUP or `pigeon reload` (control socket): the workers reload too.
        app.reload_config = reload_config
        app.on_reload = lambda: forward(signal.SIGHUP)
        loop.add_signal_handler(signal.SIGHUP, reload_on_signal(app))
        try:
            await app.serve(stop, sockets=sockets, recover=False)
        except Exception as exc:  # e.g. another pigeon owns the control socket
            log.error("%s", exc)
            forward(signal.SIGTERM)
            return EX_UNAVAILABLE
        return EX_OK

    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main())

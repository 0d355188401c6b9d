"""`pigeon restart`: the running process starts its successor with its listening sockets.

    # the running pigeon (the control socket's "restart"):
    pid = await start_successor(listeners.serving(), timeout=60)   # HandoverFailed
    # the new process (started by it):
    predecessor = Predecessor.from_environment()                    # None: a plain start
    predecessor.accepting()                                         # once its listeners serve

Contract:
  * `start_successor(served, timeout)` forks and execs this very program
    (`sys.executable` with the interpreter's original arguments, so the
    same command, configuration file and flags; the code on disk now, so an
    upgrade takes effect) with the listening sockets in the systemd protocol
    (net/inherit.py): descriptors 3.., `LISTEN_FDS`, `LISTEN_PID` = the
    child's pid, `LISTEN_FDNAMES` = each socket's role; the sockets of a
    service manager first, then those bound from the configuration, which
    `PIGEON_RESTART_LISTENERS` describes. So a socket-activated start and a
    restart are one code path in the new process.
  * `PIGEON_RESTART_FD` names the write end of a pipe: the new process
    writes one byte there once it accepts connections
    (`Predecessor.accepting()`), then closes it. `start_successor` returns
    the new pid at that byte; the pipe closing without it (the new process
    failed to start: a broken configuration, a certificate...) or
    `timeout` passing is `HandoverFailed`, after the child was reaped
    (stopped with SIGTERM, then SIGKILL, on a timeout): the running
    pigeon goes on as if nothing happened.
  * Nothing but the sockets and the pipe crosses the exec: every other
    descriptor is close-on-exec (PEP 446), the data-directory lock included
    (app/datalock.py): the new process waits for it.
  * Between fork and exec the child only moves descriptors and calls
    execve (the parent has threads: nothing that takes a lock); if execve
    fails it writes "E" and the errno to the pipe (so the operator hears
    "Permission denied", not a status) and leaves with status 127.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import sys
import time
from collections.abc import MutableMapping, Sequence

from pigeon.net.inherit import RESTART_LISTENERS, SD_LISTEN_FDS_START, restart_environment
from pigeon.net.listener import Listener

__all__ = ["HandoverFailed", "Predecessor", "READY_FD", "start_successor"]

log = logging.getLogger("pigeon")

READY_FD = "PIGEON_RESTART_FD"
_READY = b"R"
_EXEC_FAILED = b"E"  # then the errno, in ASCII
#: Seconds a successor stopped after a failed start gets before SIGKILL.
_REAP_PATIENCE = 10.0


class HandoverFailed(Exception):
    """The new process did not start accepting; the running one goes on."""


class Predecessor:
    """The new process's side: tell the pigeon that started us that we accept."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    @classmethod
    def from_environment(
        cls, environ: MutableMapping[str, str] | None = None
    ) -> Predecessor | None:
        """The predecessor's pipe, if `pigeon restart` started us (the variable is removed)."""
        env = os.environ if environ is None else environ
        value = env.pop(READY_FD, "")
        if not value.isdigit():
            return None
        fd = int(value)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
        except OSError:
            return None  # not open: nobody waits for us
        return cls(fd)

    def accepting(self) -> None:
        """We accept connections: the predecessor may stop accepting (once)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            os.write(fd, _READY)
        except OSError:
            pass  # it is gone already: nobody to tell
        finally:
            os.close(fd)


def _command() -> list[str]:
    """This program again: the interpreter, its options, the script or -m, the arguments."""
    return [sys.executable, *sys.orig_argv[1:]]


def _above(fd: int, floor: int) -> int:
    """A close-on-exec copy of `fd` numbered `floor` or more."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)


def _spawn(served: Sequence[tuple[Listener, int, bool]], ready_w: int, argv: list[str]) -> int:
    managed = [(listener, fd) for listener, fd, is_managed in served if is_managed]
    bound = [(listener, fd) for listener, fd, is_managed in served if not is_managed]
    order = managed + bound
    env = dict(os.environ)
    env["LISTEN_FDS"] = str(len(order))
    env["LISTEN_FDNAMES"] = ":".join(role.name for (_, role), _ in order)
    env[RESTART_LISTENERS] = restart_environment([listener for listener, _ in bound])
    # Copies above the range the child fills, so no dup2 below overwrites a
    # descriptor still to be moved.
    floor = SD_LISTEN_FDS_START + len(order) + 1
    high = [_above(fd, floor) for _, fd in order]
    ready = _above(ready_w, floor)
    env[READY_FD] = str(ready)
    try:
        pid = os.fork()
        if pid == 0:  # the child: descriptors, then exec, nothing else
            try:
                for i, fd in enumerate(high):
                    os.dup2(fd, SD_LISTEN_FDS_START + i)  # inheritable
                os.set_inheritable(ready, True)
                env["LISTEN_PID"] = str(os.getpid())
                os.execve(argv[0], argv, env)
            except OSError as exc:  # the parent hears why
                os.write(ready, _EXEC_FAILED + str(exc.errno).encode())
            finally:
                os._exit(127)
    finally:
        for fd in [*high, ready]:
            os.close(fd)
    return pid


async def _first_byte(fd: int, timeout: float) -> bytes | None:
    """One byte from the pipe, b"" at its end, None after `timeout`."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    def readable() -> None:
        if not got.done():
            try:
                got.set_result(os.read(fd, 1))
            except BlockingIOError:
                return
            except OSError:
                got.set_result(b"")

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
    try:
        return await asyncio.wait_for(got, timeout)
    except TimeoutError:
        return None
    finally:
        loop.remove_reader(fd)


def _reap(pid: int, *, stop: bool) -> int | None:
    """Wait for the failed child (SIGTERM first when `stop`, SIGKILL after a
    while); its exit status, or None if it cannot be told."""
    if stop:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + _REAP_PATIENCE
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.05)  # bounded by _REAP_PATIENCE, then by SIGKILL


async def start_successor(
    served: Sequence[tuple[Listener, int, bool]],
    timeout: float,
    command: list[str] | None = None,
) -> int:
    """Start the new process and wait until it accepts (see the contract); its pid.
    `command`: a seam for tests (default: this program again)."""
    argv = command or _command()
    r, w = os.pipe()
    try:
        pid = _spawn(served, w, argv)
    except OSError as exc:
        os.close(r)
        raise HandoverFailed(f"cannot start a new pigeon: {exc.strerror or exc}") from None
    finally:
        os.close(w)
    log.info(
        "restart: started the new pigeon (pid %d) with %d listening socket(s)", pid, len(served)
    )
    try:
        return await _wait_ready(pid, r, timeout, argv[0])
    finally:
        os.close(r)


async def _wait_ready(pid: int, r: int, timeout: float, program: str) -> int:
    byte = await _first_byte(r, timeout)
    if byte == _READY:
        return pid
    status = await asyncio.to_thread(_reap, pid, stop=byte is None)
    if byte == _EXEC_FAILED:
        code = os.read(r, 16)  # written before it exited (reaped just now)
        reason = os.strerror(int(code)) if code.isdigit() else "unknown error"
        raise HandoverFailed(f"cannot start a new pigeon: {program}: {reason}")
    if byte is None:
        raise HandoverFailed(
            f"the new pigeon (pid {pid}) did not accept connections within {timeout:.0f}s; "
            "it was stopped"
        )
    raise HandoverFailed(
        f"the new pigeon (pid {pid}) exited with status {status} before accepting "
        "connections (its log lines say why)"
    )

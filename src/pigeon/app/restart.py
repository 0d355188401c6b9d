"""`pigeon restart` inside the lifecycle: the old process hands over, the new one takes over.

Contract (docs/admin.md, "Restart"; decision of app/lifecycle.py's contract):
  * Old process (`Restart.for_operator`, the control socket's "restart"):
      1. the configuration is loaded again (the same file and flags): one
         that does not load refuses the restart, every problem returned, and
         nothing changes;
      2. the new process is started with our listening sockets
         (app/handover.py) and we wait (START_TIMEOUT) until it accepts; if
         it fails to, we go on serving as before and say why;
      3. it accepts: we stop accepting at once (our copies of the listening
         sockets are closed: the kernel queue they share is now served by the
         new process alone, so no connection is refused), tell systemd the
         new main pid (MAINPID=, allowed by NotifyAccess=main), and answer the
         operator;
      4. we *retire* (`retire`): our sessions in progress get
         `timeouts.shutdown_grace` to end by themselves (no 421 for a client
         that is simply finishing its conversation), while the queue manager
         starts no new delivery and finishes those in flight, within the
         same bound; then the ordinary stop sequence runs (Lifecycle.shutdown,
         as on SIGTERM: the sessions still there get the grace again for a
         transaction, then 421), and the process ends, releasing the
         data-directory lock. With `workers > 1` the main process sends its
         workers RETIRE_SIGNAL at step 3 and each retires the same way (the
         signal is ignored, with a log line, by a process that owns the
         queue: only `pigeon restart` retires it).
  * New process (`Restart.take_over`, from Lifecycle.serve when the lock is
    held by the predecessor): it has opened the store as a worker does and
    accepts (mail is committed into the queue and waits there); it waits
    for the lock at most 2 x grace + TAKEOVER_MARGIN seconds (logged), then
    becomes the queue's owner (`QueueStore.take_ownership`) and tells
    systemd MAINPID=; the lifecycle then starts the control socket, the PID
    file and the queue manager, whose recovery finds everything the two
    processes committed. Until then it delivers nothing. Asked to stop
    while it waits, it drains and ends; if the lock stays held past the
    bound, it drains and ends with `DataDirInUse` (exit 75): the mail it
    accepted is in the queue for the next pigeon. (With `workers > 1` the
    new main process waits for the lock before it recovers the queue and
    forks, app/workers.py: recovery must not run while other processes
    receive.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import Any, Protocol

from pigeon.admin import sdnotify
from pigeon.admin.control import ControlError, OpError
from pigeon.admin.pidfile import PidFileError
from pigeon.admin.wiring import AdminHandle
from pigeon.app.datalock import DataDirInUse, DataDirLock
from pigeon.app.handover import HandoverFailed, start_successor
from pigeon.app.roles import ProcessRole
from pigeon.config.load import ConfigError
from pigeon.config.schema import Config
from pigeon.mailstore.layout import open_mailboxes

__all__ = ["RETIRE_SIGNAL", "Restart", "START_TIMEOUT", "TAKEOVER_MARGIN"]

log = logging.getLogger("pigeon")

#: What the main process of `workers > 1` sends its workers to retire (`Restart.retire`).
RETIRE_SIGNAL = signal.SIGUSR2
#: Seconds the new process gets to accept connections.
START_TIMEOUT = 60.0
#: Seconds beyond the predecessor's own bound (2 x grace) that the new one waits for the lock.
TAKEOVER_MARGIN = 60.0


class _Lifecycle(Protocol):
    """What of app/lifecycle.py's Lifecycle a restart uses."""

    role: ProcessRole | None
    admin: AdminHandle | None
    lock: DataDirLock | None
    stop: asyncio.Event
    forward: Callable[[int], None] | None

    def load_again(self, running: Config) -> Config | ConfigError: ...

    async def shutdown(self, role: ProcessRole) -> None: ...


class Restart:
    """Both sides of `pigeon restart` for one lifecycle (see the module contract)."""

    def __init__(self, lifecycle: _Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.successor: int | None = None
        self.retiring = False  # accepting no more: a reload must not bind listeners again
        self._busy = False
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the old process ---------------------------------------------------------------

    async def for_operator(self) -> dict[str, Any]:
        """The control socket's "restart" (see the module contract)."""
        lifecycle, role = self.lifecycle, self.lifecycle.role
        if role is None or lifecycle.stop.is_set():
            raise OpError("pigeon is stopping")
        if self._busy:
            raise OpError(f"a restart is already under way (new pid {self.successor or '?'})")
        self._busy = True
        try:
            loaded = lifecycle.load_again(role.config)
            if isinstance(loaded, ConfigError):
                self._busy = False
                log.error("restart refused, this pigeon goes on: the configuration does not load")
                return {"status": "refused", "errors": [str(p) for p in loaded.problems]}
            pid = await start_successor(role.listeners.serving(), timeout=START_TIMEOUT)
        except HandoverFailed as exc:
            self._busy = False
            log.error("restart failed, this pigeon goes on: %s", exc)
            return {"status": "failed", "error": str(exc)}
        except BaseException:
            self._busy = False
            raise
        self.successor = pid
        sdnotify.notify(f"MAINPID={pid}")
        if lifecycle.admin is not None:
            lifecycle.admin.handed_over = True
        if lifecycle.forward is not None:
            lifecycle.forward(RETIRE_SIGNAL)  # our workers retire as we do
        log.info("restart: pigeon (pid %d) accepts; this one (pid %d) retires", pid, os.getpid())
        await self.retire()
        return {
            "status": "started",
            "old_pid": os.getpid(),
            "new_pid": pid,
            "grace": role.config.timeouts.shutdown_grace,
        }

    async def retire(self) -> None:
        """Stop accepting at once (step 3), then step 4 in the background; also
        a worker's answer to RETIRE_SIGNAL from its main process."""
        role = self.lifecycle.role
        if role is None or self.lifecycle.stop.is_set() or self.retiring:
            return
        self.retiring = True
        await role.listeners.close()  # the new process accepts on the same sockets
        grace = role.config.timeouts.shutdown_grace
        log.info("accepting no more; finishing the sessions in progress (at most %.0fs)", grace)
        self._spawn(self._finish(role, grace))

    def on_retire_signal(self) -> None:
        role = self.lifecycle.role
        if role is None or role.owns_queue:
            log.warning("signal %s ignored: `pigeon restart` retires pigeon", RETIRE_SIGNAL.name)
            return
        self._spawn(self.retire())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _finish(self, role: ProcessRole, grace: float) -> None:
        """Step 4: sessions end by themselves and deliveries in flight finish
        (both within `grace`), then the stop sequence."""
        waits: list[Any] = [role.listeners.settle(grace)]
        if role.manager is not None:
            waits.append(asyncio.wait_for(role.manager.stop(), grace))
        await asyncio.gather(*waits, return_exceptions=True)  # a timeout just moves on
        self.lifecycle.stop.set()  # the stop sequence (our workers retire on their own)

    # --- the new process ---------------------------------------------------------------

    @staticmethod
    def preflight(config: Config) -> None:
        """Before we accept (and the predecessor stops): the files the takeover
        creates must be ours to create, or the takeover would fail once the
        predecessor is gone. We run as the user the predecessor ran as (root
        was dropped). PidFileError, ControlError: exit 69, the old one goes on."""
        checks = (
            (config.pid_file, PidFileError, "admin.pid_file"),
            (config.control_socket, ControlError, "admin.control_socket"),
        )
        for path, error, key in checks:
            if not os.access(path.parent, os.W_OK | os.X_OK):
                raise error(
                    f"{key}: {path}: this process (uid {os.geteuid()}) cannot create it in "
                    f"{path.parent}; restart pigeon with systemctl, or move it"
                )

    async def take_over(self, role: ProcessRole) -> bool:
        """Wait for the lock, then own the queue; False if asked to stop meanwhile."""
        lifecycle, lock = self.lifecycle, self.lifecycle.lock
        assert lock is not None
        holder = lock.holder()
        bound = 2 * role.config.timeouts.shutdown_grace + TAKEOVER_MARGIN
        if not await lock.wait(bound, lifecycle.stop):
            if lifecycle.stop.is_set():
                return False
            await lifecycle.shutdown(role)
            raise DataDirInUse(
                f"the previous pigeon (pid {holder or '?'}) did not release {lock.path} within "
                f"{bound:.0f}s; the mail accepted meanwhile is in the queue: stop that "
                "process, then start pigeon"
            )
        # StoreBusy, StoreCorrupt, a newer format: exit status 73. Data of an
        # older format (a restart into a newer release) is upgraded now, as
        # the owner of a fresh start upgrades it (docs/upgrade.md).
        await asyncio.to_thread(role.store.take_ownership)
        await asyncio.to_thread(role.auth.store.take_ownership)
        await asyncio.to_thread(open_mailboxes, role.config.mailbox_root)
        sdnotify.notify(f"MAINPID={os.getpid()}")
        log.info(
            "restart: the previous pigeon (pid %s) has ended; this one owns the queue",
            holder or "?",
        )
        return True

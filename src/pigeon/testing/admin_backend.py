"""An in-process pigeon back end for admin tests: store, manager, control socket.

The event loop runs in a background thread, so tests talk to the control
socket with the real (blocking) ControlClient and CLI, as an operator would.
Used by tests/unit/admin (the `backend` fixture) and tests/unit/cli.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pigeon.config.load import load_config
from pigeon.qmgr import build_qmgr
from pigeon.queue.model import Envelope, Recipient
from pigeon.queue.store import QueueStore
from pigeon.routing.resolve import Router
from pigeon.testing.fakes import RecordingMaillog

__all__ = ["Backend"]

if TYPE_CHECKING:
    from pigeon.admin.wiring import AdminHandle


class Backend:
    def __init__(self, tmp: Path, *, run_manager: bool = False, metrics_listen: str = "") -> None:
        self.config = load_config(
            None,
            {
                "data_dir": str(tmp / "data"),
                "hostname": "mx.example.test",
                "domains": ["example.test"],
                "admin": {"metrics_listen": metrics_listen},
                "queue": {"fsync": False},
            },
        )
        self.store = QueueStore(self.config.queue_dir, fsync=False)
        self.store.open()
        self.maillog = RecordingMaillog()
        self.manager = build_qmgr(
            replace(self.config, queue=replace(self.config.queue, run_interval=30.0)),
            self.store,
            Router(self.config),
            {},
            self.maillog,
        )
        self.run_manager = run_manager
        self.loop = asyncio.new_event_loop()
        self.handle: AdminHandle | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self._start())

    async def _start(self):
        from pigeon.admin.wiring import start_admin

        self.handle = await start_admin(
            self.config,
            self.store,
            self.manager,
            self.maillog,
            lambda: {"sessions": 2, "connections_total": 7},
        )
        if self.run_manager:
            self._task = asyncio.ensure_future(self.manager.run())

    def call(self, coro, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def commit(
        self,
        *rcpts: str,
        sender: str = "sender@remote.test",
        age: float = 0.0,
        state: str | None = None,
    ) -> str:
        sp = self.store.new_spool()
        sp.write(
            b"Received: by mx.example.test\r\nSubject: test "
            + sp.queue_id.encode()
            + b"\r\n\r\nhi\r\n"
        )
        self.store.commit(
            sp,
            Envelope(
                sp.queue_id,
                sender,
                [Recipient(r) for r in rcpts],
                received_at=time.time() - age,
                size=40,
            ),
        )
        if state is not None:
            self.store.set_state(sp.queue_id, state, time.time() + 3600)
        return sp.queue_id

    def close(self) -> None:
        async def stop():
            if self.run_manager:
                await self.manager.stop()
                await self._task
            if self.handle is not None:
                await self.handle.close()

        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.store.close()

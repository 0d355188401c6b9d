"""The lifecycle in-process: a role started, reloaded and stopped on loopback, and a
start-up failure turned into its exit status with what was opened closed again.

(The same through `pigeon serve` processes: tests/e2e/test_lifecycle.py,
test_reload.py, test_workers.py, test_worker_roles.py.)
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from pigeon.app.lifecycle import Lifecycle
from pigeon.app.roles import acceptor_role, full_role
from pigeon.config.load import load_config
from pigeon.config.schema import Config
from pigeon.net.listener import bind_sockets
from pigeon.net.smtp_service import smtp_listeners
from pigeon.testing.live import free_port


def make_config(tmp_path: Path, port: int, **overrides) -> Config:
    return load_config(
        None,
        {
            "data_dir": str(tmp_path / "data"),
            "hostname": "mx.example.test",
            "listen": [f"127.0.0.1:{port}"],
            "submission_listen": [],
            "submissions_listen": [],
            "imap": {"listen": [], "tls_listen": []},
            "admin": {"metrics_listen": ""},
            "console": {"listen": ""},
            "queue": {"fsync": False},
            **overrides,
        },
    )


async def greeting(port: int) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    try:
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


async def started(lifecycle: Lifecycle) -> None:
    """Bounded polling until the role's listeners serve."""
    for _ in range(200):
        role = lifecycle.role
        if role is not None and role.listeners.bound:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the role did not start within 10 s")


def test_a_reload_with_shared_sockets_changes_the_limits_and_keeps_the_listeners(tmp_path):
    port = free_port()
    config = make_config(tmp_path, port)
    (tmp_path / "data").mkdir()
    sockets = bind_sockets(smtp_listeners(config, tls=True))
    moved = make_config(tmp_path, free_port(), limits={"connections_per_ip": 1}, domains=["w.test"])
    r, w = os.pipe()

    async def scenario():
        lifecycle = Lifecycle(
            lambda: acceptor_role(config, trigger_fd=w),
            config,
            load_config=lambda: moved,
            sockets=sockets,
        )
        running = asyncio.ensure_future(lifecycle.main())
        try:
            await started(lifecycle)
            outcome = await lifecycle.reload()
            assert outcome.status == "applied"
            assert outcome.applied == ["domains", "limits.connections_per_ip"]
            assert outcome.restart == ["listen"]
            role = lifecycle.role
            assert role is not None and role.config.listen == config.listen
            assert role.smtp.settings.config.domains.keys() == {"w.test"}
            # The new per-IP limit is in force for newcomers on the same socket.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"220 ")
            assert (await greeting(port)).startswith(b"421 4.7.0")
            writer.close()
        finally:
            lifecycle.stop.set()
            assert await asyncio.wait_for(running, 30) == 0
            # A clean stop leaves no hard deadline behind (app/deadline.py): it
            # would end this very process (the test run) a little later.
            assert lifecycle.deadline.at is not None and not lifecycle.deadline.armed

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        for s in sockets.values():
            s.close()
        os.close(r)
        os.close(w)


def test_a_start_up_failure_is_its_exit_status_and_closes_what_was_opened(tmp_path):
    taken = socket.create_server(("127.0.0.1", 0))
    config = make_config(tmp_path, taken.getsockname()[1])
    (tmp_path / "data").mkdir()
    roles = []

    def make():
        roles.append(full_role(config))
        return roles[-1]

    try:
        status = Lifecycle(make, config).run()
    finally:
        taken.close()
    assert status == 69
    (role,) = roles
    assert role.listeners.bound == []
    assert not (tmp_path / "data" / "control.sock").exists()  # the admin side closed
    assert not (tmp_path / "data" / "pigeon.pid").exists()

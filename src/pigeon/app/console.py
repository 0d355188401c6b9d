"""The HTTP listener of the API and the web console (`[console] listen`), wired into a role.

The API: docs/api.md; the console's pages (pigeon.console): docs/console.md.

Contract:
  * `start_console(config, role, admin, stopping)` is called by the
    lifecycle (app/lifecycle.py) right after the administration side, in
    the process that runs the queue manager only: with `workers > 1` the
    main process serves it, the workers never do. It returns the running
    `WebServer`, or None when `[console] listen` is "" or the address
    cannot be bound (logged as an error: like the metrics endpoint, the
    API never stops mail).
  * Readiness is: the queue answers (its counts are read in a worker
    thread), the role's mail listeners are bound, and no stop has begun.
  * The API asks the queue manager through the control socket's
    operations (`admin.ops`), the same code `pigeon queue` reaches, and
    queues mail through `admin.apisubmit` (local submission's path: the
    same spool, DKIM signer in force, commit and hand-over).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pigeon.admin.apisubmit import ApiSubmitter
from pigeon.admin.wiring import AdminHandle
from pigeon.app.roles import ProcessRole
from pigeon.config.schema import Config
from pigeon.console.admins import AdminStore
from pigeon.console.app import add_console
from pigeon.console.deps import ConsoleDeps
from pigeon.console.sessions import SessionStore
from pigeon.net.listener import bind_reason
from pigeon.web.app import WebDeps, build_app
from pigeon.web.server import WebServer
from pigeon.web.tokens import TokenStore

__all__ = ["max_body", "start_console"]

log = logging.getLogger("pigeon")


def max_body(config: Config) -> int:
    """`[console] max_body`, or 4/3 of the message size limit (base64 in JSON) + 1 MiB."""
    if config.console.max_body:
        return config.console.max_body
    size = config.limits.message_size or 50 * 1024 * 1024
    return size * 4 // 3 + (1 << 20)


async def start_console(
    config: Config, role: ProcessRole, admin: AdminHandle, stopping: Callable[[], bool]
) -> WebServer | None:
    listen = config.console.listen
    if listen is None:
        return None

    async def ready() -> dict[str, bool]:
        try:
            await asyncio.to_thread(role.store.counts)
            queue = True
        except Exception:
            queue = False
        return {"queue": queue, "listeners": bool(role.listeners.bound), "running": not stopping()}

    deps = WebDeps(
        tokens=TokenStore.in_data_dir(config.data_dir),
        ops=admin.ops,
        ready=ready,
        max_body=max_body(config),
        submit=ApiSubmitter(
            config=config,
            store=role.store,
            on_queued=role.manager.submit if role.manager is not None else lambda env: None,
            maillog=role.maillog,
            signer=lambda: role.signing.signer if role.signing is not None else None,
        ).send,
        mailbox_root=config.mailbox_root,
    )
    app = build_app(deps)
    add_console(
        app,
        ConsoleDeps(
            admins=AdminStore.in_data_dir(config.data_dir),
            sessions=SessionStore(),
            ops=admin.ops,
            data_dir=config.data_dir,
            mailbox_root=config.mailbox_root,
            config_path=None,  # TODO(issue 15, settings editor): thread the path from cli/serve.py
        ),
    )
    server = WebServer(app, listen)
    try:
        await server.start()
    except OSError as exc:
        log.error(
            "HTTP API %s not started: %s (set by [console] listen in the configuration or "
            "--console-listen; "
            '"" turns it off)',
            listen,
            bind_reason(exc),
        )
        return None
    return server

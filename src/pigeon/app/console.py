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
  * The console's dashboard sampler (console/stats.py, a task ticking
    every 10 s over `role.metrics`) and its recent-activity handler on the
    mail logger (console/activity.py) live as long as the application:
    started by its start-up, stopped and detached by its clean-up (aiohttp's
    `cleanup_ctx`, run by `WebServer.start` and `close`).
  * The API asks the queue manager through the control socket's
    operations (`admin.ops`), the same code `pigeon queue` reaches, and
    queues mail through `admin.apisubmit`: a token bound to an account
    through the receive pipeline of the submission role in force (as SMTP
    submission; `SmtpService.context`), one without through local
    submission's path (the same spool, DKIM signer in force, commit and
    hand-over).
  * The console's first start: when `<data_dir>/console-admins.json` does
    not exist, the admin `admin` is made with a random password, which is
    said once, in the log (warning) and, when the log does not show it on
    stderr (a log file, level error), on stderr too: `pigeon serve`'s
    terminal shows it either way.
    It is never shown again (docs/console.md, "Admins and login").
  * `config_path` is the file the server was started with (None: the
    embedded defaults): the settings pages edit it (console/settings*.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from pigeon.admin.apisubmit import ApiSubmitter
from pigeon.admin.wiring import AdminHandle
from pigeon.app.roles import ProcessRole
from pigeon.config.schema import Config
from pigeon.console.activity import Activity, ActivityHandler
from pigeon.console.admins import AdminError, AdminStore
from pigeon.console.app import add_console
from pigeon.console.deps import ConsoleDeps
from pigeon.console.sessions import SessionStore
from pigeon.console.stats import Sampler
from pigeon.net.listener import bind_reason
from pigeon.web.app import WebDeps, build_app
from pigeon.web.server import WebServer
from pigeon.web.sharedtokens import token_store

__all__ = ["first_admin", "max_body", "start_console", "start_first_admin"]

log = logging.getLogger("pigeon")

#: Tasks started here and not awaited (asyncio keeps only weak references).
_BACKGROUND: set[asyncio.Task] = set()


def max_body(config: Config) -> int:
    """`[console] max_body`, or 4/3 of the message size limit (base64 in JSON) + 1 MiB."""
    if config.console.max_body:
        return config.console.max_body
    size = config.limits.message_size or 50 * 1024 * 1024
    return size * 4 // 3 + (1 << 20)


def first_admin(config: Config, admins: AdminStore) -> None:
    """Make the first admin when there is no admin file, and say its password once."""
    try:
        password = admins.ensure_first()
    except (AdminError, OSError) as exc:
        log.error("web console: cannot create the first admin: %s", exc)
        return
    if password is None:
        return
    line = (
        f"web console: first admin 'admin' created, password: {password}; "
        "change it with pigeon admin passwd admin"
    )
    log.warning("%s", line)
    if config.log.file is not None or config.log.level == "error":  # not on stderr yet
        print(f"pigeon: {line}", file=sys.stderr, flush=True)


async def start_console(
    config: Config,
    role: ProcessRole,
    admin: AdminHandle,
    stopping: Callable[[], bool],
    *,
    config_path: Path | None = None,
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
        tokens=token_store(config),
        ops=admin.ops,
        ready=ready,
        max_body=max_body(config),
        submit=ApiSubmitter(
            config=config,
            store=role.store,
            on_queued=role.manager.submit if role.manager is not None else lambda env: None,
            maillog=role.maillog,
            signer=lambda: role.signing.signer if role.signing is not None else None,
            auth=role.auth,
            metrics=role.metrics,  # counted "in" as SMTP mail is (the dashboard)
            # Asked at every request: after a reload, the new pipeline and limits.
            submission=lambda: role.smtp.context("submission"),
        ).send,
        mailbox_root=config.mailbox_root,
    )
    app = build_app(deps)
    admins = AdminStore.in_data_dir(config.data_dir)
    stats = Sampler(role.metrics.counter_totals)
    activity = Activity()
    app.cleanup_ctx.append(_live(stats, ActivityHandler(activity)))
    add_console(
        app,
        ConsoleDeps(
            admins=admins,
            sessions=SessionStore(
                idle=config.console.session_idle, absolute=config.console.session_max
            ),
            ops=admin.ops,
            data_dir=config.data_dir,
            mailbox_root=config.mailbox_root,
            config_path=config_path.resolve() if config_path is not None else None,
            config=lambda: role.config,
            stats=stats,
            activity=activity,
            workers=config.workers,
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


def start_first_admin(config: Config) -> None:
    """The first admin (`first_admin`), made in a thread without holding up
    the start-up (argon2 takes a while). Called by the lifecycle once the
    console is bound and root's privileges are dropped, so the file belongs
    to the user pigeon runs as (a file made as root would be unreadable to
    it) and the password is said once the console can be reached."""
    admins = AdminStore.in_data_dir(config.data_dir)
    task = asyncio.get_running_loop().create_task(asyncio.to_thread(first_admin, config, admins))
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def _live(stats: Sampler, handler: ActivityHandler) -> Callable[[web.Application], AsyncIterator]:
    """The sampler's task and the mail-log handler, for the application's lifetime."""

    async def live(app: web.Application) -> AsyncIterator[None]:
        handler.attach()
        task = asyncio.create_task(stats.run(time.time), name="console-stats")
        try:
            yield
        finally:
            handler.detach()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return live

"""What the console's pages are given (built by app/console.py).

Contract: `ConsoleDeps` is plain data; pages never reach into the queue
or the configuration but through it. Queue state changes go through
`ops` (the control socket's operations, pigeon.admin.ops), which ask the
queue manager, the one owner of queue state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pigeon.config.schema import Config
from pigeon.console.activity import Activity
from pigeon.console.admins import AdminStore
from pigeon.console.sessions import SessionStore
from pigeon.console.stats import Sampler

__all__ = ["ConsoleDeps"]


@dataclass(frozen=True)
class ConsoleDeps:
    admins: AdminStore
    sessions: SessionStore
    #: the control socket's operations (pigeon.admin.ops.build_handlers)
    ops: Mapping[str, Callable[..., Awaitable[dict[str, Any]]]]
    data_dir: Path
    #: the Maildirs' root (config.mailbox_root; None: no local mailboxes)
    mailbox_root: Path | None = None
    #: the configuration file pigeon was started with (None: embedded defaults)
    config_path: Path | None = None
    #: the running configuration (it changes with each reload)
    config: Callable[[], Config] | None = None
    #: the dashboard's counter rings (console/stats.py; None: no charts)
    stats: Sampler | None = None
    #: recent deliveries and rejections (console/activity.py; None: none kept)
    activity: Activity | None = None
    #: `workers` of the configuration: with more than one, the counters and the
    #: activity above are the main process's only (the dashboard says so)
    workers: int = 1

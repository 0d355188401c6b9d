"""Which stores a configuration asks for: the one place that chooses.

Contract:
  * `queue_store(config, fsync=None)` returns an unopened store:
    `PgQueueStore` when `queue.store` is a postgresql:// URL (node
    `queue.node`, or the host name; claims last `queue.lease` seconds;
    spools spill to `<queue_dir>/spool`),
    else the embedded `QueueStore` under `config.queue_dir` (`fsync`
    defaults to `queue.fsync`). The composition root (pigeon.app), the
    offline queue listing (pigeon.admin.client) and sendmail all build
    their store here, so every process of a node uses the same queue.
  * `AnyQueueStore` is the type of what it returns; both have the
    embedded store's `open(owner=...)` and `take_ownership()` (no-ops for
    PostgreSQL).
  * `account_store(config)` returns the unopened account directory
    (pigeon/auth/directory.py) of the same choice: `PgAccountStore` over
    the shared database when `queue.store` is a postgresql:// URL, else the
    embedded `<data_dir>/accounts.db`. (The abuse controls' counters follow
    the same `shared(config)` in app/wiring.py: pigeon.policy ranks above
    this package.) So one key, `[queue] store` (or `serve --store`), puts a
    node's queue, accounts and counters in the database its cluster shares.
  * `with_shared_directory(config)` is `config` with the shared database's
    domains and aliases merged in (config/shared.py: the file's entries
    plus the database's, the file winning a conflict) and the warnings to
    log; unchanged without a shared store. `shared_directory_changed(config)`
    says whether the database's rows differ from those `config` was built
    with (app/clusterwake.py reloads then). Both raise StoreError when the
    database cannot be read (store/pg/domains.py).
  * Importing this module never imports psycopg: only a PostgreSQL
    configuration does.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Union

from pigeon.auth.accounts import AccountStore
from pigeon.auth.directory import AccountDirectory
from pigeon.config.schema import Config
from pigeon.config.shared import merge_shared, snapshot
from pigeon.queue.store import QueueStore

if TYPE_CHECKING:
    from pigeon.store.pg.store import PgQueueStore

__all__ = [
    "AnyQueueStore",
    "account_store",
    "queue_store",
    "shared",
    "shared_directory_changed",
    "with_shared_directory",
]

AnyQueueStore = Union[QueueStore, "PgQueueStore"]  # noqa: UP007 (a forward reference)


def shared(config: Config) -> bool:
    """Is the queue a database several nodes share?"""
    return config.queue.store.startswith(("postgresql://", "postgres://"))


def _listen_summary(config: Config) -> str:
    """Where this node serves, for the other nodes' `pigeon status` (store/pg/nodes.py)."""
    parts = [f"smtp {a}" for a in config.listen]
    parts += [f"submission {a}" for a in config.submission_listen]
    if config.console.listen is not None:
        parts.append(f"api {config.console.listen}")
    return ", ".join(parts)


def queue_store(config: Config, *, fsync: bool | None = None) -> AnyQueueStore:
    if shared(config):
        from pigeon.store.pg.store import PgQueueStore

        return PgQueueStore(
            config.queue.store,
            node=config.queue.node or socket.gethostname(),
            spool_dir=config.queue_dir / "spool",
            lease=config.queue.lease,
            listen=_listen_summary(config),
        )
    return QueueStore(config.queue_dir, fsync=config.queue.fsync if fsync is None else fsync)


def account_store(config: Config) -> AccountDirectory:
    if shared(config):
        from pigeon.store.pg.accounts import PgAccountStore

        return PgAccountStore(config.queue.store)
    return AccountStore.in_data_dir(config.data_dir)


def _read_directory(config: Config) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    from pigeon.store.pg.domains import PgDomains

    return PgDomains(config.queue.store).read()


def with_shared_directory(config: Config) -> tuple[Config, list[str]]:
    if not shared(config):
        return config, []
    return merge_shared(config, *_read_directory(config))


def shared_directory_changed(config: Config) -> bool:
    return shared(config) and snapshot(*_read_directory(config)) != config.shared_directory

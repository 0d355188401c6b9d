"""The HTTP API's tokens in the cluster's database: one set for every node.

Contract (issue 17: the nodes share one set of accounts, and a token may
be bound to an account, docs/api.md):
  * `token_store(config)` is what `pigeon token` and the HTTP API use:
    this store with a shared store (`[queue] store = "postgresql://..."`),
    else the data directory's file (web/tokens.py `TokenStore`).
  * `SharedTokenStore(dsn)` is a `TokenStore` (web/tokens.py: the same
    rules, `add`, `list`, `remove`, `authenticate`) whose tokens are the
    rows of `pigeon_api_tokens` (store/pg/tokens.py, migration
    0005_tokens.sql) instead of `<data_dir>/api-tokens.json`. So `pigeon
    token add` run with any node's configuration makes a token every node's
    API accepts, and `pigeon token remove` revokes it on every node.
  * The CLI's calls (`add`, `list`, `remove`) go to the database at once
    and raise `TokenError` when it cannot be reached (the CLI says why, exit 1).
  * The server's view (`authenticate`) never waits for the database on the
    event loop: a thread reads the rows every REFRESH seconds, and
    `authenticate` compares against the last rows read (constant time, as
    the file's). So a token added or removed counts on every node within
    REFRESH seconds. The first call waits up to FIRST_READ seconds for the
    first read (once per process). Rows older than STALE seconds (the
    database unreachable that long) authenticate nobody, logged once per
    episode, as an unreadable token file does: a revoked token must not
    outlive its removal for long.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pigeon.store.factory import shared
from pigeon.store.pg.tokens import PgTokenRows
from pigeon.vocab import StoreError
from pigeon.web.tokens import SCOPES, TokenError, TokenInfo, TokenStore

__all__ = ["FIRST_READ", "REFRESH", "STALE", "SharedTokenStore", "token_store"]

log = logging.getLogger("pigeon.web")

REFRESH = 1.0  # seconds between two reads of the rows by a server
FIRST_READ = 5.0  # seconds the first authenticate waits for the first read
STALE = 30.0  # seconds after which rows not read again authenticate nobody


def token_store(config: Any) -> TokenStore:
    """The tokens of `config`: the cluster's with a shared store (`[queue]
    store = "postgresql://..."`), else the data directory's file."""
    if shared(config):
        return SharedTokenStore(config.queue.store)
    return TokenStore.in_data_dir(config.data_dir)


class SharedTokenStore(TokenStore):
    """The cluster's API tokens (see the module contract)."""

    def __init__(self, dsn: str) -> None:
        super().__init__(Path("(the cluster's database)"))  # never opened
        self.rows = PgTokenRows(dsn)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._first = threading.Event()
        self._read_at = 0.0  # time.monotonic() of the last good read; 0: none yet
        self._failing = False

    # --- the CLI's side ---------------------------------------------------------------

    def _read(self) -> tuple[TokenInfo, ...]:
        try:
            rows = self.rows.read()
        except StoreError as exc:
            raise TokenError(f"cannot read the cluster's API tokens: {exc}") from None
        return tuple(
            TokenInfo(name, tuple(s for s in scopes if s in SCOPES), created, sha, tenant, account)
            for name, sha, scopes, created, tenant, account in rows
        )

    def _insert(self, info: TokenInfo) -> None:
        row = (info.name, info.sha256, info.scopes, info.created, info.tenant, info.account)
        if not _asked("add the API token", self.rows.insert, row):
            raise TokenError(f"a token named {info.name!r} exists (remove it first)")

    def _delete(self, name: str) -> None:
        if not _asked("remove the API token", self.rows.delete, name):
            raise TokenError(f"no such token: {name}")

    # --- the server's side ------------------------------------------------------------

    def _current(self) -> tuple[TokenInfo, ...]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._refresh, name="pigeon-api-tokens", daemon=True
                )
                self._thread.start()
        self._first.wait(FIRST_READ)
        with self._lock:
            if self._read_at and time.monotonic() - self._read_at <= STALE:
                return self._tokens
            if self._read_at:
                log.error("the cluster's API tokens not read for %gs: none is accepted", STALE)
                self._read_at = 0.0  # said once; the next good read brings them back
        return ()

    def _refresh(self) -> None:
        while True:
            try:
                tokens = self._read()
            except TokenError as exc:
                with self._lock:
                    if not self._failing:
                        log.error("%s; tokens read before are accepted for %gs", exc, STALE)
                    self._failing = True
            else:
                with self._lock:
                    if self._failing:
                        log.warning("the cluster's API tokens are readable again")
                    self._tokens, self._read_at, self._failing = tokens, time.monotonic(), False
            self._first.set()
            time.sleep(REFRESH)


def _asked(what: str, change: Callable[[Any], bool], arg: Any) -> bool:
    """`change(arg)`, a database error as the CLI's TokenError."""
    try:
        return change(arg)
    except StoreError as exc:
        raise TokenError(f"cannot {what}: {exc}") from None

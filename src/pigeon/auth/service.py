"""What the SMTP driver asks about logins: verify, look up SCRAM keys, owned addresses.

Contract:
  * `AuthService` wraps the account directory (`AccountDirectory`: embedded or shared) and the `FailureLimiter`; the
    asyncio driver (pigeon.net.smtpd) calls `verify_password` and
    `scram_keys` through `run(fn, ...)`, which uses the service's own small
    thread pool (`workers` threads), so argon2id (slow, 64 MiB) never runs on
    the event loop and a flood of AUTH attempts cannot take every thread of
    the process.
  * `verify_password(username, password)` returns the `Account` or None; an
    unknown user costs one dummy verification (no timing oracle). Store
    errors are logged and count as "not verified" (the client sees 454 only
    when `AuthUnavailable` is raised: the store itself is unusable).
  * The limiter is used by the driver with the clock it owns; this module
    does not read the clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pigeon.auth import passwords
from pigeon.auth.accounts import Account, AccountError
from pigeon.auth.directory import AccountDirectory
from pigeon.auth.ratelimit import FailureLimiter
from pigeon.proto.scram import ScramKeys

log = logging.getLogger("pigeon.auth")


class AuthUnavailable(Exception):
    """The account store cannot be read: answer 454 4.7.0 (try again later)."""


class AuthService:
    def __init__(
        self, store: AccountDirectory, limiter: FailureLimiter, *, workers: int = 4
    ) -> None:
        self.store = store
        self.limiter = limiter
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pigeon-auth")

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def verify_password(self, username: str, password: str) -> Account | None:
        try:
            encoded = self.store.password_hash(username)
        except AccountError as exc:
            log.error("account store: %s", exc)
            raise AuthUnavailable(str(exc)) from exc
        if encoded is None:
            passwords.burn_time(password)
            return None
        if not passwords.verify_password(encoded, password):
            return None
        return self.store.get(username)

    def scram_keys(self, username: str) -> ScramKeys | None:
        try:
            return self.store.scram_keys(username)
        except AccountError as exc:
            log.error("account store: %s", exc)
            raise AuthUnavailable(str(exc)) from exc

    def account(self, username: str) -> Account | None:
        try:
            return self.store.get(username)
        except AccountError as exc:
            log.error("account store: %s", exc)
            raise AuthUnavailable(str(exc)) from exc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()

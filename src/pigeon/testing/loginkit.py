"""A real account store, failure limiter and AuthService for login tests.

Contract:
  * `LoginWorld(accounts_dir, tmp_path, **limits)` copies a prepared account
    store (made once per module: argon2id is slow on purpose) into
    `tmp_path`, opens it, and builds the `FailureLimiter` (`LimitSettings`
    from `limits`) and a one-thread `AuthService` over them; `clock` is a
    `FakeClock`, `sleep` records the pauses asked for instead of sleeping,
    and `maillog.failed` records the "SASL ... authentication failed" lines
    as (ip, mechanism). `close()` ends the service.
  * Used by the SMTP login tests (auth/login.py `LoginGate`) and the readers'
    (readers/login.py): the same rule set is tested with the same world.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pigeon.auth.accounts import AccountStore
from pigeon.auth.ratelimit import FailureLimiter, LimitSettings
from pigeon.auth.service import AuthService
from pigeon.testing.fakes import FakeClock

__all__ = ["LoginWorld", "SaslFailures"]


class SaslFailures:
    """Records `sasl_failed` calls (pigeon.obs.maillog.MailLog's)."""

    def __init__(self) -> None:
        self.failed: list[tuple[str, str]] = []

    def sasl_failed(self, host: str | None, ip: str, mechanism: str) -> None:
        self.failed.append((ip, mechanism))


class LoginWorld:
    """See the module contract."""

    def __init__(self, accounts_dir: Path, tmp_path: Path, **limits: float) -> None:
        shutil.copytree(accounts_dir, tmp_path / "data")
        self.store = AccountStore.in_data_dir(tmp_path / "data").open()
        self.limiter = FailureLimiter(LimitSettings(**limits))  # type: ignore[arg-type]
        self.service = AuthService(self.store, self.limiter, workers=1)
        self.clock = FakeClock()
        self.slept: list[float] = []
        self.maillog = SaslFailures()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def close(self) -> None:
        self.service.close()

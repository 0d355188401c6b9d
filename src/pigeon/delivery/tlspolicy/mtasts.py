"""A recipient domain's MTA-STS policy (RFC 8461 §3, §5.1): discovery, fetch and the cache.

    source = StsSource(resolver, data_dir / "mta-sts", ca_file=None, timeout=10.0)
    policy = await source.policy("example.org")     # StsPolicy, or None: no policy

Contract:
  * Discovery (§3.1): the TXT record of `_mta-sts.<domain>` through the
    injected `pigeon.dns.Resolver`; its `id` names the policy version.
  * Cache (§5.1): a valid policy is kept, with its id and fetch time, in
    memory and in one JSON file per domain under the cache directory (so it
    survives restarts: `<data_dir>/mta-sts/<domain>.json`, written to a
    temporary file and renamed), until `max_age` seconds after it was
    fetched. Expired entries are ignored and replaced.
  * Refresh (§5.1): an unexpired cached policy whose id equals the TXT id is
    used as it is; a new or changed id fetches the policy
    (`tlspolicy.fetch`); the fetched one replaces the cache only when valid.
  * Failures never make a policy up nor drop one (§5.1, §3.1): with no TXT
    record, a DNS failure, a failed fetch or an invalid policy file the
    unexpired cached policy is used; without one the domain has no policy
    (None) and mail goes as it would without MTA-STS. Each failure is
    logged (warning) with the domain and the reason.
  * A failed fetch is not tried again for the same id for RETRY_AFTER
    seconds (the answer meanwhile: the cached policy or none), so a policy
    host that is down costs one `fetch_timeout`, not one per message.
  * One fetch at a time per domain; time comes from `clock` (tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pigeon.delivery.tlspolicy.fetch import FetchError, fetch_policy
from pigeon.delivery.tlspolicy.sts import StsError, StsPolicy, parse_policy, policy_id
from pigeon.dns.api import NoData, NoSuchDomain, Resolver, TemporaryFailure

__all__ = ["CachedPolicy", "StsSource"]

log = logging.getLogger("pigeon.delivery.tlspolicy")

#: Seconds before a failed fetch of the same policy id is tried again.
RETRY_AFTER = 300.0

#: Domain names that are safe as file names (A-labels: RFC 5890); others are cached in memory.
_FILE_SAFE = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*")


@dataclass(frozen=True, slots=True)
class CachedPolicy:
    policy_id: str
    fetched: float  # Unix time
    policy: StsPolicy

    def expired(self, now: float) -> bool:
        return now >= self.fetched + self.policy.max_age


class StsSource:
    """See the module contract."""

    def __init__(
        self,
        resolver: Resolver,
        cache_dir: Path,
        *,
        ca_file: Path | str | None,
        timeout: float,
        clock: Callable[[], float] = time.time,
        https_port: int = 443,
    ) -> None:
        self.resolver = resolver
        self.cache_dir = Path(cache_dir)
        self.ca_file = ca_file
        self.timeout = timeout
        self.clock = clock
        self.https_port = https_port
        self._memory: dict[str, CachedPolicy] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._failed: dict[str, tuple[str, float]] = {}  # domain -> (id, when to try again)
        self.fetches = 0  # how many HTTPS fetches were made (statistics, tests)

    async def policy(self, domain: str) -> StsPolicy | None:
        domain = domain.lower().rstrip(".")
        lock = self._locks.setdefault(domain, asyncio.Lock())
        async with lock:
            return await self._policy(domain)

    async def _policy(self, domain: str) -> StsPolicy | None:
        cached = self.cached(domain)
        fallback = cached.policy if cached else None
        try:
            records = await self.resolver.txt(f"_mta-sts.{domain}")
        except (NoSuchDomain, NoData):
            return fallback  # §5.1: a cached policy outlives a removed record
        except TemporaryFailure as exc:
            log.warning("MTA-STS: %s: TXT look-up failed: %s", domain, exc)
            return fallback
        sts_id = policy_id(records)
        if sts_id is None:
            return fallback
        if cached is not None and cached.policy_id == sts_id:
            return cached.policy
        failed_id, retry_at = self._failed.get(domain, ("", 0.0))
        if failed_id == sts_id and self.clock() < retry_at:
            return fallback
        self.fetches += 1
        try:
            text = await fetch_policy(
                domain,
                self.resolver,
                ca_file=self.ca_file,
                timeout=self.timeout,
                port=self.https_port,
            )
            policy = parse_policy(text)
        except (FetchError, StsError) as exc:
            log.warning(
                "MTA-STS: %s: no valid policy (id %s): %s%s",
                domain,
                sts_id,
                exc,
                "; the cached one stays in force" if cached else "",
            )
            self._failed[domain] = (sts_id, self.clock() + RETRY_AFTER)
            return fallback
        self._failed.pop(domain, None)
        self._store(domain, CachedPolicy(sts_id, self.clock(), policy))
        log.info(
            "MTA-STS: %s: policy %s: mode %s, max_age %d",
            domain,
            sts_id,
            policy.mode,
            policy.max_age,
        )
        return policy

    # --- the cache ---------------------------------------------------------------------

    def _path(self, domain: str) -> Path | None:
        """The cache file of `domain`; None (memory only) for a name unfit for a file name."""
        return self.cache_dir / f"{domain}.json" if _FILE_SAFE.fullmatch(domain) else None

    def cached(self, domain: str) -> CachedPolicy | None:
        """The unexpired cached policy of `domain`, from memory or from its file."""
        entry = self._memory.get(domain)
        if entry is None:
            entry = self._read(domain)
            if entry is not None:
                self._memory[domain] = entry
        if entry is None or entry.expired(self.clock()):
            return None
        return entry

    def _read(self, domain: str) -> CachedPolicy | None:
        path = self._path(domain)
        if path is None:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return CachedPolicy(
                str(data["id"]), float(data["fetched"]), parse_policy(str(data["policy"]))
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("MTA-STS: ignoring cache file %s: %s", path, exc)
            return None

    def _store(self, domain: str, entry: CachedPolicy) -> None:
        self._memory[domain] = entry
        data = {"id": entry.policy_id, "fetched": entry.fetched, "policy": entry.policy.text}
        path = self._path(domain)
        if path is None:
            return
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            self.cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            # The policy still applies from memory; only a restart would forget it.
            log.warning("MTA-STS: cannot write the cache file %s: %s", path, exc)

"""`Webhooks`: mail events in, signed POSTs out, through the durable outbox.

    hooks = build_webhooks(config)              # None without [[webhooks]]
    hooks.received(envelope)                    # any process, after the queue's commit
    hooks.delivered(event) ...                  # a DeliveryObservers listener
    await hooks.run(stop)                       # the owner (queue manager's process) only
    await hooks.close()                         # the last events written

Contract:
  * Events in are cheap and never raise: `received` (called by net/intake.py
    once the message is durable) and `delivered`, `deferred`, `bounced`,
    `expired` (called inline by `pigeon.hooks.events.DeliveryObservers`,
    which the queue manager tells only after the outcome is durable) build the
    JSON document (`payload`), one `Entry` per URL that wants the kind, and
    hand them to one writer task that writes them to the outbox in a
    worker thread (`outbox.write`: fsync'ed), batching what piled up
    meanwhile. Mail never waits for a webhook: a write that fails (disk
    full...) is logged and its events lost; past a URL's `max_pending` new
    events are dropped, logged once per burst.
  * Durability: an event is on disk before it is sent; events emitted but
    not yet written when the process is killed (the few milliseconds of
    one batch) are lost: the outcome itself is durable, its webhook is
    not. `close()` waits for the writes in progress (the stop).
  * `run(stop)` is the sender, in the process that owns the queue: at
    start it reads every entry left by an earlier run (crash, SIGKILL,
    restart) and sends them; entries written by this process are added at
    once, those of worker processes (`workers > 1`, app/workers.py) found
    by a scan of the directory every SCAN_INTERVAL seconds. Each entry is
    POSTed (`http.post`) with `Pigeon-Signature` (`signature.sign`, at the
    time of that try), `Pigeon-Event` and `Pigeon-Event-Id`; a 2xx removes
    it; anything else is tried again after `backoff.delay` until its
    `max_age`, then dropped and logged. At most PER_URL POSTs to one URL
    at a time, oldest first. Delivery is at least once: a receiver may get
    an event twice (a crash between its answer and the removal) and must
    use `Pigeon-Event-Id` to tell.
  * An entry for a URL no longer configured is dropped at the scan, logged.
  * `build_webhooks` reads each `secret_file` (its first line); a file that
    cannot be read or is empty is ConfigError naming `webhooks[i].secret_file`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from pigeon.config._checks import ConfigError
from pigeon.config.schema import Config
from pigeon.hooks.events import DeliveryEvent
from pigeon.queue.model import Envelope
from pigeon.webhooks import backoff, payload
from pigeon.webhooks.http import PostFailed, post
from pigeon.webhooks.outbox import Entry, Outbox
from pigeon.webhooks.signature import SIGNATURE_HEADER, sign

__all__ = ["Endpoint", "PER_URL", "SCAN_INTERVAL", "Webhooks", "build_webhooks", "endpoints"]

log = logging.getLogger("pigeon.webhooks")

#: Seconds between scans of the outbox for entries written by other processes.
SCAN_INTERVAL = 2.0
#: POSTs to one URL at the same time, at most.
PER_URL = 4
#: Events queued in memory for the writer, at most (a disk that stalls).
MAX_QUEUED = 100_000


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    events: frozenset[str]
    secret: str
    timeout: float
    max_age: float
    max_pending: int
    ca_file: str | None = None  # PEM CAs for https instead of the system's


#: POST (endpoint, body, headers): `http.post`; tests may pass their own.
Poster = Callable[[Endpoint, bytes, Mapping[str, str]], Awaitable[object]]


def endpoints(config: Config) -> tuple[Endpoint, ...]:
    """The `[[webhooks]]` with their secrets read (module contract)."""
    out = []
    for i, hook in enumerate(config.webhooks):
        secret = hook.secret
        if hook.secret_file is not None:
            key = f"webhooks[{i}].secret_file"
            try:
                lines = hook.secret_file.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeError) as exc:
                raise ConfigError(key, f"cannot read {hook.secret_file}: {exc}") from None
            secret = lines[0].strip() if lines else ""
            if not secret:
                raise ConfigError(key, f"{hook.secret_file} is empty")
        out.append(
            Endpoint(
                hook.url,
                frozenset(hook.events),
                secret,
                hook.timeout,
                hook.max_age,
                hook.max_pending,
                str(hook.ca_file) if hook.ca_file is not None else None,
            )
        )
    return tuple(out)


def build_webhooks(config: Config) -> Webhooks | None:
    """The webhooks of `config`, or None when there are none (no cost at all)."""
    if not config.webhooks:
        return None
    box = Outbox(config.data_dir / "webhooks", fsync=config.queue.fsync)
    return Webhooks(endpoints(config), box)


@dataclass(slots=True)
class _Pending:
    name: str
    entry: Entry
    next_try: float
    failures: int = 0
    sending: bool = False


class Webhooks:
    """See the module contract."""

    def __init__(
        self,
        hooks: Sequence[Endpoint],
        outbox: Outbox,
        *,
        clock: Callable[[], float] = time.time,
        poster: Poster | None = None,
    ) -> None:
        self.endpoints = tuple(hooks)
        self.outbox = outbox
        self._by_url = {e.url: e for e in self.endpoints}
        self._caps = {e.url: e.max_pending for e in self.endpoints}
        self._clock = clock
        self._post: Poster = poster or _http_post
        self._queued: list[Entry] = []
        self._writer: asyncio.Task[None] | None = None
        self._dropping = False
        self._dirs_made = False
        self._owner = False
        self._pending: dict[str, _Pending] = {}
        self._bad: set[str] = set()
        self._woken: asyncio.Future[None] | None = None  # the sender's wait (run)
        self._failing: set[str] = set()  # URLs whose last POST failed

    def __bool__(self) -> bool:
        return bool(self.endpoints)

    # --- events in (every process) -----------------------------------------------------

    def received(self, env: Envelope) -> None:
        """A message committed to the queue (or delivered at the accept): net/intake.py.
        Never raises: the client's 250 follows."""
        try:
            self._add(
                payload.received(
                    env.queue_id,
                    env.sender,
                    [r.address for r in env.recipients],
                    size=env.size,
                    client_address=env.client_address,
                    helo=env.client_helo,
                    protocol=env.protocol,
                    now=self._clock(),
                )
            )
        except Exception:
            log.exception("webhook received of %s not made", env.queue_id)

    def delivered(self, event: DeliveryEvent) -> None:
        """A durable outcome (DeliveryObservers, inline); never raises."""
        try:
            self._add(payload.delivery(event))
        except Exception:
            log.exception("webhook %s of %s not made", event.kind, event.queue_id)

    deferred = bounced = expired = delivered

    def _add(self, event: payload.WebhookEvent) -> None:
        if len(self._queued) >= MAX_QUEUED:  # the disk is that slow: mail comes first
            if not self._dropping:
                log.warning("webhook events dropped: %d wait to be written", MAX_QUEUED)
            self._dropping = True
            return
        for hook in self.endpoints:
            if event.kind in hook.events:
                self._queued.append(
                    Entry(hook.url, event.kind, event.id, event.created, event.body)
                )
        if self._queued and (self._writer is None or self._writer.done()):
            self._writer = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                written = await asyncio.to_thread(self._write_batch, batch)
            except Exception as exc:  # OSError above all (a full disk): mail goes on
                log.error("webhook outbox: %d event(s) lost, not written: %s", len(batch), exc)
                continue
            if len(written) < len(batch):
                if not self._dropping:
                    log.warning(
                        "webhook outbox full (max_pending): %d event(s) dropped",
                        len(batch) - len(written),
                    )
                self._dropping = True
            else:
                self._dropping = False
            if self._owner:
                now = self._clock()
                for entry in written:
                    self._pending.setdefault(entry.name, _Pending(entry.name, entry, now))
                self.nudge()

    def _write_batch(self, batch: list[Entry]) -> list[Entry]:
        if not self._dirs_made:
            self.outbox.ensure()
            self._dirs_made = True
        return self.outbox.write(batch, self._caps)

    def nudge(self) -> None:
        """The sender looks at the schedule again now (new entries; the clock moved: tests)."""
        if self._woken is not None and not self._woken.done():
            self._woken.set_result(None)

    async def close(self) -> None:
        """The writes in progress finished (the stop)."""
        if self._writer is not None:
            await asyncio.shield(self._writer)

    # --- the sender (the owner only) ---------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Send until `stop` is set (module contract); POSTs in flight are cancelled
        then: their entries stay in the outbox for the next start."""
        self._owner = True
        try:
            await asyncio.to_thread(self.outbox.prepare)
        except OSError as exc:  # logged; the scans below say it again until it is fixed
            log.error("webhook outbox %s cannot be prepared: %s", self.outbox.root, exc)
        tasks: set[asyncio.Task[None]] = set()
        next_scan = 0.0
        loop = asyncio.get_running_loop()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                # Made before looking: a nudge from here on ends the wait below.
                self._woken = woken = loop.create_future()
                if self._clock() >= next_scan:
                    next_scan = self._clock() + SCAN_INTERVAL
                    try:
                        await self._scan(self._clock())
                    except Exception:  # a webhook failure never stops pigeon (the TaskGroup)
                        log.exception("webhook outbox: the scan failed")
                for p in self._due(self._clock()):
                    p.sending = True
                    task = asyncio.ensure_future(self._send(p))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                wait = min([next_scan, *self._waiting()]) - self._clock()
                await asyncio.wait(
                    {woken, stopping}, timeout=max(0.05, wait), return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            stopping.cancel()
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)

    def _waiting(self) -> list[float]:
        return [p.next_try for p in self._pending.values() if not p.sending]

    def _due(self, now: float) -> list[_Pending]:
        busy: dict[str, int] = {}
        for p in self._pending.values():
            if p.sending:
                busy[p.entry.url] = busy.get(p.entry.url, 0) + 1
        out = []
        for p in sorted(self._pending.values(), key=lambda p: p.entry.created):
            url = p.entry.url
            if p.sending or p.next_try > now or busy.get(url, 0) >= PER_URL:
                continue
            busy[url] = busy.get(url, 0) + 1
            out.append(p)
        return out

    async def _scan(self, now: float) -> None:
        """Entries on disk not known yet: left by an earlier run, or a worker's."""
        try:
            names = await asyncio.to_thread(self.outbox.names)
        except OSError as exc:
            log.error("webhook outbox: cannot list %s: %s", self.outbox.ready, exc)
            return
        new = [n for n in names if n not in self._pending and n not in self._bad]
        if not new:
            return
        entries = await asyncio.to_thread(lambda: [(n, self.outbox.read(n)) for n in new])
        for name, entry in entries:
            if entry is None:
                if (self.outbox.ready / name).exists():  # bad, and could not be moved aside
                    self._bad.add(name)
            elif entry.url not in self._by_url:
                log.warning(
                    "webhook %s %s dropped: %s is no longer configured",
                    entry.kind,
                    entry.id,
                    entry.url,
                )
                await asyncio.to_thread(self.outbox.remove, name)
            elif now >= entry.created + self._by_url[entry.url].max_age:
                await self._give_up(name, entry, "older than max_age")
            else:  # setdefault: this process's writer may have added it meanwhile
                self._pending.setdefault(name, _Pending(name, entry, now))

    async def _give_up(self, name: str, entry: Entry, why: str) -> None:
        log.warning("webhook %s %s to %s dropped: %s", entry.kind, entry.id, entry.url, why)
        await asyncio.to_thread(self.outbox.remove, name)  # first: then a scan cannot find it
        self._pending.pop(name, None)

    async def _send(self, p: _Pending) -> None:
        entry, hook = p.entry, self._by_url[p.entry.url]
        headers = {
            SIGNATURE_HEADER: sign(hook.secret, entry.body, self._clock()),
            "Pigeon-Event": entry.kind,
            "Pigeon-Event-Id": entry.id,
        }
        try:
            post_it = self._post(hook, entry.body, headers)
            await asyncio.wait_for(post_it, hook.timeout + 1)
        except (PostFailed, TimeoutError) as exc:
            await self._failed(p, hook, str(exc) or "no answer")
        except Exception:
            log.exception("webhook %s %s to %s: sending failed", entry.kind, entry.id, entry.url)
            await self._failed(p, hook, "internal error")
        else:
            if entry.url in self._failing:
                self._failing.discard(entry.url)
                log.warning("webhook receiver %s takes events again", entry.url)
            log.info("webhook %s %s taken by %s", entry.kind, entry.id, entry.url)
            await asyncio.to_thread(self.outbox.remove, p.name)  # first: see _give_up
            self._pending.pop(p.name, None)
        finally:
            p.sending = False
            self.nudge()

    async def _failed(self, p: _Pending, hook: Endpoint, why: str) -> None:
        p.failures += 1
        now = self._clock()
        when = backoff.next_try(p.entry.created, p.failures, now, hook.max_age)
        if hook.url not in self._failing:
            self._failing.add(hook.url)
            log.warning("webhook receiver %s failing: %s", hook.url, why)
        if when is None:
            await self._give_up(p.name, p.entry, f"not taken within max_age ({why})")
            return
        p.next_try = when
        log.info(
            "webhook %s %s to %s: %s; try %d in %.0f s",
            p.entry.kind,
            p.entry.id,
            hook.url,
            why,
            p.failures + 1,
            when - now,
        )


async def _http_post(hook: Endpoint, body: bytes, headers: Mapping[str, str]) -> object:
    return await post(hook.url, body, headers, timeout=hook.timeout, ca_file=hook.ca_file)

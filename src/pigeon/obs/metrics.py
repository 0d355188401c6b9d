"""Prometheus metrics: what pigeon counts, and the HTTP endpoint that serves them.

Contract:
  * `Metrics` owns a private `CollectorRegistry` (never the global one), so
    tests can make as many as they like and nothing registers at import.
    Its hook methods are what the rest of pigeon calls; they only bump
    in-memory counters (no I/O, never raise for odd label values):
        connection_opened(role) / connection_refused()
        session_ended(outcome)          "quit", "timeout", "error", "closed"...
        message_accepted(size)          octets as queued
        rejected(code)                  SMTP reply code of a refused command, "550"
        recipient_result(status, kind)  delivered|deferred|bounced|expired, local|remote
        delivery_latency(seconds)       arrival -> delivered, per recipient
        tls_established(version)        "TLSv1.3"
  * Collected at scrape time (not kept up to date by hooks, so they can
    never drift from the truth): `pigeon_queue_messages{state}` from
    `store.counts()`, the server's live session count from a
    `server_stats()` callable, and the storage state from a `storage()`
    callable (the queue manager's `storage_status()`: queue/health.py,
    queue/space.py): `pigeon_storage_degraded{area}` (1 while the queue or
    mailbox storage is failing), `pigeon_storage_fault_episodes_total{area}`,
    `pigeon_queue_free_bytes`, `pigeon_queue_reserve_bytes`,
    `pigeon_queue_below_reserve` (1 while MAIL is answered 452) and
    `pigeon_queue_unsaved_entries` (results kept in memory until the store
    takes writes again). With a queue several nodes share, a `cluster()`
    callable (the store's `nodes()`, store/pg/nodes.py):
    `pigeon_cluster_nodes{state}` (nodes alive, lost, stopped, as the
    database sees them) and `pigeon_cluster_node_heartbeat_age_seconds{node}`
    (per node not stopped), so any node's endpoint shows the whole
    cluster; its `pigeon_queue_messages` are the cluster's too (every node
    counts the one shared table). All optional.
  * `counter_totals()` reads this process's counters (not the scrape-time
    values: no store query), {metric name: {label values: total}}, for
    the web console's sampler (console/stats.py).
  * Names follow Prometheus conventions: `pigeon_` prefix, `_total` for
    counters, base units (seconds, bytes).
  * `MetricsServer(listen, metrics)`: a deliberately tiny asyncio HTTP/1.0
    responder: `GET /metrics` (and `HEAD`) -> 200 text/plain version 0.0.4;
    `/` -> a one-line pointer; other paths 404; other methods 405. One
    request per connection, request head at most 8 KiB within 5 s, and the
    response must be taken within 30 s (else the connection is aborted: a
    client that never reads holds nothing). Rendering
    runs in a worker thread (the queue count is an SQLite query).
    prometheus_client's own servers are thread- or ASGI-based; this keeps
    the endpoint on pigeon's event loop with no extra dependency.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "MetricsServer", "LATENCY_BUCKETS", "SIZE_BUCKETS"]

log = logging.getLogger("pigeon.admin")

#: Delivery latency, seconds: a local delivery takes milliseconds, a
#: retried one hours or days.
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400, 86400, 432000)
#: Message size, octets: 1 KiB .. 50 MiB.
SIZE_BUCKETS = (1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 10485760, 26214400, 52428800)

_MAX_HEAD = 8192
_HEAD_TIMEOUT = 5.0
_WRITE_TIMEOUT = 30.0


class _LiveCollector:
    """Values read at scrape time: queue size by state, live sessions."""

    def __init__(
        self,
        counts: Callable[[], dict[str, int]] | None,
        server_stats: Callable[[], dict] | None,
        storage: Callable[[], dict] | None = None,
        cluster: Callable[[], list[dict]] | None = None,
    ) -> None:
        self.counts = counts
        self.server_stats = server_stats
        self.storage = storage
        self.cluster = cluster

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        if self.counts is not None:
            queue = GaugeMetricFamily(
                "pigeon_queue_messages", "Messages in the queue, by state", labels=["state"]
            )
            try:
                for state, n in sorted(self.counts().items()):
                    queue.add_metric([state], n)
            except Exception:  # a scrape must not fail because the store is busy
                log.warning("metrics: queue counts unavailable", exc_info=True)
            yield queue
        if self.server_stats is not None:
            try:
                stats = self.server_stats()
            except Exception:
                stats = {}
            if "sessions" in stats:
                yield GaugeMetricFamily(
                    "pigeon_smtp_sessions_active",
                    "SMTP sessions in progress",
                    value=stats["sessions"],
                )
        if self.storage is not None:
            try:
                storage = self.storage()
            except Exception:
                log.warning("metrics: storage state unavailable", exc_info=True)
                storage = {}
            yield from _storage_families(storage)
        if self.cluster is not None:
            yield from _cluster_families(self.cluster)


def _cluster_families(cluster: Callable[[], list[dict]]) -> Iterable[GaugeMetricFamily]:
    """The nodes of a shared queue (module contract)."""
    try:
        nodes = cluster()
    except Exception:  # the database is down: the scrape still answers
        log.warning("metrics: cluster nodes unavailable", exc_info=True)
        return
    by_state = GaugeMetricFamily(
        "pigeon_cluster_nodes", "Nodes of the shared queue, by state", labels=["state"]
    )
    for state in ("alive", "lost", "stopped"):
        by_state.add_metric([state], sum(1 for n in nodes if n.get("state") == state))
    yield by_state
    age = GaugeMetricFamily(
        "pigeon_cluster_node_heartbeat_age_seconds",
        "Seconds since each running node's last heartbeat",
        labels=["node"],
    )
    for n in nodes:
        if n.get("state") != "stopped" and n.get("heartbeat_age") is not None:
            age.add_metric([str(n["name"])], n["heartbeat_age"])
    yield age


def _storage_families(storage: dict) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
    """The storage metrics (module contract) from `storage_status()`."""
    degraded = GaugeMetricFamily(
        "pigeon_storage_degraded", "1 while writes to this storage area fail", labels=["area"]
    )
    episodes = CounterMetricFamily(
        "pigeon_storage_fault_episodes", "Storage fault episodes since start", labels=["area"]
    )
    for area in ("queue", "mailbox"):
        health = storage.get(area) or {}
        if health:
            degraded.add_metric([area], 1 if health.get("degraded") else 0)
            episodes.add_metric([area], health.get("episodes", 0))
    yield degraded
    yield episodes
    space = storage.get("space") or {}
    if space.get("free") is not None:
        yield GaugeMetricFamily(
            "pigeon_queue_free_bytes", "Free space in the queue file system", value=space["free"]
        )
    if "reserve" in space:
        yield GaugeMetricFamily(
            "pigeon_queue_reserve_bytes",
            "Free space below which new mail is refused (queue.min_free)",
            value=space["reserve"],
        )
        yield GaugeMetricFamily(
            "pigeon_queue_below_reserve",
            "1 while new mail is refused for lack of space",
            value=1 if space.get("low") else 0,
        )
    if "unsaved" in storage:
        yield GaugeMetricFamily(
            "pigeon_queue_unsaved_entries",
            "Delivery results kept in memory until the store takes writes",
            value=storage["unsaved"],
        )


class Metrics:
    """pigeon's metrics in a private registry; see the module contract for the hooks."""

    def __init__(
        self,
        *,
        queue_counts: Callable[[], dict[str, int]] | None = None,
        server_stats: Callable[[], dict] | None = None,
        storage: Callable[[], dict] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._connections = Counter(
            "pigeon_smtp_connections", "SMTP connections accepted", ["role"], registry=r
        )
        self._refused = Counter(
            "pigeon_smtp_connections_refused",
            "SMTP connections refused at connect (limits, draining)",
            registry=r,
        )
        self._sessions = Counter(
            "pigeon_smtp_sessions", "SMTP sessions ended, by outcome", ["outcome"], registry=r
        )
        self._accepted = Counter("pigeon_messages_accepted", "Messages queued", registry=r)
        self._rejected = Counter(
            "pigeon_smtp_rejections",
            "Commands refused with a 4xx/5xx reply, by reply code",
            ["code"],
            registry=r,
        )
        self._recipients = Counter(
            "pigeon_recipients",
            "Recipient delivery results, by outcome and destination class",
            ["outcome", "destination"],
            registry=r,
        )
        self._latency = Histogram(
            "pigeon_delivery_latency_seconds",
            "Time from arrival to successful delivery, per recipient",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._size = Histogram(
            "pigeon_message_size_bytes", "Size of queued messages", buckets=SIZE_BUCKETS, registry=r
        )
        self._tls = Counter(
            "pigeon_tls_sessions",
            "TLS handshakes completed, by protocol version",
            ["version"],
            registry=r,
        )
        start = Gauge(
            "pigeon_start_time_seconds", "When this pigeon process started (Unix time)", registry=r
        )
        start.set(clock())
        self._live = _LiveCollector(queue_counts, server_stats, storage)
        r.register(self._live)

    def bind(
        self,
        *,
        queue_counts: Callable[[], dict[str, int]] | None = None,
        server_stats: Callable[[], dict] | None = None,
        storage: Callable[[], dict] | None = None,
        cluster: Callable[[], list[dict]] | None = None,
    ) -> None:
        """Set the scrape-time sources later (they may be built after the Metrics)."""
        if queue_counts is not None:
            self._live.counts = queue_counts
        if server_stats is not None:
            self._live.server_stats = server_stats
        if storage is not None:
            self._live.storage = storage
        if cluster is not None:
            self._live.cluster = cluster

    # --- hooks --------------------------------------------------------------------

    def connection_opened(self, role: str = "smtp") -> None:
        self._connections.labels(str(role)).inc()

    def connection_refused(self) -> None:
        self._refused.inc()

    def session_ended(self, outcome: str) -> None:
        self._sessions.labels(str(outcome)).inc()

    def message_accepted(self, size: int) -> None:
        self._accepted.inc()
        self._size.observe(max(0, size))

    def rejected(self, code: int | str) -> None:
        self._rejected.labels(str(code)).inc()

    def recipient_result(self, status: str, kind: str) -> None:
        self._recipients.labels(str(status), str(kind)).inc()

    def delivery_latency(self, seconds: float) -> None:
        self._latency.observe(max(0.0, seconds))

    def tls_established(self, version: str) -> None:
        self._tls.labels(str(version)).inc()

    # --- output -------------------------------------------------------------------

    def counter_totals(self) -> dict[str, dict[tuple[str, ...], float]]:
        """Every counter's totals by label values (module contract); cheap, any thread."""
        out: dict[str, dict[tuple[str, ...], float]] = {}
        counters = (
            self._connections,
            self._refused,
            self._sessions,
            self._accepted,
            self._rejected,
            self._recipients,
            self._tls,
        )
        for counter in counters:
            for family in counter.collect():
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        key = tuple(sample.labels[k] for k in sorted(sample.labels))
                        out.setdefault(family.name, {})[key] = sample.value
        return out

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (blocking: scrape-time reads)."""
        return generate_latest(self.registry)


def _response(
    status: str,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    head_only: bool = False,
) -> bytes:
    head = (
        f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head if head_only else head + body


class MetricsServer:
    """GET /metrics over HTTP on `host:port` (see the module contract)."""

    def __init__(self, host: str, port: int, metrics: Metrics) -> None:
        self.host, self.port, self.metrics = host, port, metrics
        self._server: asyncio.AbstractServer | None = None

    @property
    def bound(self) -> tuple[str, int] | None:
        sockets = getattr(self._server, "sockets", None)  # asyncio.Server's
        if not sockets:
            return None
        name = sockets[0].getsockname()
        return name[0], name[1]

    async def start(self) -> None:
        """Listen; OSError (address in use...) propagates to the caller."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        log.info("metrics at http://%s:%d/metrics", *(self.bound or (self.host, self.port)))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            if len(head) > _MAX_HEAD:
                writer.write(_response("431 Request Header Fields Too Large", b""))
                return
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            method, target = (parts + ["", ""])[:2]
            path = target.split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                writer.write(_response("405 Method Not Allowed", b"GET only\n"))
            elif path == "/metrics":
                body = await asyncio.to_thread(self.metrics.render)
                writer.write(_response("200 OK", body, CONTENT_TYPE_LATEST, method == "HEAD"))
            elif path == "/":
                writer.write(
                    _response(
                        "200 OK", b"pigeon: metrics at /metrics\n", head_only=method == "HEAD"
                    )
                )
            else:
                writer.write(_response("404 Not Found", b"not found\n"))
            await asyncio.wait_for(writer.drain(), _WRITE_TIMEOUT)
        except (TimeoutError, ConnectionError):
            writer.transport.abort()
        finally:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), _WRITE_TIMEOUT)
            except (TimeoutError, ConnectionError):
                writer.transport.abort()

"""Metrics: hook methods, scrape-time values, the HTTP endpoint, parsed by prometheus_client."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from pigeon.obs.metrics import Metrics, MetricsServer


def samples(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_hooks_and_live_values_render_as_valid_prometheus_text():
    m = Metrics(
        queue_counts=lambda: {"incoming": 2, "deferred": 5}, server_stats=lambda: {"sessions": 3}
    )
    m.connection_opened("smtp")
    m.connection_refused()
    m.session_ended("quit")
    m.message_accepted(2048)
    m.rejected(550)
    m.recipient_result("delivered", "local")
    m.recipient_result("deferred", "remote")
    m.delivery_latency(0.2)
    m.tls_established("TLSv1.3")
    got = samples(m.render().decode())
    assert got[("pigeon_queue_messages", (("state", "deferred"),))] == 5
    assert got[("pigeon_smtp_sessions_active", ())] == 3
    assert got[("pigeon_smtp_connections_total", (("role", "smtp"),))] == 1
    assert got[("pigeon_smtp_rejections_total", (("code", "550"),))] == 1
    assert (
        got[("pigeon_recipients_total", (("destination", "remote"), ("outcome", "deferred")))] == 1
    )
    assert got[("pigeon_delivery_latency_seconds_count", ())] == 1
    assert got[("pigeon_message_size_bytes_sum", ())] == 2048
    assert got[("pigeon_tls_sessions_total", (("version", "TLSv1.3"),))] == 1


def test_registries_are_private():
    a, b = Metrics(), Metrics()
    a.message_accepted(1)
    assert samples(b.render().decode())[("pigeon_messages_accepted_total", ())] == 0


def test_a_failing_queue_count_does_not_break_the_scrape():
    def boom():
        raise RuntimeError("database is locked")

    got = samples(Metrics(queue_counts=boom).render().decode())
    assert ("pigeon_messages_accepted_total", ()) in got


def test_http_endpoint():
    async def main():
        m = Metrics(queue_counts=lambda: {"hold": 1})
        server = MetricsServer("127.0.0.1", 0, m)
        await server.start()
        host, port = server.bound

        def get(path, method="GET"):
            req = urllib.request.Request(f"http://{host}:{port}{path}", method=method)
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status, r.headers.get("Content-Type"), r.read()
            except urllib.error.HTTPError as e:
                return e.code, None, b""

        try:
            status, ctype, body = await asyncio.to_thread(get, "/metrics")
            assert status == 200 and ctype.startswith("text/plain")
            assert samples(body.decode())[("pigeon_queue_messages", (("state", "hold"),))] == 1
            assert (await asyncio.to_thread(get, "/nope"))[0] == 404
            assert (await asyncio.to_thread(get, "/metrics", "POST"))[0] == 405
        finally:
            await server.close()

    asyncio.run(main())


class _HugeMetrics:
    """A scrape far bigger than the socket buffers (a stand-in for the renderer only)."""

    def render(self) -> bytes:
        return b"# x\n" * 5_000_000


def test_a_scraper_that_never_reads_is_cut_off(monkeypatch):
    import socket

    from pigeon.obs import metrics as metrics_module

    monkeypatch.setattr(metrics_module, "_WRITE_TIMEOUT", 0.3, raising=False)

    async def main():
        server = MetricsServer("127.0.0.1", 0, _HugeMetrics())
        await server.start()
        host, port = server.bound
        loop = asyncio.get_running_loop()
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.setblocking(False)
        await loop.sock_connect(client, (host, port))
        await loop.sock_sendall(client, b"GET /metrics HTTP/1.0\r\n\r\n")
        try:
            # The server must give up on us: its task ends and the socket is
            # reset, without our reading a byte before then.
            for _ in range(100):  # at most 5 s
                await asyncio.sleep(0.05)
                handlers = [t for t in asyncio.all_tasks() if "_serve" in repr(t)]
                if not handlers:
                    break
            assert not handlers, "the scrape handler still waits for a reader that never reads"
        finally:
            client.close()
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_storage_state_is_read_at_scrape_time():
    state = {
        "queue": {"degraded": True, "episodes": 2},
        "mailbox": {"degraded": False, "episodes": 0},
        "space": {"free": 5_000_000, "reserve": 15_360_000, "low": True},
        "unsaved": 7,
    }
    got = samples(Metrics(storage=lambda: state).render().decode())
    assert got[("pigeon_storage_degraded", (("area", "queue"),))] == 1
    assert got[("pigeon_storage_degraded", (("area", "mailbox"),))] == 0
    assert got[("pigeon_storage_fault_episodes_total", (("area", "queue"),))] == 2
    assert got[("pigeon_queue_free_bytes", ())] == 5_000_000
    assert got[("pigeon_queue_reserve_bytes", ())] == 15_360_000
    assert got[("pigeon_queue_below_reserve", ())] == 1
    assert got[("pigeon_queue_unsaved_entries", ())] == 7
    state["queue"]["degraded"], state["space"]["low"] = False, False
    got = samples(Metrics(storage=lambda: state).render().decode())
    assert got[("pigeon_storage_degraded", (("area", "queue"),))] == 0
    assert got[("pigeon_queue_below_reserve", ())] == 0


def test_the_cluster_nodes_are_read_at_scrape_time():
    nodes = [
        {"name": "a", "state": "alive", "heartbeat_age": 1.5},
        {"name": "b", "state": "lost", "heartbeat_age": 90.0},
        {"name": "c", "state": "stopped", "heartbeat_age": 4000.0},
    ]
    m = Metrics()
    m.bind(cluster=lambda: nodes)
    got = samples(m.render().decode())
    assert [
        got[("pigeon_cluster_nodes", (("state", s),))] for s in ("alive", "lost", "stopped")
    ] == [
        1,
        1,
        1,
    ]
    assert got[("pigeon_cluster_node_heartbeat_age_seconds", (("node", "b"),))] == 90.0
    assert ("pigeon_cluster_node_heartbeat_age_seconds", (("node", "c"),)) not in got

    def down():
        raise RuntimeError("connection refused")

    m.bind(cluster=down)
    got = samples(m.render().decode())
    assert ("pigeon_messages_accepted_total", ()) in got
    assert not any(name.startswith("pigeon_cluster") for name, _ in got)

"""The console's dashboard, queue and activity pages in memory
(console/dashboard.py, console/queue.py, console/activity.py).

The control socket's operations are stood in for by plain coroutines that
answer rows of `pigeon queue list`'s form and record what they were asked;
the real operations against a live pigeon are tests/e2e/test_console_queue.py.
"""

from __future__ import annotations

import asyncio
import json
import re

from aiohttp.test_utils import TestClient, TestServer

from pigeon.console.activity import Activity
from pigeon.console.stats import Sampler
from pigeon.obs.metrics import Metrics
from tests.unit.console.conftest import csrf_of, login, make_app

ROWS = [
    {
        "id": "AAAA1",
        "state": "deferred",
        "readable": True,
        "size": 300,
        "arrival": 0.0,
        "age": 5.0,
        "sender": "alice@example.org",
        "attempts": 1,
        "next_attempt": 60.0,
        "recipients": [
            {"address": "bob@down.test", "status": "deferred", "diagnostic": "refused"},
            {"address": "carol@down.test", "status": "pending"},
            {"address": "dan@up.test", "status": "delivered"},
        ],
        "reason": "4.4.1 connection refused",
    },
    {
        "id": "BBBB2",
        "state": "hold",
        "readable": True,
        "size": 200,
        "arrival": 0.0,
        "age": 5.0,
        "sender": "",
        "attempts": 0,
        "next_attempt": None,
        "recipients": [{"address": "erin@other.test", "status": "pending"}],
        "reason": "",
    },
    {"id": "CCCC3", "state": "corrupt", "readable": False},
]


def run(coro):
    return asyncio.run(coro)


class Ops(dict):
    """The operations the pages use, recording their calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, dict]] = []

        def op(name, answer):
            async def call(**kwargs):
                self.calls.append((name, kwargs))
                return answer(**kwargs)

            return call

        def listing(filters=None):
            state = (filters or {}).get("state")
            return {"entries": [r for r in ROWS if state is None or r["state"] == state]}

        result = {"done": ["AAAA1"], "pending": [], "skipped": [], "unknown": []}
        self["status"] = op("status", lambda: {"queue": {"deferred": 1, "hold": 1}, "delivered": 7})
        self["list"] = op("list", listing)
        self["show"] = op(
            "show", lambda id: {**ROWS[0], "history": ["l1"], "headers": "Subject: x"}
        )
        for name in ("hold", "release", "delete", "bounce", "requeue"):
            self[name] = op(name, lambda ids, _r=result: _r)
        self["flush"] = op("flush", lambda domain=None: {"done": 2, "destinations_revived": 0})

    def asked(self, name: str) -> list[dict]:
        return [kwargs for op, kwargs in self.calls if op == name]


def client_for(tmp_path, ops, **extra) -> TestClient:
    app, _ = make_app(tmp_path, ops=ops, **extra)
    return TestClient(TestServer(app))


def test_dashboard_shows_queue_destinations_rates_and_reasons(tmp_path):
    metrics = Metrics()
    stats = Sampler(metrics.counter_totals)
    stats.tick(0.0)
    metrics.message_accepted(10)
    metrics.recipient_result("delivered", "local")
    metrics.recipient_result("deferred", "remote")
    stats.tick(10.0)
    activity = Activity()
    activity.record(
        {
            "event": "reject",
            "stage": "RCPT",
            "reply": "554 5.7.1 relay denied",
            "client_ip": "192.0.2.1",
        },
        "NOQUEUE",
        "reject",
        5.0,
    )

    async def go():
        async with client_for(tmp_path, Ops(), stats=stats, activity=activity) as client:
            await login(client)
            html = await (await client.get("/")).text()
            assert 'id="queue-states"' in html and 'data-stat="queue.deferred">1<' in html
            # down.test: one message, two recipients waiting; up.test is done
            assert re.search(r"down\.test</a></td><td>1</td><td>2</td>", html)
            assert "up.test" not in html and "other.test" in html
            assert 'data-stat="rates.delivered" data-format="pct">50.0 %' in html
            assert "554 5.7.1 relay denied" in html
            assert 'src="/static/dashboard.js' in html and "<script>" not in html
            r = await client.get("/console/stats.json")
            data = await r.json()
            assert data["totals"]["in"] == 1 and data["queue"] == {"deferred": 1, "hold": 1}
            assert data["destinations"][0] == ["down.test", 1, 2]
            assert data["top_reasons"] == [["554 5.7.1 relay denied", 1]]
            assert len(data["fine"]) == 60 and len(data["minutes"]) == 60
            doc = await (await client.get("/api/openapi.json")).json()
            assert not any(p.startswith("/console") for p in doc["paths"])

    run(go())


def test_stats_json_needs_a_session(tmp_path):
    async def go():
        async with client_for(tmp_path, Ops()) as client:
            r = await client.get("/console/stats.json", allow_redirects=False)
            assert r.status == 303 and r.headers["Location"].startswith("/login")
            await login(client)
            data = await (await client.get("/console/stats.json")).json()
            assert data["series"] is False and data["queue"]["hold"] == 1

    run(go())


def test_queue_list_filters_and_searches(tmp_path):
    ops = Ops()

    async def go():
        async with client_for(tmp_path, ops) as client:
            await login(client)
            html = await (await client.get("/queue")).text()
            assert html.count('data-test="queue-row"') == 3 and "3 messages" in html
            html = await (await client.get("/queue?state=hold&sender=%3C%3E")).text()
            assert ops.asked("list")[-1] == {"filters": {"state": "hold", "sender": "<>"}}
            assert 'data-id="BBBB2"' in html and 'data-id="AAAA1"' not in html
            html = await (await client.get("/queue?recipient=CAROL")).text()
            assert 'data-id="AAAA1"' in html and html.count('data-test="queue-row"') == 1
            html = await (await client.get("/queue?id=bb")).text()  # a prefix, any case
            assert html.count('data-test="queue-row"') == 1 and 'data-id="BBBB2"' in html
            html = await (await client.get("/queue?state=bogus&id=x!")).text()
            assert "state must be one of" in html and "queue-ID prefix" in html
            assert html.count('data-test="queue-row"') == 3

    run(go())


def test_detail_page_and_unknown_ids(tmp_path):
    ops = Ops()

    async def go():
        async with client_for(tmp_path, ops) as client:
            await login(client)
            r = await client.get("/queue/AAAA1")
            html = await r.text()
            assert r.status == 200 and "bob@down.test" in html and "Subject: x" in html
            assert "l1" in html and 'id="act-hold"' in html and 'id="confirm-delete"' in html
            r = await client.get("/queue/not-an-id")
            assert r.status == 404 and "not a queue ID" in await r.text()

    run(go())


def test_actions_need_the_csrf_token_and_delete_needs_confirmation(tmp_path):
    ops = Ops()

    async def go():
        async with client_for(tmp_path, ops) as client:
            await login(client)
            csrf = csrf_of(await (await client.get("/queue/AAAA1")).text())
            r = await client.post("/queue/AAAA1/act", data={"action": "hold"})
            assert r.status == 403 and not ops.asked("hold")
            r = await client.post(
                "/queue/AAAA1/act", data={"action": "hold", "csrf": csrf}, allow_redirects=False
            )
            assert r.status == 303 and r.headers["Location"] == "/queue/AAAA1"
            assert ops.asked("hold") == [{"ids": ["AAAA1"]}]
            html = await (await client.get("/queue/AAAA1")).text()
            assert "hold: 1 done" in html
            r = await client.post("/queue/AAAA1/act", data={"action": "delete", "csrf": csrf})
            assert "tick the box to confirm" in await r.text() and not ops.asked("delete")
            r = await client.post(
                "/queue/AAAA1/act",
                data={"action": "delete", "csrf": csrf, "confirm": "yes"},
                allow_redirects=False,
            )
            assert r.headers["Location"] == "/queue" and ops.asked("delete") == [{"ids": ["AAAA1"]}]
            r = await client.post("/queue/AAAA1/act", data={"action": "flush", "csrf": csrf})
            assert ops.asked("requeue") == [{"ids": ["AAAA1"]}]  # flush = try now
            r = await client.post("/queue/AAAA1/act", data={"action": "explode", "csrf": csrf})
            assert "no such action" in await r.text()

    run(go())


def test_bulk_actions_and_flush(tmp_path):
    ops = Ops()

    async def go():
        async with client_for(tmp_path, ops) as client:
            await login(client)
            csrf = csrf_of(await (await client.get("/queue")).text())
            data = [
                ("csrf", csrf),
                ("action", "release"),
                ("ids", "AAAA1"),
                ("ids", "BBBB2"),
                ("back", "/queue?state=hold"),
            ]
            r = await client.post("/queue/bulk", data=data, allow_redirects=False)
            assert r.headers["Location"] == "/queue?state=hold"
            assert ops.asked("release") == [{"ids": ["AAAA1", "BBBB2"]}]
            data = [
                ("csrf", csrf),
                ("action", "bounce"),
                ("ids", "AAAA1"),
                ("back", "https://evil.test/"),
            ]
            r = await client.post("/queue/bulk", data=data, allow_redirects=False)
            assert r.headers["Location"] == "/queue" and not ops.asked("bounce")
            r = await client.post("/queue/bulk", data={"csrf": csrf, "action": "hold"})
            assert "no message chosen" in await r.text()
            r = await client.post("/queue/flush", data={"csrf": csrf, "domain": "down.test"})
            assert ops.asked("flush") == [{"domain": "down.test"}]
            assert "flush of mail to down.test: 2 deferred" in await r.text()

    run(go())


def test_activity_page_lists_both_rings(tmp_path):
    activity = Activity()
    activity.record(
        {"to": "b@down.test", "status": "deferred", "relay": "down.test", "dsn": "4.4.1"},
        "AAAA1",
        "connection refused",
        0.0,
    )
    activity.record(
        {
            "event": "reject",
            "stage": "MAIL",
            "reply": "553 5.7.1 <x>: no",
            "from": "x@<script>.test",
            "client_ip": "192.0.2.5",
        },
        "NOQUEUE",
        None,
        1.0,
    )

    async def go():
        async with client_for(tmp_path, Ops(), activity=activity) as client:
            await login(client)
            html = await (await client.get("/activity")).text()
            assert 'data-outcome="deferred"' in html and "connection refused" in html
            assert 'data-code="553"' in html and "&lt;script&gt;" in html
            assert "<script>.test" not in html
            nav = json.dumps(re.findall(r'<a href="(/[a-z]*)"', html))
            assert "/queue" in nav and "/activity" in nav

    run(go())


def test_with_workers_the_dashboard_says_what_it_counts(tmp_path):
    async def go():
        async with client_for(tmp_path, Ops(), workers=3) as client:
            await login(client)
            html = await (await client.get("/")).text()
            assert 'id="workers-note"' in html and "3 processes" in html
        async with client_for(tmp_path, Ops()) as client:
            await login(client)
            assert 'id="workers-note"' not in await (await client.get("/")).text()

    run(go())


def test_the_queue_is_grouped_by_destination_at_most_every_half_minute():
    from pigeon.console.dashboard import DESTINATIONS_TTL, MAX_GROUPED, Destinations

    ops = Ops()
    destinations = Destinations(ops)

    async def go():
        rows, skipped = await destinations.get(3, 100.0)
        assert rows[0] == ["down.test", 1, 2] and not skipped
        await destinations.get(3, 100.0 + DESTINATIONS_TTL - 1)
        assert len(ops.asked("list")) == 1  # kept
        await destinations.get(3, 100.0 + DESTINATIONS_TTL)
        assert len(ops.asked("list")) == 2
        rows, skipped = await destinations.get(MAX_GROUPED + 1, 1000.0)
        assert rows == [] and skipped and len(ops.asked("list")) == 2

    run(go())

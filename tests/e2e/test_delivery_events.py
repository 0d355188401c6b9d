"""Delivery-side events reach plugins (issue 12 item 2): attempt, delivered,
deferred, bounced and expired, each after the queue's state is written; an
observer that raises or hangs never holds delivery up."""

from __future__ import annotations

import json
import smtplib
import textwrap

import pytest

from pigeon.testing.live import free_port, maildir_messages, wait_for
from pigeon.testing.sink import SmtpSink

pytestmark = pytest.mark.e2e

#: Seconds to wait for what happens beside the SMTP reply (bounded polling,
#: no speed assumed: the machine may be loaded).
WAIT = 30

OBSERVER = """
import asyncio
import json

class Plugin:
    def __init__(self, context):
        self.path = context.state_dir() / "events.jsonl"

    def _write(self, event):
        with open(self.path, "a") as f:
            f.write(json.dumps([event.kind, event.queue_id, list(event.recipients),
                                event.relay, event.status]) + "\\n")

    def attempt(self, event):
        self._write(event)

    async def delivered(self, event):
        # Written on the loop, in the order the events came: a thread per
        # write (asyncio.to_thread) could put a late "deferred" after
        # "expired" in the file, which the test reads as an order.
        await asyncio.sleep(0)
        self._write(event)

    deferred = bounced = expired = delivered
"""

BROKEN = """
import asyncio

class Plugin:
    def delivered(self, event):
        raise RuntimeError("observer bug")

    async def attempt(self, event):
        await asyncio.sleep(60)
"""


def _events(server) -> list[list]:
    path = server.data_dir / "plugins" / "observer" / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_delivery_outcome_is_an_event(pigeon_factory, tmp_path):
    closed, rejecting = free_port(), free_port()
    workdir = tmp_path / "p0"
    workdir.mkdir(parents=True)
    (workdir / "observer.py").write_text(textwrap.dedent(OBSERVER))
    (workdir / "broken.py").write_text(textwrap.dedent(BROKEN))
    config = (
        'relay_networks = ["127.0.0.0/8"]\n[domains."example.test"]\n'
        "[queue]\nmin_backoff = 1\nmax_backoff = 1\nrun_interval = 0.5\nmax_lifetime = 3\n"
        f'[transports]\n"down.test" = "smtp:[127.0.0.1]:{closed}"\n'
        f'"reject.test" = "smtp:[127.0.0.1]:{rejecting}"\n'
        '[[plugins]]\npath = "broken.py"\ntimeout = 0.5\n[[plugins]]\npath = "observer.py"\n'
    )
    server = pigeon_factory(config)
    with SmtpSink("127.0.0.1", rejecting, extra_args=("-f", "RCPT")):
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
            s.sendmail("a@client.test", ["alice@example.test"], b"Subject: 1\r\n\r\nhi\r\n")
            s.sendmail("a@client.test", ["x@reject.test"], b"Subject: 2\r\n\r\nhi\r\n")
            s.sendmail("a@client.test", ["y@down.test"], b"Subject: 3\r\n\r\nhi\r\n")
        assert wait_for(
            timeout=WAIT, predicate=lambda: maildir_messages(server.data_dir, "alice@example.test")
        )

        def kinds(address: str) -> list[str]:
            return [kind for kind, _, rcpts, _, _ in _events(server) if address in rcpts]

        assert wait_for(lambda: "bounced" in kinds("x@reject.test"), timeout=30), _events(server)
        assert wait_for(lambda: "expired" in kinds("y@down.test"), timeout=30), _events(server)
    assert wait_for(
        timeout=WAIT, predicate=lambda: kinds("alice@example.test") == ["attempt", "delivered"]
    )
    assert kinds("x@reject.test") == ["attempt", "bounced"]
    down = kinds("y@down.test")
    assert down[:2] == ["attempt", "deferred"] and down[-1] == "expired", down
    delivered = next(e for e in _events(server) if e[0] == "delivered")
    assert (delivered[3], delivered[4]) == ("local", "2.0.0")
    bounced = next(e for e in _events(server) if e[0] == "bounced")
    assert bounced[4].startswith("5.")
    # The broken observer was logged, and never held delivery up.
    log = server.log()
    assert "plugin broken failed at delivered of" in log and "RuntimeError: observer bug" in log
    assert wait_for(timeout=WAIT, predicate=lambda: "plugin broken at attempt of" in server.log())

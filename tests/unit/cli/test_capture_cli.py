"""pigeon capture on the command line, against a running (in-process) server."""

from __future__ import annotations

import json
import time

import pytest

from pigeon.cli.main import main
from pigeon.queue.model import Envelope, Recipient
from pigeon.testing.admin_backend import Backend
from pigeon.testing.storage import content_bytes
from pigeon.vocab import QueueState


@pytest.fixture
def server(tmp_path):
    b = Backend(tmp_path)
    yield b
    b.close()


def args(b, *rest):
    return ["--data-dir", str(b.config.data_dir), *rest]


def captured(b, tenant: str, subject: str) -> str:
    raw = f"Subject: {subject}\r\nFrom: app@example.org\r\n\r\nbody of {subject}\r\n".encode()
    sp = b.store.new_spool()
    sp.write(raw)
    env = Envelope(sp.queue_id, "app@example.org", [Recipient("bob@dev.example")], size=len(raw))
    env.received_at, env.capture = time.time(), tenant
    b.store.commit(sp, env)
    return sp.queue_id


def test_list_show_release_delete(server, capsys):
    a = captured(server, "team-a", "first\x1b[31m")  # an escape from the network
    c = captured(server, "team-c", "second")
    assert main(["capture", *args(server, "list", "--tenant", "TEAM-A")]) == 0
    out = capsys.readouterr().out
    assert a in out and c not in out and "\x1b" not in out and "1 captured" in out
    assert main(["capture", *args(server, "list", "--search", "second", "--json")]) == 0
    assert [e["id"] for e in json.loads(capsys.readouterr().out)["entries"]] == [c]
    assert main(["capture", *args(server, "show", c)]) == 0
    out = capsys.readouterr().out
    assert "tenant: team-c" in out and "body of second" in out
    assert main(["capture", *args(server, "show", c, "--raw")]) == 0
    assert capsys.readouterr().out == content_bytes(server.store, c).decode()
    assert main(["capture", *args(server, "release", c)]) == 0
    assert capsys.readouterr().out.startswith("released 1")
    assert server.store.entry(c).state == QueueState.INCOMING
    assert main(["capture", *args(server, "delete", a, "0000NOPE")]) == 65
    assert server.store.entry(a) is None
    assert main(["capture", *args(server, "show", "0000NOPE")]) == 65

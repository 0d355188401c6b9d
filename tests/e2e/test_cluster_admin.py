"""Status, metrics and queue administration across two `pigeon serve` nodes on one
PostgreSQL queue (issue 17; store/pg/nodes.py, qmgr/operator.py, app/clusterwake.py).

Each node has its own data directory, ports, control socket and metrics
endpoint, and the same `queue.store` (a fresh database on the session's
throw-away cluster, pigeon.testing.postgres). Checked: a third node under a
name a live node holds is refused (exit 75, naming `queue.node`); `pigeon
status` and the metrics of either node list both nodes; queue IDs carry
the node id; hold, release and delete on one node act on mail the other
accepted, a hold of mail the other node is delivering takes effect after
that attempt; `pigeon queue flush` on one node makes the other flush too.
"""

from __future__ import annotations

import json
import smtplib
import socket
import urllib.request

import pytest

from pigeon.testing.live import PigeonProcess, free_port, wait_for

pytestmark = pytest.mark.e2e


def node_config(dsn: str, node: str, hops: dict[str, int], metrics: int) -> str:
    routes = "".join(f'"{d}" = "smtp:[127.0.0.1]:{p}"\n' for d, p in hops.items())
    return (
        'relay_networks = ["127.0.0.0/8"]\n'
        '[domains."localhost"]\n'
        f"[transports]\n{routes}"
        # No scan of its own for an hour: what wakes a node here is the other.
        "[queue]\nrun_interval = 3600\nmin_backoff = 3600\nmax_backoff = 7200\n"
        f'store = "{dsn}"\nnode = "{node}"\n'
        "[delivery]\nconnect_timeout = 30.0\ncommand_timeout = 30.0\n"
        f'[admin]\nmetrics_listen = "127.0.0.1:{metrics}"\n'
    )


def send(node: PigeonProcess, rcpt: str, subject: str) -> str:
    with smtplib.SMTP("127.0.0.1", node.port, timeout=10) as s:
        s.ehlo()
        s.mail("sender@localhost")
        s.rcpt(rcpt)
        code, text = s.data(f"Subject: {subject}\r\n\r\nhi\r\n".encode())
    assert code == 250, text
    return text.decode().rsplit(" ", 1)[-1]  # "... queued as ID"


def entries(node: PigeonProcess, state: str | None = None) -> dict[str, str]:
    argv = ["queue", "list", "--json"] + (["--state", state] if state else [])
    done = node.command(*argv)
    assert done.returncode == 0, done.stderr
    return {e["id"]: e["state"] for e in json.loads(done.stdout)["entries"]}


def states(dsn: str) -> dict[str, str]:
    """The shared queue as the database has it (cheaper to poll than a command)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT queue_id, state FROM pigeon_queue").fetchall())


def status(node: PigeonProcess) -> dict:
    done = node.command("status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_two_nodes_administer_one_queue(pigeon_factory, postgres, tmp_path):
    from pigeon.cli.main import main
    from pigeon.store.pg.nodes import id_tail

    dsn = postgres.dsn(postgres.new_database())
    assert main(["db", "migrate", "--store", dsn]) == 0
    down, tarpit, metrics_b = free_port(), free_port(), free_port()
    hops = {"down.test": down, "slow.test": tarpit}
    a = pigeon_factory(node_config(dsn, "node-a", hops, free_port()))
    b = pigeon_factory(node_config(dsn, "node-b", hops, metrics_b))

    # A third pigeon under a name a live node holds: refused before it serves.
    twin = PigeonProcess(tmp_path / "twin", node_config(dsn, "node-a", hops, free_port()))
    with pytest.raises(RuntimeError, match="exited with 75") as refused:
        twin.start()
    assert "queue.node 'node-a' is in use by a running node" in str(refused.value)

    # Both nodes, alive, from either node's status and metrics.
    doc = status(b)
    assert doc["cluster"]["node"] == "node-b"
    nodes = {n["name"]: n for n in doc["cluster"]["nodes"]}
    assert {k: n["state"] for k, n in nodes.items()} == {"node-a": "alive", "node-b": "alive"}
    assert f"smtp 127.0.0.1:{a.port}" in nodes["node-a"]["listen"]
    text = b.command("status").stdout.decode()
    assert "this is node node-b; 2 of 2 nodes alive" in text and "node-a  alive" in text
    scrape = urllib.request.urlopen(f"http://127.0.0.1:{metrics_b}/metrics", timeout=10).read()
    assert b'pigeon_cluster_nodes{state="alive"} 2.0' in scrape
    assert b'pigeon_cluster_node_heartbeat_age_seconds{node="node-a"}' in scrape

    # Mail a accepted, administered on b; its ID ends with a's node id.
    qid = send(a, "user@down.test", "held")
    assert qid[15:] == id_tail(nodes["node-a"]["node_id"]) and len(qid) == 17
    assert wait_for(lambda: states(dsn).get(qid) == "deferred", timeout=30), a.log()
    assert entries(b) == {qid: "deferred"}, "node b does not list a's mail"
    assert b.command("queue", "hold", qid).returncode == 0
    assert entries(a) == {qid: "hold"}
    assert b.command("queue", "release", qid).returncode == 0
    assert entries(a)[qid] in ("deferred", "active")

    # Mail node a is delivering right now (its next hop accepts the
    # connection and never greets): a hold asked on b waits for the end of
    # a's attempt, then holds it.
    with socket.create_server(("127.0.0.1", tarpit), backlog=16):
        slow = send(a, "user@slow.test", "slow")
        assert wait_for(lambda: states(dsn).get(slow) == "active", timeout=30), a.log()
        done = b.command("queue", "hold", slow)
        assert done.returncode == 0, done.stderr
        assert "1 being delivered, held when that attempt ends" in done.stdout.decode()
        assert states(dsn)[slow] == "active"
    # The listener closed: its unaccepted connection is reset, a's attempt ends.
    assert wait_for(lambda: states(dsn).get(slow) == "hold", timeout=30), a.log() + b.log()
    assert b.command("queue", "delete", slow).returncode == 0
    assert slow not in states(dsn)

    # A flush on a alone: b flushes too (LISTEN/NOTIFY), and the mail goes.
    from pigeon.testing.sink import SmtpSink

    with SmtpSink("127.0.0.1", down) as sink:
        assert a.command("queue", "flush").returncode == 0
        assert wait_for(lambda: "queue flushed as node node-a asked" in b.log(), timeout=30)
        assert wait_for(lambda: len(sink.messages()) >= 1, timeout=30), a.log() + b.log()
        assert wait_for(lambda: states(dsn) == {}, timeout=30), states(dsn)
        assert len(sink.messages()) == 1, "delivered twice"

    # A clean stop marks the node stopped; the other sees it.
    assert a.stop() == 0
    nodes = {n["name"]: n["state"] for n in status(b)["cluster"]["nodes"]}
    assert nodes == {"node-a": "stopped", "node-b": "alive"}

"""Two `pigeon serve` nodes on one PostgreSQL queue (issue 17; docs/cluster-status.md).

Each node has its own data directory, ports and control socket and the
same `queue.store`, a fresh database on the session's throw-away cluster
(pigeon.testing.postgres), migrated with `pigeon db migrate`. Mail accepted
by one node is listed by `pigeon queue list` on the other, and once its
next hop answers it is delivered exactly once, whichever node takes it;
and the per-destination limit holds across the two nodes (a counting peer).
"""

from __future__ import annotations

import json
import smtplib

import pytest

from pigeon.testing.live import free_port, wait_for

pytestmark = pytest.mark.e2e


def node_config(dsn: str, node: str, hop: int) -> str:
    return (
        'relay_networks = ["127.0.0.0/8"]\n'
        '[domains."localhost"]\n'
        f'[transports]\n"down.test" = "smtp:[127.0.0.1]:{hop}"\n'
        "[queue]\nrun_interval = 1.0\nmin_backoff = 3600\nmax_backoff = 7200\n"
        f'store = "{dsn}"\nnode = "{node}"\n'
        "[delivery]\nconnect_timeout = 2.0\n"
    )


def listed(server, state: str | None = None) -> list[dict]:
    argv = ["queue", "list", "--json"] + (["--state", state] if state else [])
    done = server.command(*argv)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["entries"]


def test_two_nodes_share_one_queue(pigeon_factory, postgres):
    from pigeon.cli.main import main

    dsn = postgres.dsn(postgres.new_database())
    assert main(["db", "migrate", "--store", dsn]) == 0
    hop = free_port()  # nothing listens until the sink starts: the mail is deferred
    a = pigeon_factory(node_config(dsn, "node-a", hop))
    b = pigeon_factory(node_config(dsn, "node-b", hop))
    assert a.port != b.port
    with smtplib.SMTP("127.0.0.1", a.port, timeout=10) as s:
        s.sendmail("sender@localhost", ["user@down.test"], b"Subject: shared\r\n\r\nhi\r\n")
    with smtplib.SMTP("127.0.0.1", b.port, timeout=10) as s:
        s.sendmail("sender@localhost", ["other@down.test"], b"Subject: too\r\n\r\nhi\r\n")

    def both_deferred() -> list[dict] | None:
        entries = listed(b, "deferred")
        return entries if len(entries) == 2 else None

    entries = wait_for(both_deferred, timeout=30)
    assert entries, a.log() + b.log()
    ids = sorted(e["id"] for e in entries)
    assert sorted(e["id"] for e in listed(a)) == ids, "node a does not see the same queue"
    import psycopg

    with psycopg.connect(dsn) as conn:  # the entries are the database's, not a node's
        rows = conn.execute("SELECT queue_id FROM pigeon_queue ORDER BY queue_id").fetchall()
    assert [r[0] for r in rows] == ids
    assert not (a.data_dir / "queue" / "queue.db").exists(), "node a kept a local queue"

    from pigeon.testing.sink import SmtpSink

    with SmtpSink("127.0.0.1", hop) as sink:
        assert a.command("queue", "flush").returncode == 0
        assert b.command("queue", "flush").returncode == 0
        assert wait_for(lambda: len(sink.messages()) >= 2, timeout=30), a.log() + b.log()
        assert wait_for(lambda: listed(a) == [], timeout=30), listed(a)
        got = sink.messages()
    subjects = sorted(s for m in got for s in (b"shared", b"too") if b"Subject: " + s in m)
    assert subjects == [b"shared", b"too"], "a message was lost or delivered twice"


class _CountingPeer:
    """A plain SMTP server on 127.0.0.1 (threads, no extensions) that counts
    transactions in progress at once (MAIL to the reply after the data),
    holding each for `hold` seconds before its 250: what a next hop sees of
    the cluster's per-destination limit. Connections pigeon keeps idle for
    reuse do not count, only transactions."""

    def __init__(self, hold: float) -> None:
        import socketserver
        import threading

        self.hold, self.active, self.peak = hold, 0, 0
        self.subjects: list[str] = []
        self._lock = threading.Lock()
        peer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                peer._session(self.rfile, self.wfile)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _session(self, rfile, wfile) -> None:
        import time

        def say(text: str) -> None:
            wfile.write(text.encode() + b"\r\n")
            wfile.flush()

        say("220 peer.test ESMTP counting")
        in_mail = False
        try:
            for raw in rfile:
                verb = raw[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    say("250 peer.test")
                elif verb == b"MAIL":
                    with self._lock:
                        self.active += 1
                        self.peak = max(self.peak, self.active)
                    in_mail = True
                    say("250 ok")
                elif verb == b"RCPT":
                    say("250 ok")
                elif verb == b"DATA":
                    say("354 go on")
                    lines = []
                    for line in rfile:
                        if line in (b".\r\n", b".\n"):
                            break
                        lines.append(line)
                    time.sleep(self.hold)
                    subject = [x for x in lines if x.startswith(b"Subject: ")]
                    with self._lock:
                        self.subjects += [s[9:].strip().decode() for s in subject]
                        self.active -= 1
                    in_mail = False
                    say("250 queued")
                elif verb == b"QUIT":
                    say("221 bye")
                    return
                else:  # RSET, NOOP
                    if verb == b"RSET" and in_mail:
                        with self._lock:
                            self.active -= 1
                        in_mail = False
                    say("250 ok")
        finally:
            if in_mail:
                with self._lock:
                    self.active -= 1

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_destination_limit_holds_across_two_nodes(pigeon_factory, postgres):
    """destination_concurrency = 2 on each of two `pigeon serve` nodes sharing
    one queue, each given six messages for one next hop at once: the next hop
    never sees more than two transactions at a time (without the
    cluster-wide slots it would see four), and gets each message once."""
    from pigeon.cli.main import main

    dsn = postgres.dsn(postgres.new_database())
    assert main(["db", "migrate", "--store", dsn]) == 0
    peer = _CountingPeer(hold=0.5)
    try:

        def cfg(node: str) -> str:  # [delivery] is the last table of node_config
            text = node_config(dsn, node, peer.port).replace("[queue]\n", '[queue]\nlease = "3s"\n')
            return text + "destination_concurrency = 2\n"

        nodes = [pigeon_factory(cfg("node-a")), pigeon_factory(cfg("node-b"))]

        def send(n: int) -> list[str]:  # both nodes at once, so their deliveries overlap
            with smtplib.SMTP("127.0.0.1", nodes[n].port, timeout=30) as s:
                for i in range(6):
                    msg = f"Subject: m{n}-{i}\r\n\r\nhi\r\n".encode()
                    s.sendmail("sender@localhost", [f"u{i}@down.test"], msg)
            return [f"m{n}-{i}" for i in range(6)]

        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            sent = [x for got in pool.map(send, (0, 1)) for x in got]
        done = wait_for(lambda: len(peer.subjects) >= 12, timeout=60)
        assert done, nodes[0].log() + nodes[1].log()
        assert wait_for(lambda: listed(nodes[0]) == [], timeout=30), listed(nodes[0])
        assert sorted(peer.subjects) == sorted(sent), "a message was lost or delivered twice"
        assert peer.peak <= 2, f"{peer.peak} transactions at once for a limit of 2"
    finally:
        peer.close()

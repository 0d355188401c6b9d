"""What issue 17's cluster tests share: nodes on one database, a recording peer.

* `node_config(dsn, name, hop, **queue)`: a node relaying `*@down.test`
  to smtp:[127.0.0.1]:hop, with the shared `queue.store`, its own
  `queue.node`, quick retries, and extra `[queue]` keys from `queue`
  (lease = "5s", run_interval = 30...). No metrics listener (several nodes
  on one machine would clash on its default port).
* `start_nodes(pigeon_factory, postgres, names, hop, **queue)`: a fresh
  database migrated by `pigeon db migrate`, one running node per name;
  returns (dsn, nodes).
* `queue_rows(dsn)`: (queue_id, state, node) of every entry;
  `claimed_ids(dsn, node)`: the load ids (X-Load-Id) of the entries that
  node holds claimed ('active'), read from their content.
* `wait_delivered(sink_dir, ids, dsn, timeout)`: bounded polling until
  every id of `ids` reached the sink and the queue is empty; returns the
  sink's id counts (pigeon.testing.clusterload.delivered_ids).
* `kill_with_children(node)`: SIGKILL of the node, then of the checker
  child it started (app/checker.py), which would be left orphaned.
"""

from __future__ import annotations

import os
import re
import signal
from collections import Counter
from pathlib import Path

from pigeon.testing.clusterload import delivered_ids
from pigeon.testing.live import PigeonProcess, checker_pids, pid_alive, wait_for

START_TIMEOUT = 60.0  # seconds for a node to listen
_LOAD_ID = re.compile(rb"X-Load-Id: (\S+)\r?\n")


def node_config(dsn: str, name: str, hop: int, **queue: str | float) -> str:
    extra = "".join(
        f"{k} = {v!r}\n".replace("'", '"') if isinstance(v, str) else f"{k} = {v}\n"
        for k, v in queue.items()
    )
    base = {"run_interval": 1.0, "min_backoff": 1, "max_backoff": 2}
    keys = "".join(f"{k} = {v}\n" for k, v in base.items() if k not in queue)
    return (
        'relay_networks = ["127.0.0.0/8"]\n'
        '[domains."localhost"]\n'
        f'[transports]\n"down.test" = "smtp:[127.0.0.1]:{hop}"\n'
        f'[queue]\n{keys}{extra}store = "{dsn}"\nnode = "{name}"\n'
        "[delivery]\nconnect_timeout = 5.0\n"
        '[admin]\nmetrics_listen = ""\n'
    )


def start_nodes(tmp_path: Path, postgres, names, hop: int, **queue):
    from pigeon.cli.main import main

    dsn = postgres.dsn(postgres.new_database())
    assert main(["db", "migrate", "--store", dsn]) == 0
    nodes = [PigeonProcess(tmp_path / name, node_config(dsn, name, hop, **queue)) for name in names]
    for node in nodes:
        node.start(timeout=START_TIMEOUT)
    return dsn, nodes


def queue_rows(dsn: str) -> list[tuple[str, str, str | None]]:
    import psycopg

    with psycopg.connect(dsn, connect_timeout=10) as conn:
        return conn.execute("SELECT queue_id, state, node FROM pigeon_queue").fetchall()


def claimed_ids(dsn: str, node: str) -> list[str]:
    """The load ids of the entries `node` holds claimed, from their content's
    first chunk (the header is there: the messages are small)."""
    import psycopg

    with psycopg.connect(dsn, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT c.data FROM pigeon_queue q JOIN pigeon_content c "
            "ON c.queue_id = q.queue_id AND c.seq = 0 "
            "WHERE q.state = 'active' AND q.node = %s",
            (node,),
        ).fetchall()
    out = []
    for (data,) in rows:
        m = _LOAD_ID.search(bytes(data))
        assert m, "a claimed entry without a load id"
        out.append(m.group(1).decode())
    return out


def wait_delivered(sink_dir: Path, ids, dsn: str, timeout: float) -> Counter[str]:
    wanted = set(ids)

    def done() -> Counter[str] | None:
        got = delivered_ids(sink_dir)
        if wanted <= set(got) and not queue_rows(dsn):
            return got
        return None

    return wait_for(done, timeout=timeout, interval=1.0) or delivered_ids(sink_dir)


def kill_with_children(node) -> None:
    """SIGKILL `node` and then the checker processes it started (orphans else)."""
    children = checker_pids(node.pid)
    node.kill()
    for pid in children:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

"""The nodes of a shared queue: one row per node name, a heartbeat per running node.

Contract:
  * Table `pigeon_nodes` (migrations/0002_nodes.sql). Every open store has
    its name's row (made, stopped, on first use) and its `node_id`, a small
    integer the database hands out once per name and never reuses: it is
    the tail of the node's queue IDs (`id_tail`), so IDs made by two nodes
    never clash (issue 17; the embedded generator's process tail tells only
    the processes of one node apart).
  * `NodeRegistry.join(force=False)`: this process runs the node (the
    store opened as the queue's owner, `pigeon serve`). Refused with
    `NodeNameInUse` when the row shows another process alive under the
    name: not stopped, a heartbeat younger than STALE seconds (the
    database's clock), and not a dead pid of this very host. Two processes
    under one name must never run: each one's `recover()` releases every
    claim made under the name (manager.py), the other's deliveries in
    progress included. A stale or stopped row is taken over. `force=True`
    (the successor of `pigeon restart`, once its predecessor has ended)
    takes the row whatever it says.
  * `beat()` (every HEARTBEAT seconds, from the store's heartbeat thread,
    never the event loop) refreshes `last_seen` when the row is still this
    process's; when another process took the name over (this one was cut
    off longer than STALE) it logs an error and leaves the row alone.
    `leave()` (a clean stop) marks the row stopped if it is still ours.
  * `nodes()`: every row with its state as the database sees it now:
    "alive" (heartbeat within STALE), "lost" (no heartbeat for STALE and
    no clean stop: the node died or lost the database) or "stopped".
  * Errors: psycopg errors leave as StoreError (db.Pool); `NodeNameInUse`
    is a StoreError the start-up maps to exit status 75 (app/exits.py).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from typing import Any

from pigeon import __version__
from pigeon.store.pg.db import Pool
from pigeon.vocab.errors import StoreError

__all__ = ["HEARTBEAT", "STALE", "NodeNameInUse", "NodeRegistry", "id_tail"]

log = logging.getLogger("pigeon.queue")

HEARTBEAT = 5.0  # seconds between two heartbeats of a running node
STALE = 20.0  # seconds without a heartbeat after which a node counts as lost

_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford, as queue/spool.py's IDs


def id_tail(node_id: int) -> str:
    """`node_id` in Crockford base32, at least 2 characters (1024 nodes), more
    past that: appended to the 15 characters of queue/spool.py's IDs, whose
    fixed length keeps the whole unambiguous."""
    out = ""
    while node_id or len(out) < 2:
        out = _B32[node_id & 31] + out
        node_id >>= 5
    return out


class NodeNameInUse(StoreError):
    """Another running process holds this node name (see the contract)."""


_COLUMNS = (
    "name, node_id, host, pid, version, listen, started, last_seen, stopped_at, "
    "extract(epoch FROM now() - last_seen)"
)


def _pid_dead(pid: int | None) -> bool:
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


class NodeRegistry:
    """This node's row, and the view of every node's (see the contract)."""

    def __init__(self, pool: Pool, name: str, *, listen: str = "") -> None:
        self.pool = pool
        self.name = name
        self.listen = listen
        self.instance = secrets.token_hex(8)
        self.host = socket.gethostname()
        self.joined = False
        self._taken_logged = False

    def node_id(self) -> int:
        """The name's node_id, its row made (stopped) when missing."""
        with self.pool.conn("node id") as conn:
            sql = "SELECT node_id FROM pigeon_nodes WHERE name = %s"
            row = conn.execute(sql, (self.name,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO pigeon_nodes (name, stopped_at) VALUES (%s, now()) "
                    "ON CONFLICT (name) DO NOTHING",
                    (self.name,),
                )
                row = conn.execute(sql, (self.name,)).fetchone()
        return int(row[0])

    def join(self, *, force: bool = False) -> None:
        """Run under this name from now on (see the contract)."""
        with self.pool.conn("node join") as conn:
            with conn.transaction():
                row = conn.execute(
                    "SELECT instance, host, pid, stopped_at IS NULL AND last_seen IS NOT NULL "
                    "AND last_seen > now() - make_interval(secs => %s), "
                    "extract(epoch FROM now() - last_seen) "
                    "FROM pigeon_nodes WHERE name = %s FOR UPDATE",
                    (STALE, self.name),
                ).fetchone()
                if row is not None and not force:
                    instance, host, pid, fresh, age = row
                    mine = pid == os.getpid() or _pid_dead(pid)
                    dead_here = host == self.host and mine
                    if fresh and instance != self.instance and not dead_here:
                        raise NodeNameInUse(
                            f"queue.node {self.name!r} is in use by a running node (host "
                            f"{host}, pid {pid}, last heartbeat {float(age):.0f}s ago): give "
                            "each node its own [queue] node, or stop the other one (two nodes "
                            "under one name would take over each other's deliveries)"
                        )
                values = (self.instance, self.host, os.getpid(), __version__, self.listen)
                if row is None:  # node_id() makes it first; an operator may have removed it
                    conn.execute(
                        "INSERT INTO pigeon_nodes (name) VALUES (%s) ON CONFLICT DO NOTHING",
                        (self.name,),
                    )
                # An UPDATE, not an upsert: an upsert would draw (and waste) a node_id each time.
                conn.execute(
                    "UPDATE pigeon_nodes SET instance = %s, host = %s, pid = %s, version = %s, "
                    "listen = %s, started = now(), last_seen = now(), stopped_at = NULL "
                    "WHERE name = %s",
                    (*values, self.name),
                )
        self.joined = True
        self._taken_logged = False

    def beat(self) -> bool:
        """One heartbeat; False when another process holds the name now."""
        with self.pool.conn("node heartbeat") as conn:
            cur = conn.execute(
                "UPDATE pigeon_nodes SET last_seen = now() WHERE name = %s AND instance = %s",
                (self.name, self.instance),
            )
            if cur.rowcount:
                self._taken_logged = False
                return True
            row = conn.execute(
                "SELECT host, pid FROM pigeon_nodes WHERE name = %s", (self.name,)
            ).fetchone()
        if not self._taken_logged:
            self._taken_logged = True
            where = f"host {row[0]}, pid {row[1]}" if row else "its row was removed"
            log.error(
                "queue.node %r was taken over by another process (%s) while this node had "
                "no heartbeat: two nodes now run under one name; stop one of them",
                self.name,
                where,
            )
        return False

    def leave(self) -> None:
        """A clean stop: the row says stopped (if it is still ours)."""
        if not self.joined:
            return
        self.joined = False
        with self.pool.conn("node leave") as conn:
            conn.execute(
                "UPDATE pigeon_nodes SET stopped_at = now(), last_seen = now(), instance = NULL "
                "WHERE name = %s AND instance = %s",
                (self.name, self.instance),
            )

    def nodes(self) -> list[dict[str, Any]]:
        """Every node's row and state (see the contract), by name."""
        with self.pool.conn("nodes") as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM pigeon_nodes ORDER BY name").fetchall()
        out = []
        for name, nid, host, pid, version, listen, started, seen, stopped, age in rows:
            if stopped is not None or seen is None:
                state = "stopped"
            elif float(age) <= STALE:
                state = "alive"
            else:
                state = "lost"
            out.append(
                {
                    "name": name,
                    "node_id": int(nid),
                    "state": state,
                    "host": host,
                    "pid": pid,
                    "version": version,
                    "listen": listen or "",
                    "started": started.timestamp() if started else None,
                    "last_seen": seen.timestamp() if seen else None,
                    "heartbeat_age": None if age is None else max(0.0, float(age)),
                    "this": name == self.name,
                }
            )
        return out

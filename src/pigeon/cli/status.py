"""`pigeon status`: is pigeon running, and how is it doing.

Contract:
  * Asks the running server (control socket, op "status") and prints a
    short summary: pid, uptime, SMTP sessions (live, total, refused),
    queue counts by state, delivery counters since start, destinations
    marked dead, and storage: whether the queue or the mailboxes are
    "degraded" (writes failing: since when, why, results kept in memory),
    free space in the queue file system against the reserve
    (`queue.min_free`) and whether new mail is refused for lack of it.
    `--json` prints the server's answer as is.
  * With a queue several nodes share (`queue.store`, docs/cluster.md) it
    also lists the cluster's nodes: name, state (alive, lost: no heartbeat
    for store/pg/nodes.py's STALE seconds without a clean stop, stopped),
    the age of the last heartbeat, host, pid and where each serves; the
    queue counts are the cluster's (every node reads the one table), the
    delivery counters this node's. The same list when pigeon is not
    running (read from the database).
  * When pigeon is not running: "pigeon is not running" plus the queue
    counts read from the store, exit 3 (the LSB "program is not running"
    status, which scripts and init systems test for); when those counts
    cannot be read (a damaged queue.db, or one of a newer format) one line
    and 73. A user who may not use the control socket gets 77 (EX_NOPERM),
    never a wrong "not running".
"""

from __future__ import annotations

import argparse
import json
import time

from pigeon.admin.client import ControlForbidden, ControlUnavailable, OfflineQueue, RemoteError
from pigeon.cli._common import EX_CONFIG, fail
from pigeon.cli._control import (
    EX_DATAERR,
    EX_NOPERM,
    add_config_arguments,
    connect,
    human_age,
    load,
)
from pigeon.config.load import ConfigError

EX_NOT_RUNNING = 3

HELP = "show whether pigeon runs, its sessions, queue and delivery counters"

DESCRIPTION = """\
Ask the running pigeon (through its control socket) for a summary:
uptime, SMTP sessions, the queue by state, and how many recipients were
delivered, deferred and bounced since it started. When pigeon is not
running, say so and show the queue as stored on disk.
"""

EPILOG = """\
examples:
  pigeon status
  pigeon status --json | jq .queue

exit status: 0 running, 3 not running, 65 refused, 73 not running and the
queue database is damaged or of a newer format than this pigeon's, 77
permission denied (run as root or the pigeon user), 78 configuration error.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")


def format_status(s: dict) -> list[str]:
    server = s.get("server") or {}
    queue = s.get("queue") or {}
    dests = s.get("destinations") or {}
    lines = [f"pigeon is running (pid {s.get('pid')}, up {human_age(s.get('uptime', 0))})"]
    if server:
        lines.append(
            f"  sessions:     {server.get('sessions', 0)} now, "
            f"{server.get('connections_total', 0)} since start, "
            f"{server.get('connections_refused', 0)} refused"
            + (" (draining)" if server.get("draining") else "")
        )
    lines.append(
        "  queue:        "
        + ", ".join(f"{k} {v}" for k, v in queue.items())
        + f" (total {sum(queue.values())})"
    )
    lines.append(
        f"  recipients:   delivered {s.get('delivered', 0)}, deferred {s.get('deferred', 0)}, "
        f"bounced {s.get('bounced', 0)}, expired {s.get('expired', 0)}"
    )
    lines.append(
        f"  reports sent: {s.get('notifications', 0)}; in delivery: {s.get('in_flight', 0)}"
        f"; dead destinations: {dests.get('dead', 0)}"
    )
    if s.get("storage"):
        lines += format_storage(s["storage"], now=time.time())
    if s.get("cluster"):
        lines += format_cluster(s["cluster"])
    return lines


def format_cluster(c: dict) -> list[str]:
    """The nodes of a shared queue (module contract)."""
    if c.get("error"):
        return [f"  cluster:      node {c.get('node')}; nodes unknown: {c['error']}"]
    nodes = c.get("nodes") or []
    alive = sum(1 for n in nodes if n.get("state") == "alive")
    lines = [
        f"  cluster:      this is node {c.get('node')}; {alive} of {len(nodes)} nodes alive "
        "(queue counts are the cluster's; recipients and in delivery this node's)"
    ]
    width = max((len(str(n.get("name"))) for n in nodes), default=4)
    for n in nodes:
        age = n.get("heartbeat_age")
        beat = "never" if age is None else f"{human_age(age)} ago"
        where = f"host {n.get('host')}, pid {n.get('pid')}" if n.get("host") else "never served"
        if n.get("listen"):
            where += f", {n['listen']}"
        lines.append(
            f"    {str(n.get('name')).ljust(width)}  {str(n.get('state')).ljust(7)}  "
            f"heartbeat {beat}; {where}"
        )
    return lines


def _mib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


def _health(name: str, h: dict, now: float) -> str:
    if not h.get("degraded"):
        return f"{name} ok"
    since = h.get("since") or now
    return (
        f"{name} DEGRADED for {human_age(max(0.0, now - since))} "
        f"({h.get('reason') or 'writes failing'}; {h.get('failures', 0)} failed writes)"
    )


def format_storage(st: dict, *, now: float) -> list[str]:
    """The storage lines of `pigeon status` (module contract)."""
    parts = [
        _health("queue", st.get("queue") or {}, now),
        _health("mailboxes", st.get("mailbox") or {}, now),
    ]
    kept = st.get("unsaved", 0) + st.get("requeue", 0)
    if kept:
        parts.append(f"{kept} queue entries waiting for the store to take writes")
    lines = ["  storage:      " + "; ".join(parts)]
    space = st.get("space") or {}
    free, reserve = space.get("free"), space.get("reserve", 0)
    if free is not None:
        text = f"{_mib(max(free, 0))} free"
        if reserve:
            text += f", reserve {_mib(reserve)} (queue.min_free)"
        if space.get("low"):
            text += ": below the reserve, new mail refused with 452 4.3.1"
        lines.append("  disk space:   " + text)
    return lines


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    try:
        client = connect(config, offline_ok=True)
        result = client.call("status")
    except ControlForbidden as exc:
        return fail(str(exc), EX_NOPERM)
    except ControlUnavailable as exc:
        return fail(str(exc), EX_NOT_RUNNING)
    except RemoteError as exc:
        return fail(str(exc), EX_DATAERR)
    if args.json:
        print(json.dumps({"running": not isinstance(client, OfflineQueue), **result}, indent=2))
    elif isinstance(client, OfflineQueue):
        queue = result.get("queue") or {}
        print(f"pigeon is not running (no answer on {config.control_socket})")
        if queue:
            where = "in the database" if result.get("cluster") else "on disk"
            print(f"  queue {where}: " + ", ".join(f"{k} {v}" for k, v in queue.items()))
        if result.get("cluster"):
            print("\n".join(format_cluster(result["cluster"])))
    else:
        print("\n".join(format_status(result)))
    return EX_NOT_RUNNING if isinstance(client, OfflineQueue) else 0

"""systemd readiness notification (sd_notify(3)) without a dependency.

Contract:
  * `notify(state)` sends one datagram, e.g. "READY=1", to the socket named
    by $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace) and
    returns True; without $NOTIFY_SOCKET (not started by systemd with
    Type=notify) it does nothing and returns False.
  * Helpers for the states pigeon reports: `ready()` once listeners and the
    queue manager run (with a STATUS= line), `reloading()` at SIGHUP
    (RELOADING=1 plus MONOTONIC_USEC=, which systemd >= 253 requires for
    Type=notify-reload), `stopping()` at SIGTERM.
  * Never raises: a notification that cannot be sent is logged at debug
    level; systemd's own timeout then tells the operator.
"""

from __future__ import annotations

import logging
import os
import socket
import time

__all__ = ["notify", "ready", "reloading", "stopping", "status"]

log = logging.getLogger("pigeon.admin")


def notify(state: str, *, environ: dict | None = None) -> bool:
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract socket namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(state.encode("utf-8"))
    except OSError as exc:
        log.debug("sd_notify %r failed: %s", state, exc)
        return False
    return True


def ready(status_text: str = "", **kw) -> bool:
    return notify("READY=1" + (f"\nSTATUS={status_text}" if status_text else ""), **kw)


def reloading(**kw) -> bool:
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}", **kw)


def stopping(**kw) -> bool:
    return notify("STOPPING=1", **kw)


def status(text: str, **kw) -> bool:
    return notify(f"STATUS={text}", **kw)

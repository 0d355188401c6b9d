"""`pigeon restart`: a new pigeon process takes over from the running one, without a gap.

Contract:
  * Asks the running server, through its control socket, to restart (the
    "restart" operation, pigeon.app.restart): it loads its configuration
    again (same file, same flags), starts a new process of itself with its
    listening sockets, and once that one accepts connections stops
    accepting and finishes its sessions; the new process owns the queue
    once the old one has ended. Which server: as for `pigeon reload`
    (-c/--config, --data-dir say where the control socket is; the file
    need not be valid as a whole: the server reports its problems).
  * Then it waits (bounded: twice `timeouts.shutdown_grace` plus a
    margin) until the new process answers on the control socket, i.e. owns
    the queue, and prints one line: "restart: pigeon (pid NEW) took over
    from pid OLD".
  * Exit status (sysexits.h):
      - 0: done;
      - 78 (EX_CONFIG): the configuration does not load: "pigeon: restart
        refused, ..." then every problem, one line each; the running pigeon
        goes on unchanged;
      - 69 (EX_UNAVAILABLE): pigeon is not running, or the new process did
        not start (the reason on stderr; the running pigeon goes on);
      - 75 (EX_TEMPFAIL): the new process accepts mail but has not taken
        the queue over within the bound (the old one is still finishing).
"""

from __future__ import annotations

import argparse
import time

from pigeon.admin.client import ControlClient, ControlUnavailable, RemoteError
from pigeon.cli._common import EX_CONFIG, fail
from pigeon.cli._control import EX_UNAVAILABLE, add_config_arguments
from pigeon.cli.reload import _server_config
from pigeon.config.load import ConfigError

HELP = "replace the running server by a new process, without refusing a connection"

DESCRIPTION = """\
Start a new pigeon process in place of the running one: the new process
takes over the listening sockets and accepts at once; the old one stops
accepting, lets its sessions finish (timeouts.shutdown_grace) and ends;
the new one then owns the queue and delivers. No connection attempt is
refused and nothing accepted is lost. Use it for changes that
"pigeon reload" cannot apply (workers, [queue], [delivery], [log],
[admin]) and after upgrading pigeon: the new process runs the code now
installed, with the same command line and configuration file, as the user
the running pigeon runs as (a change of user or group needs a stop and a
start: root was dropped).
"""

EPILOG = """\
examples:
  pigeon restart
      restart: pigeon (pid 4312) took over from pid 4120

exit status: 0 done, 78 the configuration does not load (nothing changed),
69 pigeon is not running or the new process did not start (the old one goes
on), 75 the old process has not ended within the bound.
"""

EX_TEMPFAIL = 75
#: Seconds for the new process to start accepting (the server's bound, pigeon.app.restart).
START_TIMEOUT = 90.0
#: Beyond twice the grace: the takeover (recovery, control socket) after the old one ends.
MARGIN = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def _current_pid(client: ControlClient) -> int | None:
    try:
        return int(client.call("ping")["pid"])
    except (ControlUnavailable, RemoteError, KeyError, TypeError, ValueError):
        return None


def run(args: argparse.Namespace) -> int:
    try:
        config = _server_config(args)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    client = ControlClient(config.control_socket, timeout=START_TIMEOUT)
    try:
        outcome = client.call("restart")
    except ControlUnavailable as exc:
        return fail(str(exc), EX_UNAVAILABLE)
    except RemoteError as exc:  # a pigeon too old to know "restart", or one already restarting
        return fail(f"restart failed: {exc}", EX_UNAVAILABLE)
    status = outcome.get("status")
    if status == "refused":
        return fail(
            "\n".join(["restart refused, the running pigeon goes on:", *outcome.get("errors", [])]),
            EX_CONFIG,
        )
    if status != "started":
        return fail(f"restart failed: {outcome.get('error', outcome)}", EX_UNAVAILABLE)
    old, new = outcome["old_pid"], outcome["new_pid"]
    deadline = time.monotonic() + 2 * float(outcome.get("grace", 30)) + MARGIN
    probe = ControlClient(config.control_socket, timeout=10.0)
    while _current_pid(probe) != new:
        if time.monotonic() > deadline:
            return fail(
                f"restart: the new pigeon (pid {new}) accepts mail, but pid {old} has not "
                "ended yet: the queue is delivered once it has",
                EX_TEMPFAIL,
            )
        time.sleep(0.1)  # bounded by the deadline
    print(f"restart: pigeon (pid {new}) took over from pid {old}")
    return 0

"""`pigeon stop`: stop the running pigeon as SIGTERM does, and wait until it is gone.

Contract:
  * Asks the running server, through its control socket, to stop (the
    "stop" operation: the same stop as SIGTERM, app/lifecycle.py; with
    `workers` > 1 the main process stops its workers). Which server: as
    for `pigeon reload` (-c/--config, --data-dir; only `data_dir` and
    `[admin] control_socket` need to be valid in the file).
  * Then waits until that process has gone, at most the bound the server
    answered (`timeouts.shutdown_grace` + 5 s) plus WAIT_MARGIN, polling
    (a zombie waiting for its parent counts as gone), and prints ONE line
    on stdout: "pigeon stopped (pid N)".
  * Exit status (sysexits.h): 0 stopped; 69 (EX_UNAVAILABLE) pigeon is not
    running (nothing answers on the control socket) or cannot be stopped
    this way; 75 (EX_TEMPFAIL) it was asked but is still there after the
    wait (the reason is in its log).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from pigeon.admin.client import ControlClient, ControlUnavailable, RemoteError
from pigeon.cli._common import EX_CONFIG, fail
from pigeon.cli._control import EX_UNAVAILABLE, add_config_arguments

# The same rule as `pigeon reload`: only the keys placing the control socket count.
from pigeon.cli.reload import _server_config as server_config
from pigeon.config.load import ConfigError

HELP = "stop the running server (as SIGTERM does) and wait until it is gone"

DESCRIPTION = """\
Ask the running pigeon to stop, the same as SIGTERM: it stops accepting at
once, abandons the deliveries in progress (they are tried again after the
next start), gives the sessions in progress timeouts.shutdown_grace to
finish, and exits. pigeon stop waits until the process has gone (at most
the grace period and 5 seconds, and a little more) and prints one line.
-c/--data-dir only say which pigeon to ask (where its control socket is).
"""

EPILOG = """\
examples:
  pigeon stop
      pigeon stopped (pid 4242)
  pigeon stop -c /etc/pigeon/pigeon.toml

exit status: 0 stopped, 69 pigeon is not running, 75 still running after
the wait (see its log).
"""

EX_TEMPFAIL = 75

#: Seconds pigeon stop waits beyond the bound the server gave.
WAIT_MARGIN = 5.0

#: Seconds between two looks at the process.
POLL = 0.05


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting for its parent is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


def run(args: argparse.Namespace) -> int:
    try:
        config = server_config(args)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    try:
        answer = ControlClient(config.control_socket).call("stop")
    except ControlUnavailable as exc:
        return fail(str(exc), EX_UNAVAILABLE)
    except RemoteError as exc:  # a pigeon too old to know "stop"
        return fail(f"stop failed: {exc}", EX_UNAVAILABLE)
    pid = int(answer["pid"])
    wait = float(answer.get("within", 35.0)) + WAIT_MARGIN
    deadline = time.monotonic() + wait
    while running(pid):
        if time.monotonic() > deadline:
            return fail(f"pigeon (pid {pid}) is still running after {wait:g}s", EX_TEMPFAIL)
        time.sleep(POLL)
    print(f"pigeon stopped (pid {pid})")
    return 0

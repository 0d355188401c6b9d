"""Helpers for the commands that talk to a running pigeon (queue, status, log, sendmail).

Contract:
  * Which configuration: the rule of `pigeon.cli._config` (`-c FILE`,
    else $PIGEON_CONFIG, else /etc/pigeon/pigeon.toml, else the embedded
    defaults; never the current directory's pigeon.toml); then `--data-dir`
    overrides data_dir. The configuration only tells where the data
    directory, the control socket and the log file are. `load` refuses a
    data_dir that does not exist (78) and, run as root, switches to the
    owner of data_dir (`_config.become_data_owner`).
  * `-c/--config` and `--data-dir` are accepted before and after the
    action (`pigeon user add NAME -c FILE` = `pigeon user -c FILE add
    NAME`): `add_config_arguments(parser)` on the command's parser and
    `add_config_arguments(subparser, nested=True)` on each action's.
  * `connect(config, offline_ok)` returns a `ControlClient` when pigeon
    answers on the control socket; if it does not and `offline_ok`, an
    `OfflineQueue` reading the store; else raises `ControlUnavailable`.
  * `Progress` draws a one-line text bar on stderr when stderr is a TTY
    ("hold [#####.....] 512/1024"), and nothing otherwise, so scripts and
    logs never see carriage returns.
  * Exit statuses (sysexits.h): 69 EX_UNAVAILABLE when pigeon must be
    running and is not, 65 EX_DATAERR when it refused the request (unknown
    id...), 77 EX_NOPERM when this user may not use the control socket or
    read the store, 78 EX_CONFIG for configuration errors, 66 EX_NOINPUT
    for a missing log file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from pigeon.admin.client import ControlClient, ControlForbidden, ControlUnavailable, OfflineQueue
from pigeon.cli._config import (
    CONFIG_ENV,
    SYSTEM_CONFIG,
    become_data_owner,
    load_for_command,
    locate,
)
from pigeon.cli._entry import raw_stream
from pigeon.config.schema import Config

EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_NOPERM = 77


def add_config_arguments(parser: argparse.ArgumentParser, *, nested: bool = False) -> None:
    """-c/--config and --data-dir; `nested` for an action's own parser (see the contract)."""
    # An action's parser must not reset what was given before the action:
    # argparse copies a subparser's defaults over the namespace, so the
    # nested copies have no default at all (SUPPRESS).
    default = argparse.SUPPRESS if nested else None
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        type=Path,
        default=default,
        help=f"TOML configuration file (default: ${CONFIG_ENV}, "
        f"else {SYSTEM_CONFIG} if present, else built-in defaults)",
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", default=default, help="data directory (overrides the file)"
    )


def config_path(explicit: Path | None, environ: dict | None = None) -> Path | None:
    """The configuration file to read (see the contract), or None for defaults."""
    return locate(explicit, environ).path


def load(args: argparse.Namespace, *, need_data_dir: bool = True, as_owner: bool = True) -> Config:
    """The configuration for these args (see the contract); raises ConfigError."""
    config = load_for_command(
        getattr(args, "config", None), getattr(args, "data_dir", None), need_data_dir=need_data_dir
    )
    if need_data_dir and as_owner:
        become_data_owner(config)
    return config


def connect(config: Config, *, offline_ok: bool = False):
    """The running server's ControlClient, else (`offline_ok`) an OfflineQueue.
    Raises ControlUnavailable; ControlForbidden (a user who may not ask) never falls back."""
    client = ControlClient(config.control_socket)
    try:
        client.call("ping")
    except ControlForbidden:
        raise
    except ControlUnavailable:
        if offline_ok:
            return OfflineQueue(config)
        raise
    return client


class Progress:
    """A text progress bar on a TTY (see the contract)."""

    WIDTH = 30

    def __init__(
        self, label: str, total: int, stream: TextIO | None = None, enabled: bool | None = None
    ) -> None:
        self.label, self.total = label, total
        # The raw stream: its carriage returns must not be escaped (cli._entry).
        self.stream = stream if stream is not None else raw_stream(sys.stderr)
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.done = 0
        self._last = 0.0

    def advance(self, n: int) -> None:
        self.done = min(self.total, self.done + n)
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.05 or self.done >= self.total):
            self._last = now
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def line(self) -> str:
        filled = self.WIDTH * self.done // self.total if self.total else self.WIDTH
        return (
            f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.done}/{self.total}"
        )

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * len(self.line()) + "\r")
            self.stream.flush()


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def human_age(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"

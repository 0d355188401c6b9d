"""Helpers for the commands that talk to a running pigeon (queue, status, log, sendmail).

Contract:
  * Which configuration: `-c/--config FILE`, else $PIGEON_CONFIG, else
    ./pigeon.toml when it exists, else the embedded defaults; then
    `--data-dir` overrides data_dir. The configuration only tells where
    the data directory, the control socket and the log file are.
  * `connect(config, offline_ok)` returns a `ControlClient` when pigeon
    answers on the control socket; if it does not and `offline_ok`, an
    `OfflineQueue` reading the store; else raises `ControlUnavailable`.
  * `Progress` draws a one-line text bar on stderr when stderr is a TTY
    ("hold [#####.....] 512/1024"), and nothing otherwise, so scripts and
    logs never see carriage returns.
  * Exit statuses (sysexits.h): 69 EX_UNAVAILABLE when pigeon must be
    running and is not, 65 EX_DATAERR when it refused the request (unknown
    id...), 78 EX_CONFIG for configuration errors, 66 EX_NOINPUT for a
    missing log file.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from pigeon.admin.client import ControlClient, ControlUnavailable, OfflineQueue
from pigeon.config.load import load_config
from pigeon.config.schema import Config

EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69

CONFIG_ENV = "PIGEON_CONFIG"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE", type=Path,
                        help=f"TOML configuration file (default: ${CONFIG_ENV}, "
                             "else ./pigeon.toml if present, else built-in defaults)")
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (overrides the file)")


def config_path(explicit: Path | None, environ: dict | None = None) -> Path | None:
    """The configuration file to read (see the contract), or None for defaults."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        return explicit
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    local = Path("pigeon.toml")
    return local if local.is_file() else None


def load(args: argparse.Namespace) -> Config:
    """The configuration for these args; raises ConfigError."""
    overrides = {"data_dir": args.data_dir} if getattr(args, "data_dir", None) else {}
    return load_config(config_path(getattr(args, "config", None)), overrides)


def connect(config: Config, *, offline_ok: bool = False):
    client = ControlClient(config.control_socket)
    try:
        client.call("ping")
    except ControlUnavailable:
        if offline_ok:
            return OfflineQueue(config)
        raise
    return client


class Progress:
    """A text progress bar on a TTY (see the contract)."""

    WIDTH = 30

    def __init__(self, label: str, total: int, stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.label, self.total = label, total
        self.stream = stream if stream is not None else sys.stderr
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
        return (f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                f"{self.done}/{self.total}")

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * len(self.line()) + "\r")
            self.stream.flush()


def human_size(n: int) -> str:
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

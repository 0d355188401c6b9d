"""The `[capture]` section's values (checked in pigeon.config._capture; docs/capture.md).

Capture mode: mail through a capture listener, from a capture account, or to
a capture domain (`[domains."NAME"] capture = true`) is accepted, kept in
the queue in state 'capture' and never delivered until released.
"""

from __future__ import annotations

from dataclasses import dataclass

from pigeon.config.listen import ListenAddress

__all__ = ["CaptureConfig", "DEFAULT_MAX_AGE", "DEFAULT_MAX_SIZE"]

DEFAULT_MAX_SIZE = 1024**3  # 1 GiB
DEFAULT_MAX_AGE = 7 * 86400.0  # 7 days


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    """[capture]: which mail is captured, and how much of it is kept."""

    #: [capture] listeners: "host:port" of listeners (among listen,
    #: submission_listen, submissions_listen) whose mail is all captured;
    #: tenant: the account when logged in, else the listener's address.
    listeners: tuple[ListenAddress, ...] = ()
    #: [capture] accounts: accounts (`pigeon user`) whose mail is captured,
    #: each under its own name as tenant, whatever the listener or domain.
    accounts: frozenset[str] = frozenset()
    #: [capture] max_size, octets ("1GB" allowed): captured mail kept in
    #: all, oldest removed first above it; >= 1024.
    max_size: int = DEFAULT_MAX_SIZE
    #: [capture] max_age, s: captured mail older than this is removed; > 0.
    max_age: float = DEFAULT_MAX_AGE
    #: [capture] sweep_interval, s: how often the limits are applied; > 0.
    sweep_interval: float = 60.0

"""The configuration schema: frozen dataclasses, one documented field each.

Contract:
  * This module only *describes* configuration: defaults, units, meaning.
    Loading (defaults -> TOML file -> command-line overrides) and validation
    live in `pigeon.config.load`, which raises `ConfigError` naming the key.
  * Every field's comment gives its TOML key, default and unit; docs/config.md
    is the reference for users and must agree with this file.
  * The embedded defaults run a safe quick-start server: loopback only,
    local domain "localhost", no relaying for anyone.

TOML layout (all keys optional):

    hostname = "mail.example.test"
    data_dir = "./pigeon-data"
    listen = ["127.0.0.1:2525"]
    relay_networks = ["127.0.0.0/8"]

    [domains."example.test"]          # a local domain
    mailboxes = ["alice", "bob"]      # omit: any local part is accepted
    # (or, without tables: domains = ["example.test", "example.org"])

    [aliases]
    "info@example.test" = ["alice@example.test", "carol@elsewhere.example"]

    [limits]    message_size, recipients, errors, hop_count, connections, connections_per_ip
    [timeouts]  command, data_block, data_total, shutdown_grace, greet_pause
    [smtp]      bare_newline, eight_bit_undeclared, pipelining, chunking, smtputf8, dsn, eight_bit_mime
    [queue]     fsync, run_interval
    [log]       format, level, file
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """One listener: host (IPv4/IPv6 literal or name) and TCP port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """A local domain: mail for it is delivered to Maildirs under data_dir."""

    name: str                                   # lowercased domain name
    #: `mailboxes`: the accepted local parts (lowercased). None (key absent):
    #: any local part is accepted. With a list, unknown ones get 550 5.1.1.
    mailboxes: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """[limits]: integers; `load` enforces the minimum given in each comment."""

    message_size: int = 10_240_000     # [limits] message_size, octets (Postfix message_size_limit); >= 0, 0 = none
    recipients: int = 1000             # [limits] recipients per message (smtpd_recipient_limit); >= 1
    errors: int = 20                   # [limits] errors before 421 (smtpd_hard_error_limit); >= 1
    hop_count: int = 100               # [limits] hop_count: Received: fields allowed (RFC 5321 §6.3); >= 1
    connections: int = 1000            # [limits] connections: simultaneous SMTP sessions in total; 0 = none
    connections_per_ip: int = 50       # [limits] connections_per_ip (smtpd_client_connection_count_limit); 0 = none


@dataclass(frozen=True, slots=True)
class Timeouts:
    """[timeouts]: seconds (TOML integer or float); `load` rejects nan/inf and negatives."""

    command: float = 300.0             # [timeouts] command, s: to send one whole command (RFC 5321 §4.5.3.2.7)
    data_block: float = 180.0          # [timeouts] data_block, s: silence allowed inside DATA/BDAT (§4.5.3.2.5)
    data_total: float = 3600.0         # [timeouts] data_total, s: a whole DATA phase at most
    shutdown_grace: float = 30.0       # [timeouts] shutdown_grace, s: SIGTERM waits this long for transactions (>= 0)
    greet_pause: float = 0.0           # [timeouts] greet_pause, s: wait before the 220; talkers are refused (0 = off)


@dataclass(frozen=True, slots=True)
class SmtpPolicy:
    """[smtp]: protocol policy switches, mapped onto proto.server.SessionConfig by load.session_config."""

    bare_newline: Literal["reject"] = "reject"                       # [smtp] bare_newline
    eight_bit_undeclared: Literal["accept", "reject"] = "accept"     # [smtp] eight_bit_undeclared
    pipelining: bool = True                                          # [smtp] pipelining
    chunking: bool = True                                            # [smtp] chunking
    smtputf8: bool = True                                            # [smtp] smtputf8
    dsn: bool = True                                                 # [smtp] dsn
    eight_bit_mime: bool = True                                      # [smtp] eight_bit_mime


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """[queue]: queue manager settings."""

    fsync: bool = True                 # [queue] fsync: never turn off outside tests/benchmarks
    run_interval: float = 60.0         # [queue] run_interval, s: how often the manager rescans


@dataclass(frozen=True, slots=True)
class LogConfig:
    """[log]: operator logging (see pigeon.obs.logsetup for the line formats)."""

    format: Literal["text", "json"] = "text"                         # [log] format
    level: Literal["debug", "info", "warning", "error"] = "info"      # [log] level
    file: Path | None = None                                         # [log] file; None = stderr (reopened if rotated away)


def _default_listen() -> tuple[ListenAddress, ...]:
    return (ListenAddress("127.0.0.1", 2525),)


def _default_domains() -> dict[str, DomainConfig]:
    return {"localhost": DomainConfig("localhost")}


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. Build it with `pigeon.config.load_config`, which checks every value."""

    hostname: str = "localhost"                                      # hostname: our name in 220/Received (default: the machine's FQDN)
    data_dir: Path = Path("./pigeon-data")                          # data_dir: queue and mailboxes live here
    listen: tuple[ListenAddress, ...] = field(default_factory=_default_listen)                  # listen
    relay_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()             # relay_networks: default none
    domains: dict[str, DomainConfig] = field(default_factory=_default_domains)                 # [domains.NAME]
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)                          # [aliases]: "local@domain" (lowercased) -> target addresses (domain lowercased)
    limits: Limits = field(default_factory=Limits)
    timeouts: Timeouts = field(default_factory=Timeouts)
    smtp: SmtpPolicy = field(default_factory=SmtpPolicy)
    queue: QueueConfig = field(default_factory=QueueConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @property
    def mailbox_root(self) -> Path:
        return self.data_dir / "mailboxes"

    @property
    def queue_dir(self) -> Path:
        return self.data_dir / "queue"

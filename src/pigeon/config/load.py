"""Loading configuration: embedded defaults -> TOML file -> command-line overrides.

Contract:
  * `load_config(path, overrides)` returns a fully checked `Config` or raises
    `ConfigError`. Bad input never escapes as anything else: OSError,
    UnicodeDecodeError and tomllib.TOMLDecodeError all become ConfigError.
  * Rule 1: nothing is silently ignored. An unknown key is an error that names
    the dotted key and suggests the closest known one ("a wrong guess is worse
    than no guess": we suggest, we never substitute).
  * Rule 2: types are exact. A bool is not an integer, a string is not a list,
    an integer is accepted where a number of seconds is expected.
  * Rule 3: layers are checked one at a time, so every error names where the
    bad value came from: the file (`/etc/pigeon.toml: limits.message_size:
    ...`), the command line (`command line: listen: ...`), or neither
    (`config error: ...`).
  * Rule 4: layering is per key. Inside the sections ([limits], [timeouts],
    [smtp], [queue], [log]) a later layer replaces single keys; the top-level
    keys (`listen`, `relay_networks`, `domains`, `aliases`, ...) are replaced
    whole. A list of names for `domains` (the --domain form) keeps the
    earlier layer's table for every name it repeats (its `mailboxes`).
  * The only I/O is reading the one file, plus `socket.getfqdn()` when no
    layer sets `hostname`. Nothing is created: data_dir may not exist yet.
    Exception: after merging, `_delivery.check_final` checks keys that span
    each other ([queue] backoffs, delivery.relay_*) and that the named
    delivery.relay_password_file / tls_ca_file exist (os.path.isfile); its
    error names the last layer that set the key.

Value rules live in `pigeon.config._checks`; their messages are pinned by
tests/unit/config and tests/e2e/bad_configs.
"""
from __future__ import annotations

import re
import socket
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from pigeon.config import _checks as C
from pigeon.config import _delivery as D
from pigeon.config import _secure as S
from pigeon.config import _admin as A
from pigeon.config.schema import AdminConfig
from pigeon.config.schema import AuthConfig, TlsConfig
from pigeon.config._checks import ConfigError
from pigeon.config.schema import DeliveryConfig
from pigeon.config.schema import (
    Config, DomainConfig, Limits, LogConfig, QueueConfig, SmtpPolicy, Timeouts,
)

if TYPE_CHECKING:
    from pigeon.proto.server import SessionConfig

__all__ = ["ConfigError", "load_config", "session_config", "default_hostname", "COMMAND_LINE"]

#: The source name used in errors about `overrides`.
COMMAND_LINE = "command line"

# Top-level keys holding a single value, and their checkers.
def _syslog_target(key: str, value: Any) -> str:
    """"" (off), a Unix socket path, or "host:port" (UDP)."""
    if value == "":
        return ""
    text = C.string(key, value)
    host, _, port = text.rpartition(":")
    if not text.startswith("/") and not (host and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(key, f'expected "/path/to/socket" or "host:port", got {text!r}')
    return text


def _workers(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise ConfigError(key, f"must be an integer from 1 to 64, got {value!r}")
    return value


def _system_name(key: str, value: Any, kind: str) -> str:
    """A user or group name that exists on this system ("" = not set)."""
    if value == "":
        return ""
    name = C.string(key, value)
    import grp
    import pwd
    try:
        (pwd.getpwnam if kind == "user" else grp.getgrnam)(name)
    except KeyError:
        raise ConfigError(key, f'no such {kind} "{name}"') from None
    return name


_TOP: dict[str, Callable[[str, Any], Any]] = {
    "hostname": C.hostname,
    "data_dir": C.path,
    "user": lambda key, value: _system_name(key, value, "user"),
    "group": lambda key, value: _system_name(key, value, "group"),
    "workers": lambda key, value: _workers(key, value),
    "listen": C.listen,
    "relay_networks": C.relay_networks,
    "domains": C.domains,
    "aliases": C.aliases,
    "transports": D.transports,
    "submission_listen": S.listen_roles,
    "submissions_listen": S.listen_roles,
}

# The [section] tables: schema class and one checker per field.
_SECTIONS: dict[str, tuple[type, dict[str, Callable[[str, Any], Any]]]] = {
    "limits": (Limits, {
        "message_size": C.integer(0),
        "recipients": C.integer(1),
        "errors": C.integer(1),
        "hop_count": C.integer(1),
        "connections": C.integer(0),
        "connections_per_ip": C.integer(0),
    }),
    "timeouts": (Timeouts, {
        "command": C.seconds(positive=True),
        "data_block": C.seconds(positive=True),
        "data_total": C.seconds(positive=True),
        "shutdown_grace": C.seconds(positive=False),
        "greet_pause": C.seconds(positive=False),
    }),
    "smtp": (SmtpPolicy, {
        "bare_newline": C.choice("reject"),
        "eight_bit_undeclared": C.choice("accept", "reject"),
        "pipelining": C.boolean,
        "chunking": C.boolean,
        "smtputf8": C.boolean,
        "dsn": C.boolean,
        "etrn": C.boolean,
        "eight_bit_mime": C.boolean,
    }),
    "queue": (QueueConfig, {
        "fsync": C.boolean,
        "run_interval": C.seconds(positive=True),
        "min_backoff": C.seconds(positive=True),
        "max_backoff": C.seconds(positive=True),       # >= min_backoff: D.check_final
        "max_lifetime": C.seconds(positive=True),
        "delay_warning": C.seconds(positive=False),
        "concurrency": C.integer(1),
        "min_free": C.integer(0),
    }),
    "tls": (TlsConfig, {
        "cert_file": C.path,
        "key_file": C.path,                          # both or neither: S.check_final
        "min_version": C.choice("TLSv1.2", "TLSv1.3"),
        "ciphers": S.ciphers,
        "starttls": C.boolean,
        "handshake_timeout": C.seconds(positive=True),
    }),
    "auth": (AuthConfig, {
        "mechanisms": S.mechanisms,
        "smtp_listener": C.boolean,
        "check_from_header": C.boolean,
        "slow_after": C.integer(1),
        "failure_delay": C.seconds(positive=False),
        "max_failures": C.integer(1),
        "failure_window": C.seconds(positive=True),
        "lockout": C.seconds(positive=True),
    }),
    "admin": (AdminConfig, {
        "control_socket": A.control_socket,
        "metrics_listen": A.metrics_listen,
    }),
    "log": (LogConfig, {
        "format": C.choice("text", "json"),
        "level": C.choice("debug", "info", "warning", "error"),
        "file": C.path,
        "syslog": lambda key, value: _syslog_target(key, value),
    }),
    "delivery": (DeliveryConfig, {
        "remote_port": D.port,
        "dns_servers": D.nameservers,
        "dns_timeout": C.seconds(positive=True),
        "relay_host": D.relay_host,
        "relay_user": D.optional_string,
        "relay_password_file": D.optional_path,      # must exist if relay_user: D.check_final
        "helo_name": D.optional_name,
        "connect_timeout": C.seconds(positive=True),
        "command_timeout": C.seconds(positive=True),
        "data_block_timeout": C.seconds(positive=True),
        "data_done_timeout": C.seconds(positive=True),
        "tls": C.choice("none", "may", "encrypt", "verify"),
        "tls_ca_file": D.optional_path,
        "destination_concurrency": C.integer(1),
        "destination_recipients": C.integer(1),
        "own_addresses": D.own_addresses,
    }),
}

# A checked layer: (key,) or (section, key) -> checked value.
_Layer = dict[tuple[str, ...], Any]


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the effective configuration: defaults, then `path`, then `overrides`.

    `path` is a TOML file (None: embedded defaults only). `overrides` has the
    same shape as the TOML document, e.g. ``{"listen": ["[::1]:25"],
    "domains": ["example.test"], "log": {"level": "debug"}}``; the CLI builds
    it from its flags. Raises ConfigError for any problem in either layer.
    """
    merged: _Layer = {}
    layers: list[tuple[str, _Layer]] = []
    if path is not None:
        layers.append((str(path), _check_layer(_read_toml(Path(path)), str(path))))
        _merge(merged, layers[-1][1])
    if overrides:
        layers.append((COMMAND_LINE, _check_layer(overrides, COMMAND_LINE)))
        _merge(merged, layers[-1][1])
    config = _build(merged)
    try:
        D.check_final(config)       # cross-key checks and file existence ([delivery], [queue])
        S.check_final(config)       # [tls] cert/key pairs, one role per listen address
    except ConfigError as exc:
        # Blame the last layer that set the key named, else the last layer.
        wanted = tuple(exc.key.split(".")) if exc.key else ()
        exc.source = next((s for s, layer in reversed(layers) if wanted in layer),
                          layers[-1][0] if layers else None)
        raise
    return config


def default_hostname(getfqdn: Callable[[], str] = socket.getfqdn) -> str:
    """The machine's fully qualified name if it has a dot and is valid, else "localhost"."""
    try:
        name = getfqdn().lower().rstrip(".")
    except OSError:
        return "localhost"
    if "." in name and C.domain_problem(name) is None:
        return name
    return "localhost"


def session_config(config: Config) -> "SessionConfig":
    """The per-session protocol settings (pigeon.proto.server) for `config`."""
    from pigeon.proto.server import SessionConfig

    limits, timeouts, smtp = config.limits, config.timeouts, config.smtp
    return SessionConfig(
        hostname=config.hostname,
        max_message_size=limits.message_size,
        max_recipients=limits.recipients,
        max_errors=limits.errors,
        hop_limit=limits.hop_count,
        command_timeout=timeouts.command,
        data_timeout=timeouts.data_block,
        data_deadline=timeouts.data_total,
        bare_newline=smtp.bare_newline,
        eight_bit_undeclared=smtp.eight_bit_undeclared,
        enable_pipelining=smtp.pipelining,
        enable_chunking=smtp.chunking,
        enable_smtputf8=smtp.smtputf8,
        enable_dsn=smtp.dsn, enable_etrn=smtp.etrn,
        enable_8bitmime=smtp.eight_bit_mime,
    )


# --- reading -------------------------------------------------------------------------

_TOML_WHERE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")


def _read_toml(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(None, f"cannot read file: {exc.strerror or exc}", source) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(None, f"not UTF-8 text (bad byte at offset {exc.start})", source) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        detail = str(exc)
        found = _TOML_WHERE.search(detail)
        where = "end of file"
        if found:
            detail = detail[:found.start()]
            if found.group(1):
                where = f"line {found.group(1)}, column {found.group(2)}"
        raise ConfigError(None, f"{where}: invalid TOML: {detail}", source) from None


# --- checking one layer --------------------------------------------------------------

def _check_layer(raw: Mapping[str, Any], source: str) -> _Layer:
    try:
        return _check_document(raw)
    except ConfigError as exc:
        exc.source = source
        raise


def _check_document(raw: Mapping[str, Any]) -> _Layer:
    out: _Layer = {}
    known = [*_TOP, *_SECTIONS]
    for key, value in raw.items():
        if key in _TOP:
            out[(key,)] = _TOP[key](C.join(key), value)
        elif key in _SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(C.join(key), f"must be a table, got {C.show(value)}")
            checkers = _SECTIONS[key][1]
            for name, item in value.items():
                if name not in checkers:
                    raise C.unknown_key(C.join(key, name), name, list(checkers))
                out[(key, name)] = checkers[name](C.join(key, name), item)
        else:
            raise C.unknown_key(C.join(key), key, known)
    return out


# --- building the Config --------------------------------------------------------------

def _build(layer: _Layer) -> Config:
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    for key, value in layer.items():
        if len(key) == 1:
            top[key[0]] = value
        else:
            sections[key[0]][key[1]] = value
    if "hostname" not in top:
        top["hostname"] = default_hostname()
    built = {name: cls(**sections[name]) for name, (cls, _) in _SECTIONS.items()}
    return Config(**top, **built)


def _merge(merged: _Layer, layer: _Layer) -> None:
    """Lay `layer` over `merged`, per key (contract rule 4)."""
    for key, value in layer.items():
        if isinstance(value, C.DomainNames):
            earlier = merged.get(key)
            if earlier is None:
                earlier = Config().domains
            value = {name: earlier.get(name, DomainConfig(name)) for name in value}
        merged[key] = value

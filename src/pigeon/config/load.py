"""Loading configuration: embedded defaults -> TOML file -> command-line overrides.

Contract:
  * `load_config(path, overrides)` returns a fully checked `Config` or raises
    `ConfigErrors` (a `ConfigError`) listing EVERY problem found in one pass,
    in the order of the file: each refused key is reported and the others
    are still checked (an entry of [domains], [aliases] or [transports] on
    its own). Bad input never escapes as anything else: OSError,
    UnicodeDecodeError and tomllib.TOMLDecodeError all become ConfigError.
    `collect_config` returns the problems instead of raising them.
  * Every problem in the file carries its line (`/etc/pigeon.toml:12:
    limits.mesage_size: unknown key ...`): tomllib gives no positions, so
    `pigeon.config.locate` finds the line of the key (or of its closest
    enclosing table) in the text; a TOML syntax error has its own line and
    column. An unreadable or unparsable file is one problem: nothing else
    can be checked.
  * Rule 1: nothing is silently ignored. An unknown key is an error that names
    the dotted key and suggests the closest known one ("a wrong guess is worse
    than no guess": we suggest, we never substitute).
  * Rule 2: types are exact. A bool is not an integer, a string is not a list,
    an integer is accepted where a number of seconds is expected.
  * Rule 3: layers are checked one at a time, so every error names where the
    bad value came from: the file (`/etc/pigeon.toml:3: limits.message_size:
    ...`), the command line (`command line: listen: ...`), or neither
    (`config error: ...`).
  * Rule 4: layering is per key. Inside the sections ([limits], [timeouts],
    [smtp], [queue], [log]) a later layer replaces single keys; the top-level
    keys (`listen`, `relay_networks`, `domains`, `aliases`, ...) are replaced
    whole. A list of names for `domains` (the --domain form) keeps the
    earlier layer's table for every name it repeats (its `mailboxes`).
  * The only I/O is reading the one file, plus `socket.getfqdn()` when no
    layer sets `hostname`. Nothing is created: data_dir may not exist yet.
    Exception: after merging, `_delivery.final_problems` and
    `_secure.final_problems` check keys that span each other ([queue]
    backoffs, delivery.relay_*, [tls] pairs, one role per address) and that
    the named delivery.relay_password_file / tls_ca_file exist
    (os.path.isfile); each problem names the last layer that set the key.
    A check that reads a refused key is skipped (the default standing in
    for it would only produce a second, misleading error). And
    `aliases_file` is read and parsed (`pigeon.config._aliases`); its errors
    name that file and line.

Value rules live in `pigeon.config._checks`; their messages are pinned by
tests/unit/config and tests/e2e/bad_configs.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pigeon.config import _abuse as AB
from pigeon.config import _admin as A
from pigeon.config import _capture as CAP
from pigeon.config import _checks as C
from pigeon.config import _delivery as D
from pigeon.config import _dkim as DK
from pigeon.config import _forwarding as F
from pigeon.config import _imap as IM
from pigeon.config import _mailauth as MA
from pigeon.config import _plugins as P
from pigeon.config import _pop3 as POP3
from pigeon.config import _secure as S
from pigeon.config import _tlspolicy as TP
from pigeon.config import _top as T
from pigeon.config._aliases import check_catch_alls, read_aliases_file
from pigeon.config._checks import ConfigError, ConfigErrors
from pigeon.config._milter import milters
from pigeon.config._reports import reports
from pigeon.config._webhooks import webhooks
from pigeon.config.locate import KeyLocator
from pigeon.config.schema import (
    AdminConfig,
    AuthConfig,
    Config,
    ConsoleConfig,
    DeliveryConfig,
    DomainConfig,
    Limits,
    LogConfig,
    QueueConfig,
    SmtpPolicy,
    Timeouts,
    TlsConfig,
)

__all__ = [
    "ConfigError",
    "ConfigErrors",
    "load_config",
    "collect_config",
    "default_hostname",
    "COMMAND_LINE",
]

#: The source name used in errors about `overrides`.
COMMAND_LINE = "command line"


_TOP: dict[str, Callable[[str, Any], Any]] = {
    "hostname": C.hostname,
    "data_dir": C.path,
    "user": T.user_name,
    "group": T.group_name,
    "workers": T.workers,
    "listen": C.listen,
    "relay_networks": C.relay_networks,
    "domains": C.domains,
    "aliases": C.aliases,
    "recipient_delimiter": C.recipient_delimiter,
    "aliases_file": D.optional_path,  # read after merging: _read_aliases_file
    "transports": D.transports,
    "submission_listen": S.listen_roles,
    "submissions_listen": S.listen_roles,
    "plugins": P.plugins,  # relative paths: from the file's directory (collect_config)
    "milters": milters,
    "reports": reports,  # a table with a key named "from": config/_reports.py
    "webhooks": webhooks,  # [[webhooks]]: docs/webhooks.md
}

DERIVED_FIELDS = ("local_aliases", "shared_directory")  # no keys: aliases_file, config/shared.py

# The [section] tables: schema class and one checker per field.
_SECTIONS: dict[str, tuple[type, dict[str, Callable[[str, Any], Any]]]] = {
    "limits": (
        Limits,
        {
            "message_size": C.integer(0),
            "recipients": C.integer(1),
            "errors": C.integer(1),
            "junk_commands": C.integer(1),
            "header_size": C.integer(1024),
            "hop_count": C.integer(1),
            "connections": C.integer(0),
            "connections_per_ip": C.integer(0),
            "new_mailboxes_per_hour": C.integer(0),
        },
    ),
    "timeouts": (
        Timeouts,
        {
            "command": C.seconds(positive=True),
            "data_block": C.seconds(positive=True),
            "data_total": C.seconds(positive=True),
            "shutdown_grace": C.seconds(positive=False),
            "greet_pause": C.seconds(positive=False),
        },
    ),
    "smtp": (
        SmtpPolicy,
        {
            "bare_newline": C.choice("reject"),
            "eight_bit_undeclared": C.choice("accept", "reject"),
            "pipelining": C.boolean,
            "chunking": C.boolean,
            "smtputf8": C.boolean,
            "dsn": C.boolean,
            "etrn": C.boolean,
            "eight_bit_mime": C.boolean,
        },
    ),
    "queue": (
        QueueConfig,
        {
            "fsync": C.boolean,
            "run_interval": C.seconds(positive=True),
            "min_backoff": C.seconds(positive=True),
            "max_backoff": C.seconds(positive=True),  # >= min_backoff: D.final_problems
            "max_lifetime": C.seconds(positive=True),
            "delay_warning": C.seconds(positive=False),
            "concurrency": C.integer(1),
            "min_free": C.integer(0),
            "store": D.optional_string,  # "" or postgresql://: D.final_problems
            "node": D.optional_string,
            "lease": D.lease,
            "local_at_accept": C.boolean,
        },
    ),
    "tls": (
        TlsConfig,
        {
            "cert_file": C.path,
            "key_file": C.path,  # both or neither: S.final_problems
            "min_version": C.choice("TLSv1.2", "TLSv1.3"),
            "ciphers": S.ciphers,
            "starttls": C.boolean,
            "handshake_timeout": C.seconds(positive=True),
        },
    ),
    "auth": (
        AuthConfig,
        {
            "mechanisms": S.mechanisms,
            "smtp_listener": C.boolean,
            "check_from_header": C.boolean,
            "slow_after": C.integer(1),
            "failure_delay": C.seconds(positive=False),
            "max_failures": C.integer(1),
            "failure_window": C.seconds(positive=True),
            "lockout": C.seconds(positive=True),
            "min_password_length": C.integer(1),
        },
    ),
    "admin": (
        AdminConfig,
        {
            "control_socket": A.control_socket,
            "pid_file": D.optional_path,
            "submit_socket": A.submit_socket,
            "metrics_listen": A.metrics_listen,
        },
    ),
    "console": (
        ConsoleConfig,
        {
            "listen": A.metrics_listen,  # the same rule: "host:port", or "" for none
            "max_body": C.integer(0),
            "session_idle": C.seconds(positive=True),
            "session_max": C.seconds(positive=True),
        },
    ),
    "log": (
        LogConfig,
        {
            "format": C.choice("text", "json"),
            "level": C.choice("debug", "info", "warning", "error"),
            "file": C.path,
            "syslog": T.syslog_target,
        },
    ),
    "delivery": (
        DeliveryConfig,
        {
            "remote_port": D.port,
            "dns_servers": D.nameservers,
            "dns_timeout": C.seconds(positive=True),
            "relay_host": D.relay_host,
            "relay_user": D.optional_string,
            "relay_password_file": D.optional_path,  # must exist if relay_user: D.final_problems
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
        },
    ),
    **AB.SECTIONS,  # [rate_limits], [dnsbl], [greylist], [postscreen]
    **DK.SECTIONS,  # [dkim]
    **TP.SECTIONS,  # [tls_policy]
    **MA.SECTIONS,  # [mail_auth]
    **F.SECTIONS,  # [srs], [arc]
    **CAP.SECTIONS,  # [capture]: docs/capture.md
    **IM.SECTIONS,  # [imap]
    **POP3.SECTIONS,  # [pop3]
}

# A checked layer: (key,) or (section, key) -> checked value.
_Layer = dict[tuple[str, ...], Any]


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the effective configuration: defaults, then `path`, then `overrides`.

    `path` is a TOML file (None: embedded defaults only). `overrides` has the
    same shape as the TOML document, e.g. ``{"listen": ["[::1]:25"],
    "domains": ["example.test"], "log": {"level": "debug"}}``; the CLI builds
    it from its flags. Raises ConfigErrors (a ConfigError) listing every
    problem found in either layer.
    """
    config, problems = collect_config(path, overrides)
    if problems:
        raise ConfigErrors(problems)
    assert config is not None
    return config


def collect_config(
    path: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> tuple[Config | None, list[ConfigError]]:
    """`load_config` without the raise: (config, every problem found).

    With problems, `config` is built from the keys that were valid (the
    others keep their defaults), so callers can go on checking what depends
    on it; it is None when the file cannot be read or parsed at all.
    """
    merged: _Layer = {}
    layers: list[tuple[str, _Layer]] = []
    problems: list[ConfigError] = []
    locator: KeyLocator | None = None
    if path is not None:
        try:
            raw, locator = _read_toml(Path(path))
        except ConfigError as exc:
            return None, [exc]
        layers.append((str(path), _check_layer(raw, str(path), problems)))
        _merge(merged, layers[-1][1])
    if overrides:
        layers.append((COMMAND_LINE, _check_layer(overrides, COMMAND_LINE, problems)))
        _merge(merged, layers[-1][1])
    config = _build(merged)
    if path is not None and config.plugins:
        config = dataclasses.replace(
            config, plugins=P.resolve_paths(config.plugins, Path(path).parent)
        )
    refused = frozenset(p.key for p in problems if p.key)
    late: list[ConfigError] = []
    if config.aliases_file is not None and "aliases_file" not in refused:
        try:  # aliases(5) entries, re-read on every load (reload)
            config = dataclasses.replace(
                config, local_aliases=read_aliases_file(config.aliases_file)
            )
        except ConfigError as exc:
            late.append(exc)
    try:
        check_catch_alls(config)  # "@domain" keys name local domains
    except ConfigError as exc:
        late.append(exc)
    for problem in [
        *late,
        *D.final_problems(config, refused),
        *S.final_problems(config, refused),
        *TP.final_problems(config, refused),
        *MA.final_problems(config.mail_auth, refused),
        *F.final_problems(config, refused),
        *CAP.final_problems(config, refused),
    ]:
        # Blame the last layer that set the key named, else the last layer.
        wanted = tuple(problem.key.split(".")) if problem.key else ()
        problem.source = next(
            (s for s, layer in reversed(layers) if wanted in layer),
            layers[-1][0] if layers else None,
        )
        problems.append(problem)
    if locator is not None:
        for problem in problems:
            if problem.source == str(path) and problem.key and problem.line is None:
                problem.line = locator.line_of(problem.key)
    problems.sort(key=lambda p: (p.source != str(path), p.line or 0))
    return config, problems


def default_hostname(getfqdn: Callable[[], str] = socket.getfqdn) -> str:
    """The machine's fully qualified name if it has a dot and is valid, else "localhost"."""
    try:
        name = getfqdn().lower().rstrip(".")
    except OSError:
        return "localhost"
    if "." in name and C.domain_problem(name) is None:
        return name
    return "localhost"


# --- reading -------------------------------------------------------------------------

_TOML_WHERE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")


def _read_toml(path: Path) -> tuple[dict[str, Any], KeyLocator]:
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(None, f"cannot read file: {exc.strerror or exc}", source) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            None, f"not UTF-8 text (bad byte at offset {exc.start})", source
        ) from None
    try:
        return tomllib.loads(text), KeyLocator(text)
    except tomllib.TOMLDecodeError as exc:
        detail = str(exc)
        found = _TOML_WHERE.search(detail)
        line = column = None
        if found:
            detail = detail[: found.start()]
            if found.group(1):
                line, column = int(found.group(1)), int(found.group(2))
            else:
                line = text.count("\n") + 1  # "end of document": the last line
        raise ConfigError(None, f"invalid TOML: {detail}", source, line, column) from None


# --- checking one layer --------------------------------------------------------------

#: Top-level keys whose value is a table of independent entries: each entry
#: is checked on its own, so one bad entry does not hide the next.
_ENTRY_TABLES = ("domains", "aliases", "transports")


def _check_layer(raw: Mapping[str, Any], source: str, problems: list[ConfigError]) -> _Layer:
    """The valid keys of one layer; every refused key is added to `problems`."""
    out: _Layer = {}

    def attempt(key: tuple[str, ...], check: Callable[[str, Any], Any], value: Any) -> None:
        try:
            if key[0] in _ENTRY_TABLES and len(key) == 1 and isinstance(value, Mapping):
                out[key] = _check_entries(C.join(*key), check, value, problems, source)
            else:
                out[key] = check(C.join(*key), value)
        except ConfigError as exc:
            for problem in exc.problems:  # a [[plugins]] or [[milters]] entry may have several
                problem.source = source
                problems.append(problem)

    known = [*_TOP, *_SECTIONS]
    for key, value in raw.items():
        if key in _TOP:
            attempt((key,), _TOP[key], value)
        elif key in _SECTIONS:
            if not isinstance(value, Mapping):
                problems.append(
                    ConfigError(C.join(key), f"must be a table, got {C.show(value)}", source)
                )
                continue
            checkers = _SECTIONS[key][1]
            for name, item in value.items():
                if name not in checkers:
                    problem = C.unknown_key(C.join(key, name), name, list(checkers))
                    problem.source = source
                    problems.append(problem)
                else:
                    attempt((key, name), checkers[name], item)
        else:
            problem = C.unknown_key(C.join(key), key, known)
            problem.source = source
            problems.append(problem)
    return out


def _check_entries(
    dotted: str,
    check: Callable[[str, Any], Any],
    table: Mapping[str, Any],
    problems: list[ConfigError],
    source: str,
) -> Any:
    """Check a table of entries one entry at a time, then the good ones
    together (for what spans entries, such as a name listed twice)."""
    good: dict[str, Any] = {}
    for name, item in table.items():
        try:
            check(dotted, {name: item})
        except ConfigError as exc:
            exc.source = source
            problems.append(exc)
        else:
            good[name] = item
    return check(dotted, good)


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

"""Value checks for configuration keys: raw TOML value in, schema value out.

Contract:
  * Every checker has the shape `check(key, value) -> checked value` where
    `key` is the dotted key for messages (built with `join`). It either returns
    the value converted to the schema's type (str -> Path, list -> tuple,
    "host:port" -> ListenAddress, ...) or raises `ConfigError(key, message)`.
  * Messages read "must be <what is wanted>, got <what was given>", with the
    given value shown in TOML spelling (`show`): "ten" in quotes, true/false
    lowercase. Tests pin the exact wording; change both together.
  * Checkers never read files, the network or the clock. They do not know
    the source of the value: `pigeon.config.load` adds it to the error.
  * Domain names are ASCII, lowercased, LDH labels (RFC 1035 §2.3.1 as
    relaxed by RFC 1123 §2.1); internationalised names must be written as
    A-labels ("xn--..."), and the error says which.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pigeon.config.schema import DomainConfig, ListenAddress
from pigeon.vocab.address import PathError, parse_path

Checker = Callable[[str, Any], Any]


class ConfigError(Exception):
    """A configuration problem, naming the key and (when known) the source and line.

    `key` is the dotted TOML key (None for problems with the whole file),
    `message` says what is wrong, `source` is the file name or "command line",
    `line` (and `column`, for TOML syntax errors) where in the file it is.
    str(): "<source>[:<line>[:<column>]]: <key>: <message>" (the compiler
    style editors jump to), with "config error" standing in for an unknown
    source. `problems` lists every problem this error stands for: itself
    here, several in `ConfigErrors`.
    """

    def __init__(
        self,
        key: str | None,
        message: str,
        source: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(key, message, source)
        self.key = key
        self.message = message
        self.source = source
        self.line = line
        self.column = column

    @property
    def problems(self) -> list[ConfigError]:
        return [self]

    def __str__(self) -> str:
        where = self.source or "config error"
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        parts = [where]
        if self.key:
            parts.append(self.key)
        parts.append(self.message)
        return ": ".join(parts)


class ConfigErrors(ConfigError):
    """Every problem one pass over the configuration found (at least one).

    It reads as its first problem (`key`, `message`, `source`, `line`) for
    callers that show one; str() has one line per problem, and `problems`
    lists them all, in the order of the file.
    """

    def __init__(self, problems: list[ConfigError]) -> None:
        first = problems[0]
        super().__init__(first.key, first.message, first.source, first.line, first.column)
        self._problems = list(problems)

    @property
    def problems(self) -> list[ConfigError]:
        return list(self._problems)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self._problems)


class DomainNames(tuple[str, ...]):
    """`domains` given as a list of names: merged against the earlier layer's tables."""


# --- showing keys and values ------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def join(*parts: str) -> str:
    """A dotted TOML key; parts that are not bare keys are quoted (domains."a.example")."""
    return ".".join(
        p if _BARE_KEY.match(p) else json.dumps(p, ensure_ascii=False) for p in map(str, parts)
    )


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


def named_tables(
    key: str,
    value: Any,
    table: str,
    entry: Callable[[str, Any], N],
    twice: Callable[[str], str],
) -> tuple[N, ...]:
    """An array of tables (`[[table]]`), each checked by `entry(key[i], raw)`,
    their names unique (`twice(name)` says a repeat); every entry's problems
    are reported together (ConfigErrors)."""
    if not isinstance(value, list):
        raise ConfigError(key, f"must be an array of tables ([[{table}]]), got {show(value)}")
    out: list[N] = []
    problems: list[ConfigError] = []
    for i, raw in enumerate(value):
        try:
            checked = entry(f"{key}[{i}]", raw)
        except ConfigError as exc:
            problems += exc.problems
            continue
        if any(o.name == checked.name for o in out):
            problems.append(ConfigError(f"{key}[{i}].name", twice(checked.name)))
        out.append(checked)
    if problems:
        raise ConfigErrors(problems)
    return tuple(out)


def show(value: Any) -> str:
    """`value` the way it would be written in TOML, shortened for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value if len(value) <= 80 else value[:77] + "...", ensure_ascii=False)
        return text
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(show(v) for v in value[:4])
        return f"[{inner}{', ...' if len(value) > 4 else ''}]"
    return str(value)  # TOML dates and times


def unknown_key(dotted: str, name: str, known: list[str]) -> ConfigError:
    """The error for an unknown key, suggesting the closest known name."""
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    if close:
        return ConfigError(dotted, f'unknown key (did you mean "{close[0]}"?)')
    return ConfigError(dotted, "unknown key (known keys: " + ", ".join(sorted(known)) + ")")


# --- scalars ------------------------------------------------------------------------------


def integer(minimum: int) -> Checker:
    what = (
        "a non-negative integer"
        if minimum == 0
        else "a positive integer"
        if minimum == 1
        else f"an integer >= {minimum}"
    )

    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(key, f"must be {what}, got {show(value)}")
        return value

    return check


def seconds(*, positive: bool) -> Checker:
    what = "a positive number of seconds" if positive else "a non-negative number of seconds"

    def check(key: str, value: Any) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
            or (positive and value == 0)
        ):
            raise ConfigError(key, f"must be {what}, got {show(value)}")
        return float(value)

    return check


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {show(value)}")
    return value


def choice(*allowed: str) -> Checker:
    listed = ", ".join(f'"{a}"' for a in allowed)

    def check(key: str, value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise ConfigError(key, f"must be one of {listed}, got {show(value)}")
        return value

    return check


def string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"must be a non-empty string, got {show(value)}")
    return value


def path(key: str, value: Any) -> Path:
    """A file or directory name (a Path is fine in overrides); relative to the working directory."""
    if isinstance(value, os.PathLike) and os.fspath(value):
        return Path(value)
    return Path(string(key, value))


def string_list(key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, f"must be a list of strings, got {show(value)}")
    return value


# --- names and addresses ---------------------------------------------------------------------

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


def domain_problem(name: str) -> str | None:
    """Why `name` (already lowercased) is not a usable domain name, or None."""
    if not name:
        return "it is empty"
    if not name.isascii():
        try:
            alabel = name.encode("idna").decode("ascii")
        except UnicodeError:
            return "non-ASCII and not a valid internationalised name"
        return f'non-ASCII: write it as "{alabel}"'
    if len(name) > 253:
        return "longer than 253 characters"
    labels = name.split(".")
    for label in labels:
        if not label:
            return "empty label (two dots, or a dot at the start or end)"
        if len(label) > 63:
            return f'label "{label[:16]}..." is longer than 63 characters'
        if not _LABEL.match(label):
            if label.startswith("-") or label.endswith("-"):
                return f'label "{label}" starts or ends with "-"'
            return f'label "{label}" may only contain letters, digits and "-"'
    if labels[-1].isdigit():
        return "looks like an IP address, not a name"
    return None


def domain_name(key: str, value: Any) -> str:
    """A domain or host name, lowercased."""
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a domain name (a string), got {show(value)}")
    problem = domain_problem(value.lower())
    if problem:
        raise ConfigError(key, f"not a valid domain name: {show(value)} ({problem})")
    return value.lower()


hostname = domain_name

_MAILBOX_BAD = re.compile(r'[\s\x00-\x1f\x7f@/\\"]')


def mailbox_name(key: str, value: str) -> str:
    """A local part used as a Maildir name: lowercased, and safe as a path component."""
    name = value.lower()
    if not name or _MAILBOX_BAD.search(name) or name.startswith(".") or len(name.encode()) > 64:
        raise ConfigError(
            key,
            f"{show(value)} is not a usable mailbox name (1-64 octets; no spaces, "
            f'"@", "/", "\\", quotes, control characters or leading ".")',
        )
    return name


def address(key: str, value: str, role: str, *, lower_local: bool) -> str:
    """A full address "local@domain"; the domain is lowercased, the local part if asked.

    The address must follow the SMTP grammar (RFC 5321 §4.1.2: a dot-string
    or quoted local part), so it can be written in MAIL FROM/RCPT TO: an
    address no SMTP command can carry would otherwise fail every delivery.
    """
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or re.search(r"[\s\x00-\x1f\x7f]", value):
        raise ConfigError(key, f'{role} must be a full address "local@domain", got {show(value)}')
    problem = domain_problem(domain.lower())
    if problem:
        raise ConfigError(key, f"{role} {show(value)} has an invalid domain ({problem})")
    try:
        parse_path(f"<{value}>", allow_null=False, smtputf8=True)
    except PathError:
        raise ConfigError(
            key,
            f"{role} {show(value)} is not an address SMTP can carry (RFC 5321 "
            f"§4.1.2: quote a local part with special characters, as in "
            f'"\\"a>b\\"@example.org")',
        ) from None
    return f"{local.lower() if lower_local else local}@{domain.lower()}"


# --- listeners and networks ------------------------------------------------------------------


def parse_listen(text: str) -> ListenAddress:
    """ "host:port" or "[ipv6]:port" -> ListenAddress; ValueError says what is wrong."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise ValueError('expected "[ipv6]:port"')
        host, port = text[1:close], text[close + 2 :]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f'"{host}" is not an IPv6 address') from None
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            raise ValueError('expected "host:port" or "[ipv6]:port"')
        if ":" in host:
            raise ValueError(f'IPv6 addresses go in brackets, as in "[{host}]:{port}"')
        if not host:
            raise ValueError('the host is empty; use "0.0.0.0" or "[::]" for all addresses')
        if re.fullmatch(r"[0-9.]+", host):
            try:
                host = str(ipaddress.IPv4Address(host))
            except ValueError:
                raise ValueError(f'"{host}" is not an IPv4 address') from None
        else:
            problem = domain_problem(host.lower())
            if problem:
                raise ValueError(f'"{host}" is not a valid host name ({problem})')
            host = host.lower()
    if not re.fullmatch(r"[0-9]{1,10}", port):
        raise ValueError(f"the port must be a number, got {show(port)}")
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError(f"the port must be between 1 and 65535, got {number}")
    return ListenAddress(host, number)


def listen(key: str, value: Any) -> tuple[ListenAddress, ...]:
    items = string_list(key, value)
    if not items:
        raise ConfigError(key, "must list at least one address to listen on")
    out: list[ListenAddress] = []
    for item in items:
        try:
            addr = parse_listen(item)
        except ValueError as exc:
            raise ConfigError(key, f"{show(item)}: {exc}") from None
        if addr in out:
            raise ConfigError(key, f"{show(item)} is listed twice")
        out.append(addr)
    return tuple(out)


def relay_networks(
    key: str, value: Any
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for item in string_list(key, value):
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                key,
                f"{show(item)} is not an IP network (write CIDR, as in "
                f'"192.0.2.0/24" or "2001:db8::/32")',
            ) from None
    return tuple(out)


# --- domains and aliases ------------------------------------------------------------------------


def domains(key: str, value: Any) -> dict[str, DomainConfig] | DomainNames:
    """[domains."NAME"] tables, or a list of names (each with any local part accepted)."""
    if isinstance(value, list):
        names: list[str] = []
        for item in string_list(key, value):
            name = domain_name(key, item)
            if name in names:
                raise ConfigError(key, f"{show(item)} is listed twice")
            names.append(name)
        return DomainNames(names)
    if not isinstance(value, Mapping):
        raise ConfigError(key, f'must be a table of [domains."NAME"] tables, got {show(value)}')
    out: dict[str, DomainConfig] = {}
    for raw_name, table in value.items():
        here = join(key, raw_name)
        name = domain_name(here, raw_name)
        if name in out:
            raise ConfigError(here, f'domain "{name}" is listed twice')
        if not isinstance(table, Mapping):
            raise ConfigError(here, f"must be a table, got {show(table)}")
        mailboxes, capture = None, False
        for field, item in table.items():
            there = join(key, raw_name, field)
            if field == "capture":  # docs/capture.md
                capture = boolean(there, item)
            elif field != "mailboxes":
                raise unknown_key(there, field, ["mailboxes", "capture"])
            else:
                mailboxes = frozenset(mailbox_name(there, m) for m in string_list(there, item))
        out[name] = DomainConfig(name, mailboxes, capture)
    return out


def aliases(key: str, value: Any) -> dict[str, tuple[str, ...]]:
    """ "local@domain" = "target" or ["target", ...]; every target a full address.

    A key "@domain" is the domain's catch-all (Postfix virtual(5) "@domain"):
    stored as "@domain", lowercased; the router uses it only when no mailbox
    or other alias matches.
    """
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table, got {show(value)}")
    out: dict[str, tuple[str, ...]] = {}
    for raw_alias, targets in value.items():
        here = join(key, raw_alias)
        if raw_alias.startswith("@"):
            problem = domain_problem(raw_alias[1:].lower())
            if problem:
                raise ConfigError(
                    here,
                    f"the catch-all key {show(raw_alias)} needs a valid domain "
                    f'after "@" ({problem})',
                )
            alias = raw_alias.lower()
        else:
            alias = address(here, raw_alias, "the key", lower_local=True)
        if alias in out:
            raise ConfigError(here, f'alias "{alias}" is listed twice')
        if isinstance(targets, str):
            targets = [targets]
        elif not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise ConfigError(
                here, f"must be an address or a list of addresses, got {show(targets)}"
            )
        if not targets:
            raise ConfigError(here, "must name at least one target address")
        out[alias] = tuple(address(here, t, "target", lower_local=False) for t in targets)
    return out


#: Characters a recipient_delimiter may use: atext punctuation (RFC 5322
#: §3.2.3) and ".", so a delimiter never needs quoting in an address.
_DELIMITER_CHARS = frozenset("!#$%&'*+/=?^_`{|}~-.")


def recipient_delimiter(key: str, value: Any) -> str:
    """ "" (off) or one or more distinct delimiter characters, e.g. "+" or "+-"."""
    if not isinstance(value, str):
        raise ConfigError(
            key, f'must be a string of delimiter characters such as "+", got {show(value)}'
        )
    bad = sorted({c for c in value if c not in _DELIMITER_CHARS})
    if bad:
        raise ConfigError(
            key,
            f"{show(value)}: {show(bad[0])} cannot be a delimiter (use characters "
            f"from {show(''.join(sorted(_DELIMITER_CHARS)))})",
        )
    if len(set(value)) != len(value):
        raise ConfigError(key, f"{show(value)} lists a character twice")
    return value

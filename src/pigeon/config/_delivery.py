"""Value checks for the outbound-delivery keys: [delivery], [transports] and
the [queue] retry keys that depend on each other.

Contract (same as `pigeon.config._checks`, whose helpers this module uses):
  * Every checker is `check(key, value) -> schema value` or raises
    `ConfigError(key, message)`; messages read "must be ..., got <value>"
    or "<value>: <reason>", with the value in TOML spelling.
  * Next-hop specs use Postfix syntax (transport(5), relayhost):
        local | discard
        smtp:host | smtp:host:port | smtp:[host] | smtp:[host]:port
        lmtp:host:port | lmtp:[host]:port | lmtp:unix:/path/to/socket
    Brackets mean "no MX lookup" (RFC 5321 §5.1 applies to unbracketed
    names only). An IP address as host is always mx=False; IPv6 is written
    in brackets ("[2001:db8::1]" or "[ipv6:2001:db8::1]"). LMTP never looks
    up MX records, so its specs are always mx=False (RFC 2033 §4 names no
    MX step; Postfix's lmtp(8) does the same).
  * Rule: transport keys are domain names, lowercased, or the same with one
    leading "." meaning "every subdomain" (Postfix ".example.org").
  * `final_problems(config)` yields every problem of the checks that span
    keys or touch the file system: max_backoff >= min_backoff,
    relay_password_file exists when relay_user is set, relay_user needs
    relay_host, tls_ca_file exists. It is the only function
    here that does I/O (os.path.isfile); `pigeon.config.load` calls it once
    on the merged configuration.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pigeon.config._checks import ConfigError, domain_problem, join, show, string_list
from pigeon.config.schema import Config, Nameserver, TransportSpec

__all__ = [
    "maildir_folder_problem",
    "parse_nexthop",
    "nameservers",
    "relay_host",
    "transports",
    "own_addresses",
    "optional_name",
    "optional_path",
    "optional_string",
    "lease",
    "port",
    "final_problems",
]


# --- next-hop specs ------------------------------------------------------------------------


def _ip(text: str) -> str | None:
    """The normalised IP address in `text`, or None when it is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _port(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text):
        raise ValueError(f"the port must be a number, got {show(text)}")
    number = int(text)
    if not 1 <= number <= 65535:
        raise ValueError(f"the port must be between 1 and 65535, got {number}")
    return number


def _host(text: str) -> str:
    """A host name (lowercased) or an IPv4 address; ValueError says why not."""
    ip = _ip(text)
    if ip is not None:
        return ip
    if re.fullmatch(r"[0-9.]+", text):
        raise ValueError(f'"{text}" is not an IPv4 address')
    problem = domain_problem(text.lower())
    if problem:
        raise ValueError(f'"{text}" is not a valid host name ({problem})')
    return text.lower()


def parse_host_port(text: str, *, default_mx: bool = True) -> tuple[str, int | None, bool]:
    """ "host", "host:port", "[host]", "[host]:port" -> (host, port, mx).

    Raises ValueError with a reason. IPv6 only inside brackets.
    """
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError('missing "]"')
        inner, rest = text[1:close], text[close + 1 :]
        if inner.lower().startswith("ipv6:"):
            inner = inner[5:]
            if ":" not in inner:
                raise ValueError(f'"{inner}" is not an IPv6 address')
        if ":" in inner:
            host = _ip(inner)
            if host is None:
                raise ValueError(f'"{inner}" is not an IPv6 address')
        else:
            host = _host(inner)
        if rest and not rest.startswith(":"):
            raise ValueError(f'unexpected {show(rest)} after "]"')
        port = _port(rest[1:]) if rest else None
        return host, port, False
    if text.count(":") > 1:
        raise ValueError(f'IPv6 addresses go in brackets, as in "[{text}]"')
    name, colon, port_text = text.partition(":")
    if not name:
        raise ValueError("the host is empty")
    host = _host(name)
    port = _port(port_text) if colon else None
    mx = default_mx and _ip(host) is None
    return host, port, mx


def parse_nexthop(text: str, *, folder: bool = False) -> TransportSpec:
    """A [transports] value -> TransportSpec; ValueError says what is wrong.

    With `folder` (a receive check's verdict, not [transports]) "local:.Name"
    is also taken: local delivery into the Maildir++ folder ".Name" of the
    recipient's Maildir (`TransportSpec.host`); a recipient that is not
    local is routed as usual.
    """
    if text in ("local", "discard"):
        return TransportSpec(text)  # type: ignore[arg-type]
    if folder and text.startswith("local:"):
        name = text[len("local:") :]
        if not maildir_folder_problem(name) and name:
            return TransportSpec("local", name, None, False)
        raise ValueError(f'"local:" needs a Maildir++ folder such as ".Junk", got {name!r}')
    transport, colon, rest = text.partition(":")
    if not colon or transport not in ("smtp", "lmtp"):
        raise ValueError(
            'expected "local", "discard", "smtp:HOST[:PORT]", "smtp:[HOST][:PORT]", '
            '"lmtp:HOST:PORT" or "lmtp:unix:/PATH"'
        )
    if not rest:
        raise ValueError(f'"{transport}:" needs a host')
    if transport == "lmtp" and rest.startswith("unix:"):
        socket_path = rest[5:]
        if not socket_path.startswith("/"):
            raise ValueError("the Unix socket path must be absolute")
        return TransportSpec("lmtp", socket_path, None, False)
    host, port, mx = parse_host_port(rest, default_mx=(transport == "smtp"))
    if transport == "lmtp" and port is None:
        raise ValueError('LMTP over TCP needs a port, as in "lmtp:[127.0.0.1]:24"')
    return TransportSpec(transport, host, port, mx)  # type: ignore[arg-type]


def maildir_folder_problem(name: str) -> str | None:
    """Why `name` is not a Maildir++ folder (".Junk", ".Lists.pigeon"), or None;
    "" (the inbox) is fine."""
    if not name:
        return None
    if (
        not name.startswith(".")
        or name in (".", "..")
        or ".." in name
        or "/" in name
        or not name.isprintable()
    ):
        return "a Maildir++ folder is one name starting with a dot, without / or .."
    return None


def relay_host(key: str, value: Any) -> TransportSpec | None:
    """delivery.relay_host: "" -> None, else a "smtp" TransportSpec."""
    if not isinstance(value, str):
        raise ConfigError(
            key, f'must be a string such as "[relay.example.org]:587", got {show(value)}'
        )
    if value == "":
        return None
    try:
        host, port, mx = parse_host_port(value)
    except ValueError as exc:
        raise ConfigError(key, f"{show(value)}: {exc}") from None
    return TransportSpec("smtp", host, port, mx)


def transports(key: str, value: Any) -> dict[str, TransportSpec]:
    """[transports]: "domain" or ".domain" = "spec"."""
    if not isinstance(value, Mapping):
        raise ConfigError(
            key, f'must be a table of "domain" = "transport" entries, got {show(value)}'
        )
    out: dict[str, TransportSpec] = {}
    for raw, spec in value.items():
        here = join(key, raw)
        name = raw.lower()
        problem = domain_problem(name[1:] if name.startswith(".") else name)
        if problem:
            raise ConfigError(here, f"the key is not a domain name or .domain ({problem})")
        if name in out:
            raise ConfigError(here, f'"{name}" is listed twice')
        if not isinstance(spec, str):
            raise ConfigError(here, f"must be a transport spec string, got {show(spec)}")
        try:
            out[name] = parse_nexthop(spec)
        except ValueError as exc:
            raise ConfigError(here, f"{show(spec)}: {exc}") from None
    return out


# --- other [delivery] values ------------------------------------------------------------------


def port(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(key, f"must be a port number between 1 and 65535, got {show(value)}")
    return value


def nameservers(key: str, value: Any) -> tuple[Nameserver, ...]:
    """["192.0.2.53", "192.0.2.53:5353", "2001:db8::53", "[2001:db8::53]:5353"]."""
    out: list[Nameserver] = []
    for item in string_list(key, value):
        try:
            if item.startswith("["):
                close = item.find("]")
                address = _ip(item[1:close]) if close > 0 else None
                rest = item[close + 1 :] if close > 0 else ""
                if address is None or (rest and not rest.startswith(":")):
                    raise ValueError('expected "[ipv6]" or "[ipv6]:port"')
                server = Nameserver(address, _port(rest[1:]) if rest else 53)
            elif item.count(":") == 1:
                address_text, _, port_text = item.partition(":")
                address = _ip(address_text)
                if address is None:
                    raise ValueError(f'"{address_text}" is not an IP address')
                server = Nameserver(address, _port(port_text))
            else:
                address = _ip(item)
                if address is None:
                    raise ValueError("not an IP address (name servers are given by address)")
                server = Nameserver(address)
        except ValueError as exc:
            raise ConfigError(key, f"{show(item)}: {exc}") from None
        if server in out:
            raise ConfigError(key, f"{show(item)} is listed twice")
        out.append(server)
    return tuple(out)


def own_addresses(key: str, value: Any) -> tuple[str, ...]:
    """IP addresses (normalised) and host names (lowercased)."""
    out: list[str] = []
    for item in string_list(key, value):
        ip = _ip(item)
        if ip is None:
            problem = domain_problem(item.lower())
            if problem:
                raise ConfigError(
                    key, f"{show(item)} is neither an IP address nor a host name ({problem})"
                )
            ip = item.lower()
        if ip not in out:
            out.append(ip)
    return tuple(out)


#: [queue] lease: "30s", "2m", "1h" or a number of seconds. Renewed every
#: lease/3, so under a second would mean a database write every few hundred
#: milliseconds per node; over a day, a dead node's mail would wait that long.
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
MIN_LEASE, MAX_LEASE = 1.0, 86400.0


def lease(key: str, value: Any) -> float:
    """A duration in seconds between MIN_LEASE and MAX_LEASE (see _DURATION)."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    if seconds is None or not MIN_LEASE <= seconds <= MAX_LEASE:
        raise ConfigError(
            key,
            f'must be a duration from 1s to 24h ("30s", "2m", "1h" or seconds), got {show(value)}',
        )
    return seconds


def optional_string(key: str, value: Any) -> str:
    if not isinstance(value, str) or re.search(r"[\x00-\x1f\x7f]", value):
        raise ConfigError(key, f"must be a string without control characters, got {show(value)}")
    return value


def optional_name(key: str, value: Any) -> str:
    """A host name, lowercased, or "" (the default applies)."""
    if not isinstance(value, str):
        raise ConfigError(key, f'must be a host name or "", got {show(value)}')
    if value and domain_problem(value.lower()):
        raise ConfigError(
            key, f"not a valid host name: {show(value)} ({domain_problem(value.lower())})"
        )
    return value.lower()


def optional_path(key: str, value: Any) -> Path | None:
    """A file name, or "" for none."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ConfigError(key, f'must be a file name or "", got {show(value)}')
    return Path(value) if value else None


# --- checks across keys ----------------------------------------------------------------------


def final_problems(config: Config, refused: frozenset[str] = frozenset()) -> Iterator[ConfigError]:
    """Cross-key and file-existence checks on the merged config (see module doc): every
    problem. A check is skipped when a key it reads is in `refused` (a value the loader
    refused has its default standing in for it: comparing with that would mislead)."""
    queue, delivery = config.queue, config.delivery
    if queue.max_backoff < queue.min_backoff and not refused & {
        "queue.min_backoff",
        "queue.max_backoff",
    }:
        yield ConfigError(
            "queue.max_backoff",
            f"must be >= queue.min_backoff ({queue.min_backoff:g}), got {queue.max_backoff:g}",
        )
    if queue.store and not queue.store.startswith(("postgresql://", "postgres://")):
        yield ConfigError(
            "queue.store", f'must be "" or a postgresql:// URL, got {queue.store[:40]!r}'
        )
    if delivery.relay_user:
        if delivery.relay_host is None and "delivery.relay_host" not in refused:
            yield ConfigError("delivery.relay_user", "is set but delivery.relay_host is empty")
        if "delivery.relay_password_file" in refused:
            pass
        elif delivery.relay_password_file is None:
            yield ConfigError(
                "delivery.relay_password_file",
                "must name the password file when delivery.relay_user is set",
            )
        elif not os.path.isfile(delivery.relay_password_file):
            yield ConfigError(
                "delivery.relay_password_file", f'no such file: "{delivery.relay_password_file}"'
            )
    if delivery.tls_ca_file is not None and not os.path.isfile(delivery.tls_ca_file):
        yield ConfigError("delivery.tls_ca_file", f'no such file: "{delivery.tls_ca_file}"')

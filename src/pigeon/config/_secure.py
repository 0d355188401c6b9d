"""Value checks for the secure-transport keys: [tls], [auth], submission listeners.

Contract: same shape and message style as `pigeon.config._checks` (which
see): `check(key, value) -> value` or `ConfigError(key, message)`, no I/O.
`final_problems(config)` runs after the layers are merged and yields every
problem of what spans keys: tls.cert_file and tls.key_file come together, and no address is used
by two listener roles. Whether the certificate files are readable, match and
are in date is checked when the server starts (pigeon.net.tls), where the
error can name the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pigeon.config import _checks as C
from pigeon.config._checks import ConfigError
from pigeon.config.schema import Config, ListenAddress

#: SASL mechanisms pigeon implements (pigeon.proto.sasl.MECHANISMS).
KNOWN_MECHANISMS = ("PLAIN", "LOGIN", "SCRAM-SHA-256")


def listen_roles(key: str, value: Any) -> tuple[ListenAddress, ...]:
    """Like `listen`, but an empty list is allowed: the role is switched off."""
    if isinstance(value, list) and not value:
        return ()
    return C.listen(key, value)


def mechanisms(key: str, value: Any) -> tuple[str, ...]:
    items = C.string_list(key, value)
    out: list[str] = []
    for item in items:
        name = item.upper()
        if name not in KNOWN_MECHANISMS:
            listed = ", ".join(f'"{m}"' for m in KNOWN_MECHANISMS)
            raise ConfigError(key, f"unknown mechanism {C.show(item)} (known: {listed})")
        if name in out:
            raise ConfigError(key, f"{C.show(item)} is listed twice")
        out.append(name)
    return tuple(out)


def ciphers(key: str, value: Any) -> str:
    text = C.string(key, value)
    if any(c.isspace() for c in text) or not text.isascii():
        raise ConfigError(
            key, f"must be an OpenSSL cipher list without spaces, got {C.show(value)}"
        )
    return text


def final_problems(config: Config, refused: frozenset[str] = frozenset()) -> Iterator[ConfigError]:
    """Every cross-key problem; a check reading a key in `refused` is skipped (see
    `_delivery.final_problems`)."""
    tls = config.tls
    if (tls.cert_file is None) != (tls.key_file is None) and not refused & {
        "tls.cert_file",
        "tls.key_file",
    }:
        missing = "tls.key_file" if tls.key_file is None else "tls.cert_file"
        yield ConfigError(missing, "tls.cert_file and tls.key_file must be set together")
    seen: dict[ListenAddress, str] = {}
    for role, addrs in (
        ("listen", config.listen),
        ("submission_listen", config.submission_listen),
        ("submissions_listen", config.submissions_listen),
        ("imap.listen", config.imap.listen),
        ("imap.tls_listen", config.imap.tls_listen),
        ("pop3.listen", config.pop3.listen),
        ("pop3.tls_listen", config.pop3.tls_listen),
    ):
        if role in refused:
            continue
        for addr in addrs:
            if addr in seen:
                yield ConfigError(role, f'"{addr}" is also in {seen[addr]}')
            else:
                seen[addr] = role

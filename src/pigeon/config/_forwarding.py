"""Value checks for [srs] and [arc] (schema: `pigeon.config.forwarding`).

Contract: same shape and message style as `pigeon.config._checks` (which
see): `check(key, value) -> value` or `ConfigError(key, message)`.
`SECTIONS` is this module's part of the loader's table of [section]s
(`pigeon.config.load._SECTIONS`). `final_problems(config, refused)` checks
what spans keys or reads a file, once the layers are merged: an SRS secret
given twice, the files named exist, and with `[arc] enabled` a selector and
a key file holding an RSA private key in PEM (the seal is rsa-sha256, a
DKIM algorithm, RFC 8617 §4.1.3), so a bad key is refused at start-up,
naming the key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from pigeon.config import _checks as C
from pigeon.config import _delivery as D
from pigeon.config._checks import ConfigError
from pigeon.config.forwarding import ArcConfig, SrsConfig
from pigeon.config.schema import Config

__all__ = ["SECTIONS", "final_problems"]


def _optional_domain(key: str, value: Any) -> str:
    """ "" or a domain name (lowercased, no trailing dot)."""
    text = D.optional_string(key, value).lower().rstrip(".")
    problem = C.domain_problem(text) if text else None
    if problem is not None:
        raise ConfigError(key, f"{text!r} is not a domain name: {problem}")
    return text


def _between(low: int, high: int) -> Callable[[str, Any], int]:
    at_least = C.integer(low)

    def check(key: str, value: Any) -> int:
        number = at_least(key, value)
        if number > high:
            raise ConfigError(key, f"must be between {low} and {high}, got {number}")
        return number

    return check


SECTIONS: dict[str, tuple[type, dict[str, Callable[[str, Any], Any]]]] = {
    "srs": (
        SrsConfig,
        {
            "enabled": C.boolean,
            "domain": _optional_domain,
            "secret": D.optional_string,
            "secret_file": D.optional_path,
            # The timestamp counts days modulo 1024 (forwarding/srs.py).
            "max_age": _between(1, 1000),
            # base64 of a 20-octet HMAC-SHA1: 27 significant characters.
            "hash_length": _between(4, 27),
        },
    ),
    "arc": (
        ArcConfig,
        {
            "enabled": C.boolean,
            "domain": _optional_domain,
            "selector": _optional_domain,  # one or more DNS labels
            "key_file": D.optional_path,
        },
    ),
}


def final_problems(config: Config, refused: frozenset[str] = frozenset()) -> Iterator[ConfigError]:
    """Cross-key and file checks of [srs] and [arc] (module contract)."""
    srs, arc = config.srs, config.arc
    if srs.secret and srs.secret_file is not None:
        yield ConfigError("srs.secret", "set srs.secret or srs.secret_file, not both")
    if srs.secret_file is not None and not os.path.isfile(srs.secret_file):
        yield ConfigError("srs.secret_file", f'no such file: "{srs.secret_file}"')
    if not arc.enabled:
        return
    if not arc.selector and "arc.selector" not in refused:
        yield ConfigError("arc.selector", "must be set when arc.enabled is true")
    if "arc.key_file" in refused:
        return
    if arc.key_file is None:
        yield ConfigError("arc.key_file", "must name the private key when arc.enabled is true")
        return
    problem = _key_problem(arc)
    if problem is not None:
        yield ConfigError("arc.key_file", problem)


def _key_problem(arc: ArcConfig) -> str | None:
    """Why `arc.key_file` cannot seal, or None."""
    try:
        data = (arc.key_file or Path()).read_bytes()
    except OSError as exc:
        return f'cannot read "{arc.key_file}": {exc.strerror or exc}'
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        return f'"{arc.key_file}" is not a private key in PEM without a password: {exc}'
    if not isinstance(key, rsa.RSAPrivateKey):
        return f'"{arc.key_file}" is not an RSA key (ARC seals with rsa-sha256)'
    if key.key_size < 1024:
        return f'"{arc.key_file}" has {key.key_size} bits: at least 1024 (RFC 8301 §3.2)'
    return None

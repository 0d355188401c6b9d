"""Value checks for [dkim] (schema: `pigeon.config.dkim`).

Contract: same shape and message style as `pigeon.config._checks`:
`check(key, value) -> value` or `ConfigError(key, message)`, no I/O.
`SECTIONS` is this module's part of the loader's table of [section]s.
A selector is one DNS label (RFC 6376 §3.1: it becomes a label of
`SELECTOR-rsa._domainkey.DOMAIN`), so letters, digits and hyphens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pigeon.config import _checks as C
from pigeon.config._checks import ConfigError
from pigeon.config.dkim import DkimConfig, DkimDomain

__all__ = ["SECTIONS", "SELECTOR", "selector_problem"]

#: One DNS label, short enough that "-ed25519" still fits in 63 octets (RFC 1035 §2.3.4).
SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,53}[A-Za-z0-9])?")
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 §2.2 ftext

#: RFC 6376 §5.4: fields that change in transit; signing them breaks the signature.
_NEVER = frozenset({"received", "return-path", "dkim-signature", "bcc", "resent-bcc"})


def selector_problem(text: str) -> str | None:
    """Why `text` is no selector (None: it is one)."""
    if SELECTOR.fullmatch(text) is None:
        return (
            f"{C.show(text)} is not a selector (one DNS label: letters, digits and "
            "hyphens, at most 55 characters)"
        )
    return None


def _headers(key: str, value: Any) -> tuple[str, ...]:
    names: list[str] = []
    for item in C.string_list(key, value):
        name = item.strip().lower()
        if _FIELD_NAME.fullmatch(name) is None:
            raise ConfigError(key, f"{C.show(item)} is not a header field name")
        if name in _NEVER:
            raise ConfigError(key, f"{name} changes in transit and must not be signed")
        if name not in names:
            names.append(name)
    if "from" not in names:
        names.insert(0, "from")  # RFC 6376 §5.4: From MUST be signed
    return tuple(names)


def _domains(key: str, value: Any) -> dict[str, DkimDomain]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table of domains, got {C.show(value)}")
    out: dict[str, DkimDomain] = {}
    for name, table in value.items():
        where = f"{key}.{C.join(name)}"
        domain = C.domain_name(where, name)
        if not isinstance(table, Mapping):
            raise ConfigError(where, f"must be a table, got {C.show(table)}")
        for item in table:
            if item != "selector":
                raise C.unknown_key(f"{where}.{C.join(item)}", item, ["selector"])
        selector = C.string(f"{where}.selector", table["selector"]) if table else ""
        if selector and (problem := selector_problem(selector)) is not None:
            raise ConfigError(f"{where}.selector", problem)
        out[domain] = DkimDomain(selector)
    return out


SECTIONS: dict[str, tuple[type, dict[str, Callable[[str, Any], Any]]]] = {
    "dkim": (
        DkimConfig,
        {
            "sign": C.boolean,
            "key_dir": C.path,
            "headers": _headers,
            "domains": _domains,
        },
    ),
}

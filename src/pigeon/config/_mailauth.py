"""Value checks for [mail_auth] (schema: `pigeon.config.mailauth`).

Contract: same shape and message style as `pigeon.config._checks` (which
see): `check(key, value) -> value` or `ConfigError(key, message)`, no I/O
but `public_suffix_list`, whose file must be readable (it is read when the
checks are built). `SECTIONS` is this module's part of the loader's table
of [section]s (`pigeon.config.load._SECTIONS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pigeon.config import _checks as C
from pigeon.config._checks import ConfigError
from pigeon.config._delivery import maildir_folder_problem
from pigeon.config.mailauth import CheckPolicies, MailAuthConfig

__all__ = ["SECTIONS"]

_POLICY = C.choice("off", "annotate", "enforce")
_POLICY_KEYS = ("spf", "dkim", "dmarc", "arc")


def _checkers(key: str, value: Any) -> int:
    """[mail_auth] checkers: 1-16 processes (more than cores only costs memory)."""
    count = C.integer(1)(key, value)
    if count > 16:
        raise ConfigError(key, f"must be at most 16, got {count}")
    return count


def _domains(key: str, value: Any) -> dict[str, CheckPolicies]:
    """[mail_auth.domains."example.org"]: a table of policies per recipient domain."""
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table of domains, got {C.show(value)}")
    out: dict[str, CheckPolicies] = {}
    for name, table in value.items():
        domain = str(name).lower().rstrip(".")
        where = f"{key}.{C.join(str(name))}"
        if C.domain_problem(domain) is not None:
            raise ConfigError(where, f"{C.show(name)} is not a domain name")
        if not isinstance(table, Mapping):
            raise ConfigError(
                where, f"must be a table with spf, dkim, dmarc, arc, got {C.show(table)}"
            )
        for item in table:
            if item not in _POLICY_KEYS:
                raise C.unknown_key(C.join(where, str(item)), str(item), list(_POLICY_KEYS))
        given = {k: _POLICY(C.join(where, k), v) for k, v in table.items()}
        out[domain] = CheckPolicies(*(given.get(k) for k in _POLICY_KEYS))  # type: ignore[arg-type]  # checked by _POLICY
    return out


def _authserv_id(key: str, value: Any) -> str:
    if value == "":
        return ""
    return C.domain_name(key, value)


def _sealers(key: str, value: Any) -> tuple[str, ...]:
    out = []
    for item in C.string_list(key, value):
        name = item.lower().rstrip(".")
        if C.domain_problem(name) is not None:
            raise ConfigError(key, f"{C.show(item)} is not a domain name")
        out.append(name)
    return tuple(out)


def _folder(key: str, value: Any) -> str:
    """A Maildir++ folder: "" or one name starting with a dot (".Junk")."""
    if not isinstance(value, str):
        raise ConfigError(key, f'must be a string such as ".Junk", got {C.show(value)}')
    problem = maildir_folder_problem(value)
    if problem:
        raise ConfigError(key, f'{C.show(value)}: {problem} (write ".Junk"; "" = the inbox)')
    return value


def _suffix_list(key: str, value: Any) -> Path | None:
    if value == "":
        return None
    path = C.path(key, value)
    if not path.is_file():
        raise ConfigError(
            key, f"{path}: no such file (the Public Suffix List, as publicsuffix.org publishes it)"
        )
    return path


SECTIONS: dict[str, tuple[type, dict[str, Callable[[str, Any], Any]]]] = {
    "mail_auth": (
        MailAuthConfig,
        {
            "spf": _POLICY,
            "dkim": _POLICY,
            "dmarc": _POLICY,
            "arc": _POLICY,
            "domains": _domains,
            "authserv_id": _authserv_id,
            "dns_failure": C.choice("tempfail", "annotate"),
            "trusted_arc_sealers": _sealers,
            "quarantine_folder": _folder,
            "max_signatures": C.integer(1),
            "min_key_bits": C.integer(512),
            "max_key_bits": C.integer(512),
            "public_suffix_list": _suffix_list,
            "checker": C.choice("process", "inline"),
            "checkers": _checkers,
            "checker_above": C.integer(0),
        },
    ),
}


def final_problems(config: MailAuthConfig, refused: frozenset[str]) -> list[ConfigError]:
    """What spans keys: max_key_bits >= min_key_bits."""
    if {"mail_auth.min_key_bits", "mail_auth.max_key_bits"} & refused:
        return []
    if config.max_key_bits < config.min_key_bits:
        return [
            ConfigError(
                "mail_auth.max_key_bits",
                f"must be >= mail_auth.min_key_bits ({config.min_key_bits}), got {config.max_key_bits}",
            )
        ]
    return []

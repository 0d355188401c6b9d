"""Value checks for [tls_policy] (schema: `pigeon.config.tlspolicy`).

Contract: same shape and message style as `pigeon.config._checks` (which
see): `check(key, value) -> value` or `ConfigError(key, message)`, no I/O.
`SECTIONS` is this module's part of the loader's table of [section]s;
`final_problems(config)` checks, after merging, that `tls_policy.ca_file`
names an existing file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from pigeon.config import _checks as C
from pigeon.config import _delivery as D
from pigeon.config._checks import ConfigError
from pigeon.config.schema import Config
from pigeon.config.tlspolicy import MAX_AGE_LIMIT, TlsPolicyConfig

__all__ = ["SECTIONS", "final_problems", "mx_patterns"]


def mx_patterns(key: str, value: Any) -> tuple[str, ...]:
    """MX patterns as RFC 8461 §4.1 writes them: a host name, or "*." and a domain."""
    out: list[str] = []
    for i, item in enumerate(C.string_list(key, value)):
        name = item.lower().rstrip(".")
        problem = C.domain_problem(name.removeprefix("*.")) if name else "it is empty"
        if problem:
            raise ConfigError(
                f"{key}[{i}]", f"must be a host name or *.domain, got {C.show(item)} ({problem})"
            )
        out.append(name)
    return tuple(out)


def _max_age(key: str, value: Any) -> int:
    checked = C.integer(1)(key, value)
    if checked > MAX_AGE_LIMIT:
        raise ConfigError(key, f"must be at most {MAX_AGE_LIMIT} (RFC 8461 §3.2), got {checked}")
    return int(checked)


SECTIONS: dict[str, tuple[type, dict[str, C.Checker]]] = {
    "tls_policy": (
        TlsPolicyConfig,
        {
            "mta_sts": C.boolean,
            "dane": C.boolean,
            "ca_file": D.optional_path,  # must exist: final_problems
            "fetch_timeout": C.seconds(positive=True),
            "own_mode": C.choice("enforce", "testing", "none"),
            "own_mx": mx_patterns,
            "own_max_age": _max_age,
        },
    ),
}


def final_problems(config: Config, refused: frozenset[str] = frozenset()) -> Iterator[ConfigError]:
    ca_file = config.tls_policy.ca_file
    if ca_file is not None and "tls_policy.ca_file" not in refused and not os.path.isfile(ca_file):
        yield ConfigError("tls_policy.ca_file", f'no such file: "{ca_file}"')

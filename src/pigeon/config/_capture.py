"""Value checks for [capture] (schema: `pigeon.config.capture`, docs/capture.md).

Contract: same shape and message style as `pigeon.config._checks`:
`check(key, value) -> value` or `ConfigError(key, message)`, no I/O.
`SECTIONS` is this module's part of the loader's table of [section]s;
`final_problems(config)` refuses a capture listener that is not one of the
configured SMTP listeners (a typo would otherwise deliver mail meant to be
captured).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pigeon.config import _checks as C
from pigeon.config import _imap as IM
from pigeon.config import _secure as S
from pigeon.config._checks import ConfigError
from pigeon.config.capture import CaptureConfig

__all__ = ["SECTIONS", "final_problems"]


def _accounts(key: str, value: Any) -> frozenset[str]:
    names = [v.strip().lower() for v in C.string_list(key, value)]
    for name in names:
        if not name or any(c.isspace() or c == "," for c in name):
            raise ConfigError(key, f"not an account name: {C.show(name)}")
    return frozenset(names)


SECTIONS: dict[str, tuple[type, dict[str, C.Checker]]] = {
    "capture": (
        CaptureConfig,
        {
            "listeners": S.listen_roles,
            "accounts": _accounts,
            "max_size": IM.size,
            "max_age": C.seconds(positive=True),
            "sweep_interval": C.seconds(positive=True),
        },
    ),
}


def final_problems(config: Any, refused: frozenset[str] = frozenset()) -> Iterator[ConfigError]:
    """Each capture listener must be a configured SMTP listener (module contract)."""
    if "capture.listeners" in refused:
        return
    smtp = {*config.listen, *config.submission_listen, *config.submissions_listen}
    for address in config.capture.listeners:
        if address not in smtp:
            yield ConfigError(
                "capture.listeners",
                f'"{address}" is not one of listen, submission_listen or submissions_listen',
            )

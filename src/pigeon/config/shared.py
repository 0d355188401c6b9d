"""The domains and aliases a cluster shares, merged into a node's configuration.

With `[queue] store = "postgresql://..."` the nodes share, beside the
queue and the accounts, a list of local domains and a table of aliases
(`pigeon domain add`, `pigeon alias add`; store/pg/domains.py holds them).
This module is the pure half: the rules, no I/O.

Contract:
  * `check_domain(text)` is a domain as the shared table stores it (the
    rules of a `domains = [...]` name: lowercased, a valid name), and
    `check_alias(address, targets)` an alias as stored: the rules of an
    `[aliases]` entry ("local@domain" with the local part lowercased, or
    the catch-all "@domain"; at least one target, each a full address SMTP
    can carry); `alias_key(address)` the address part alone. They raise
    `ConfigError` naming what is wrong.
  * `merge_shared(config, domains, aliases)` returns the node's effective
    configuration and the warnings to log. The rule: the configuration
    file's entries PLUS the database's; on a conflict the file wins:
      - a shared domain the file also lists keeps the file's table (its
        `mailboxes` list, `capture`); a shared domain the file does not
        list is local with any local part accepted (as in `domains = [...]`);
      - a shared alias whose address the file's `[aliases]` also defines
        is not used, with a warning naming it (the node's own file is what
        its operator reads; pigeon never merges two target lists);
      - a shared catch-all "@domain" whose domain is not local in the
        merged configuration is not used, with a warning (the router
        applies catch-alls to local domains only: `check_catch_alls`);
      - a row that no longer passes `check_domain` / `check_alias` (one
        written by hand in SQL) is not used, with a warning.
    `Config.shared_directory` records the database's rows as read (sorted),
    so a node can tell whether the database changed since (app/clusterwake.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from pigeon.config import _checks as C
from pigeon.config._aliases import check_catch_alls
from pigeon.config._checks import ConfigError
from pigeon.config.schema import Config, DomainConfig

__all__ = ["Shared", "alias_key", "check_alias", "check_domain", "merge_shared", "snapshot"]

#: What the database held: (sorted domains, sorted (address, targets) pairs).
Shared = tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]


def check_domain(text: str) -> str:
    """A shared domain's stored form, or ConfigError (see the contract)."""
    return C.domain_name("domain", text.strip())


def check_alias(address: str, targets: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """A shared alias's stored form (address, targets), or ConfigError."""
    checked = C.aliases("alias", {address.strip(): [t.strip() for t in targets]})
    ((key, value),) = checked.items()
    return key, value


def alias_key(address: str) -> str:
    """An alias's stored address alone ("local@domain" or "@domain"), or ConfigError."""
    text = address.strip()
    if text.startswith("@"):
        return "@" + C.domain_name("alias", text[1:])
    return C.address("alias", text, "the alias", lower_local=True)


def snapshot(domains: Iterable[str], aliases: Mapping[str, Sequence[str]]) -> Shared:
    """The database's rows in the comparable form kept in `Config.shared_directory`."""
    return tuple(sorted(domains)), tuple(sorted((k, tuple(v)) for k, v in aliases.items()))


def merge_shared(
    config: Config, domains: Iterable[str], aliases: Mapping[str, Sequence[str]]
) -> tuple[Config, list[str]]:
    """The file's entries plus the database's, the file winning (see the contract)."""
    warnings: list[str] = []
    rows = snapshot(domains, aliases)
    merged_domains = dict(config.domains)
    for raw in rows[0]:
        try:
            name = check_domain(raw)
        except ConfigError as exc:
            warnings.append(f"shared domain {raw!r} not used: {exc.message}")
            continue
        merged_domains.setdefault(name, DomainConfig(name))
    merged_aliases = dict(config.aliases)
    for raw, targets in rows[1]:
        try:
            key, value = check_alias(raw, targets)
        except ConfigError as exc:
            warnings.append(f"shared alias {raw!r} not used: {exc.message}")
            continue
        if key in config.aliases:
            warnings.append(
                f"shared alias {key!r} not used: the configuration file's [aliases] "
                "entry for it wins"
            )
            continue
        merged_aliases[key] = value
    merged = dataclasses.replace(
        config, domains=merged_domains, aliases=merged_aliases, shared_directory=rows
    )
    # Catch-alls of domains that are not local (any more): dropped, said.
    for key in [k for k in merged_aliases if k.startswith("@") and k not in config.aliases]:
        try:
            check_catch_alls(dataclasses.replace(merged, aliases={key: merged_aliases[key]}))
        except ConfigError as exc:
            warnings.append(f"shared alias {key!r} not used: {exc.message}")
            del merged_aliases[key]
    return dataclasses.replace(merged, aliases=merged_aliases), warnings

"""Recipient routing: alias expansion and local/remote resolution.

Contract:
  * `Router.resolve(address)` turns one envelope recipient into the list of
    final destinations (`Route`s): ("local", address, maildir Path) or
    ("remote", address, domain). It is pure with respect to the config it was
    built from: no I/O, no DNS (MX lookup belongs to remote delivery).
  * Aliases (`config.aliases`: lowercase full address -> addresses) expand
    recursively, depth-first, in the order written; duplicates are dropped
    (first occurrence wins).
    Rule 1 (loops): an address already on the current expansion path is not
    expanded again but delivered as is, like Postfix's "an alias that names
    itself delivers to the mailbox" (`alice: alice, archive@...` is the
    classic use). Rule 2: expansion deeper than `MAX_DEPTH` (20) stops there
    and the address is delivered as is, with a warning on "pigeon.routing".
  * An alias target without "@" is a local part in the alias's own domain.
  * Local domains are the keys of `config.domains`; everything else, address
    literals ("[192.0.2.1]") included, is remote.
  * `<postmaster>` (no domain, RFC 5321 §4.5.1) means postmaster of our
    primary domain: `config.hostname` if it is a local domain, else the first
    local domain in the config. postmaster@<local domain> always exists; with
    no alias for it, it is delivered to the mailbox "postmaster".

Failure modes: none at run time; a malformed address (no local part) is
treated as remote to its domain part and fails at delivery, not here.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, NamedTuple

from pigeon.config.schema import Config
from pigeon.delivery.maildir import maildir_path

log = logging.getLogger("pigeon.routing")

MAX_DEPTH = 20


class Route(NamedTuple):
    """One final destination. `target` is the Maildir (local) or domain (remote)."""

    kind: Literal["local", "remote"]
    address: str
    target: Path | str


def split_address(address: str) -> tuple[str, str]:
    """("local", "domain") split at the last "@"; ("postmaster", "") for bare postmaster."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain.lower()


class Router:
    """Resolves recipients against the domains and aliases of one `Config`."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._domains = {d.lower(): dc for d, dc in config.domains.items()}
        self._aliases = {k.lower(): tuple(v) for k, v in config.aliases.items()}
        host = config.hostname.lower()
        self.primary_domain = host if host in self._domains else next(iter(self._domains), host)

    # --- questions the policy asks ---------------------------------------------

    def is_local_domain(self, domain: str) -> bool:
        """True for a domain listed under [domains] (case-insensitive)."""
        return domain.lower() in self._domains

    def is_alias(self, address: str) -> bool:
        return self.canonical(address) in self._aliases

    def mailbox_exists(self, address: str) -> bool:
        """True if `address` is a local mailbox we would deliver to.

        A domain without a mailbox list accepts any local part;
        postmaster@<local domain> always exists (RFC 5321 §4.5.1).
        """
        local, domain = split_address(self.canonical(address))
        dc = self._domains.get(domain)
        if dc is None or not local:
            return False
        if local == "postmaster" or dc.mailboxes is None:
            return True
        return local in dc.mailboxes

    def canonical(self, address: str) -> str:
        """Lowercased, with bare postmaster qualified by the primary domain."""
        local, domain = split_address(address)
        if not domain and local.lower() == "postmaster":
            domain = self.primary_domain
        return f"{local}@{domain}".lower() if domain else local.lower()

    # --- resolution ---------------------------------------------------------------

    def resolve(self, address: str, *, expand_aliases: bool = True) -> list[Route]:
        """Final destinations of `address` (see the module rules).

        `expand_aliases=False` resolves `address` itself only: the queue
        manager uses it for recipients that are already alias expansions, so a
        self-naming alias is not expanded again on a retry.
        """
        routes: dict[str, Route] = {}
        if expand_aliases:
            self._expand(self.canonical(address), [], routes)
        else:
            self._terminal(self.canonical(address), routes)
        return list(routes.values())

    def _expand(self, address: str, path: list[str], out: dict[str, Route]) -> None:
        targets = self._aliases.get(address)
        if targets is None or address in path:
            self._terminal(address, out)
            return
        if len(path) >= MAX_DEPTH:
            log.warning("alias expansion deeper than %d at %s; delivering as is",
                        MAX_DEPTH, address)
            self._terminal(address, out)
            return
        _, domain = split_address(address)
        path.append(address)
        for t in targets:
            t = t.strip()
            if not t:
                continue
            if "@" not in t and domain:
                t = f"{t}@{domain}"
            self._expand(self.canonical(t), path, out)
        path.pop()

    def _terminal(self, address: str, out: dict[str, Route]) -> None:
        if address in out:
            return
        local, domain = split_address(address)
        if domain in self._domains:
            out[address] = Route("local", address,
                                 maildir_path(self._config.mailbox_root, local, domain))
        else:
            out[address] = Route("remote", address, domain)

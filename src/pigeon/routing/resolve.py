"""Recipient routing: alias expansion and the choice of next hop.

Contract:
  * `Router.resolve(address)` turns one envelope recipient into the list of
    final destinations (`pigeon.vocab.Route`s): `Route.local(address,
    maildir)` (transport "local") or `Route.remote(address, nexthop)`,
    handed to the delivery agent named by `Nexthop.transport` (smtp, lmtp
    or discard). It is pure
    with respect to the config it was built from: no I/O, no DNS (MX lookup
    belongs to `pigeon.routing.mx`, called by the delivery agents).
  * Rule 1 (grouping): equal destinations give equal, hashable `Nexthop`s,
    so the queue manager can group recipients by `route.nexthop`. Every
    Nexthop carries the recipient domain, so recipients of two domains sent
    through one smarthost are two groups (Postfix does the same per
    nexthop domain).
  * Rule 2 (decision order for a final address, first match wins):
      1. `config.transports`: the exact domain, then ".parent" entries from
         the nearest parent up (Postfix transport(5));
      2. local domains (`config.domains`) -> Maildir;
      3. `delivery.relay_host` -> Nexthop("smtp", domain, relay host, port,
         mx=not bracketed): every other domain, address literals included;
      4. address literal "[192.0.2.1]" / "[IPv6:2001:db8::1]" ->
         Nexthop("smtp", domain, host=the IP, mx=False) (RFC 5321 §4.1.3);
      5. otherwise Nexthop("smtp", domain): MX lookup of the domain.
    A transport entry "local" makes its domain(s) local: Maildir under
    mailbox_root, any local part accepted (`is_local_domain` and
    `mailbox_exists` say so too, so the RCPT policy agrees).
  * Aliases expand recursively, depth-first, in the order written;
    destinations that are the same are dropped (first occurrence wins, see
    `delivery_key`). Lookup order for one address (Postfix virtual(5) and
    local(8) order; first match wins):
      1. `[aliases]` "user+ext@domain", then "user@domain";
      2. in a local domain, `aliases_file` entries (`config.local_aliases`)
         "user+ext", then "user";
      3. in a local domain, the catch-all `[aliases]` "@domain", but only when
         the local part is not a mailbox of a `mailboxes` list (postmaster
         counts as one): a catch-all never takes a real mailbox's mail.
    Rule 3 (loops): an address already on the current expansion path is not
    expanded again but delivered as is, like Postfix's "an alias that names
    itself delivers to the mailbox" (`alice: alice, archive@...` is the
    classic use; a catch-all naming a mailbox of its own list-less domain
    ends the same way). Rule 4: expansion deeper than `MAX_DEPTH` (20) stops
    there and the address is delivered as is, with a warning on
    "pigeon.routing".
  * An alias target without "@" is a local part in the alias's own domain;
    a target "\\user" (aliases(5)) is that address, not expanded again.
  * Recipient delimiter (`config.recipient_delimiter`, Postfix semantics):
    "user+ext" splits at the first delimiter character unless the local
    part starts with one; with "-" among the delimiters, "owner-x" and
    "x-request" are never split. The extension is kept in the routed address
    (so Delivered-To shows it); the Maildir is the mailbox's: the full local
    part when it is itself in the domain's `mailboxes` list, else "user".
    Targets of an alias matched without the extension do not inherit it.
  * `mailbox_exists(address)` is THE test for "this local address can be
    delivered": the RCPT check (policy.recipients) and the Maildir agent use
    it on the same routed addresses, so the two always agree.
  * SRS (`srs`, a `forwarding.srs.SrsCodec` when `[srs] enabled`): an
    address of the SRS form ("SRS0=..." / "SRS1=...") in the SRS domain is
    an alias of the address it reverses to, when its hash is good
    (`srs_original`; its age is the RCPT check's business, policy/srs.py):
    a bounce to a forwarded copy goes back to the original sender. One
    whose hash is bad is no mailbox (`mailbox_exists` is False), even in a
    local domain without a mailbox list.
  * `<postmaster>` (no domain, RFC 5321 §4.5.1) means postmaster of our
    primary domain: `config.hostname` if it is a local domain, else the first
    local domain in the config. postmaster@<local domain> always exists; with
    no alias for it, it is delivered to the mailbox "postmaster".
  * Duplicate recipients (one message naming one destination twice) are
    merged by key: `merge_key(address)` before alias expansion (the address
    the lookups above would match: domain lowercased; in local domains the
    local part lowercased and without its extension unless the full local
    part has its own entry), `delivery_key(route)` after it (the Maildir for
    local routes; the address with its domain lowercased for remote ones).

Failure modes: none at run time; a malformed address (no local part, a
literal that is not an IP) is routed to its domain part and fails at
delivery (DNS lookup), not here.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from pigeon.config.schema import Config, TransportSpec
from pigeon.forwarding.srs import SrsCodec, SrsError, is_srs_local
from pigeon.mailstore.paths import maildir_path
from pigeon.vocab import Nexthop, Route

log = logging.getLogger("pigeon.routing")

MAX_DEPTH = 20
MAILDIR_CACHE = 10_000  # remembered Maildir paths (Router._maildir)


def split_address(address: str) -> tuple[str, str]:
    """("local", "domain") split at the last "@"; ("postmaster", "") for bare postmaster."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain.lower()


def literal_ip(domain: str) -> str | None:
    """The IP address of an address literal "[192.0.2.1]" / "[IPv6:2001:db8::1]", or None."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
        version = 6
    else:
        version = 4
    try:
        ip = ipaddress.ip_address(inner)
    except ValueError:
        return None
    return str(ip) if ip.version == version else None


def nexthop_from_spec(spec: TransportSpec, domain: str) -> Nexthop:
    """The Nexthop for recipient `domain` given a parsed [transports]/relay_host spec."""
    return Nexthop(spec.transport, domain, spec.host, spec.port, spec.mx)


def split_extension(local: str, delimiters: str) -> tuple[str, str]:
    """("user", "+ext") for "user+ext"; (local, "") when it does not split
    (module contract: no delimiter, a leading one, or Postfix's owner-/-request rule)."""
    if not delimiters or not local:
        return local, ""
    if "-" in delimiters:
        lowered = local.lower()
        if lowered.startswith("owner-") or (len(lowered) > 8 and lowered.endswith("-request")):
            return local, ""
    for i, ch in enumerate(local):
        if ch in delimiters:
            return (local[:i], local[i:]) if i else (local, "")
    return local, ""


class Router:
    """Resolves recipients against the domains and aliases of one `Config`."""

    def __init__(self, config: Config, *, srs: SrsCodec | None = None) -> None:
        self._config = config
        #: The SRS codec of `[srs]` (forwarding/secrets.py `srs_codec`), or None.
        self.srs = srs
        self._domains = {d.lower(): dc for d, dc in config.domains.items()}
        aliases = {k.lower(): tuple(v) for k, v in config.aliases.items()}
        self._aliases = {k: v for k, v in aliases.items() if not k.startswith("@")}
        self._catch_all = {k[1:]: v for k, v in aliases.items() if k.startswith("@")}
        self._local_aliases = {k.lower(): tuple(v) for k, v in config.local_aliases.items()}
        self._delimiters = config.recipient_delimiter
        self._transports = {k.lower(): v for k, v in config.transports.items()}
        self._relay = config.delivery.relay_host
        self._maildirs: dict[tuple[str, str], Path] = {}
        host = config.hostname.lower()
        self.primary_domain = host if host in self._domains else next(iter(self._domains), host)

    # --- questions the policy asks ---------------------------------------------

    def is_local_domain(self, domain: str) -> bool:
        """True for a domain listed under [domains] or routed "local" by [transports]."""
        domain = domain.lower()
        if domain in self._domains:
            return True
        spec = self.transport_for(domain)
        return spec is not None and spec.transport == "local"

    def transport_for(self, domain: str) -> TransportSpec | None:
        """The [transports] entry for `domain`: exact, then ".parent" from nearest up."""
        if not self._transports or domain.startswith("["):
            return None
        domain = domain.lower()
        spec = self._transports.get(domain)
        if spec is not None:
            return spec
        rest = domain
        while "." in rest:
            rest = rest.split(".", 1)[1]
            spec = self._transports.get("." + rest)
            if spec is not None:
                return spec
        return None

    def is_srs_address(self, address: str) -> bool:
        """True for an address of the SRS form in our SRS domain (good or not)."""
        if self.srs is None:
            return False
        local, domain = split_address(address)
        return domain == self.srs.domain and is_srs_local(local)

    def srs_original(self, address: str) -> str | None:
        """The address our SRS `address` reverses to (hash checked, age not), or None."""
        if not self.is_srs_address(address):
            return None
        assert self.srs is not None
        try:
            return self.srs.reverse(address, None)
        except SrsError:
            return None

    def is_alias(self, address: str) -> bool:
        return self.alias_targets(self.canonical(address)) is not None

    def has_mailbox_list(self, domain: str) -> bool:
        """True when `domain` is local and lists its mailboxes (so no new ones appear)."""
        dc = self._domains.get(domain.lower())
        return dc is not None and dc.mailboxes is not None

    def mailbox_exists(self, address: str) -> bool:
        """True if `address` is a local mailbox we would deliver to.

        A domain without a mailbox list accepts any local part;
        postmaster@<local domain> always exists (RFC 5321 §4.5.1); an
        extension ("alice+news") exists when its mailbox does.
        """
        local, domain = split_address(self.canonical(address))
        if not local or not domain or not self.is_local_domain(domain):
            return False
        if self.is_srs_address(address) and self.srs_original(address) is None:
            return False  # a forged SRS address is nobody's mailbox (module contract)
        return not self.has_mailbox_list(domain) or self._listed(local, domain)

    def canonical(self, address: str) -> str:
        """Lowercased, with bare postmaster qualified by the primary domain."""
        local, domain = split_address(address)
        if not domain and local.lower() == "postmaster":
            domain = self.primary_domain
        return f"{local}@{domain}".lower() if domain else local.lower()

    def alias_targets(self, address: str) -> tuple[str, ...] | None:
        """The targets of the first entry matching the canonical `address`
        (module contract, lookup order), or None."""
        original = self.srs_original(address)
        if original is not None:
            return (original,)
        local, domain = split_address(address)
        base, _ = split_extension(local, self._delimiters)
        targets = self._aliases.get(address)
        if targets is None and base != local:
            targets = self._aliases.get(f"{base}@{domain}")
        if targets is not None or not domain or not self.is_local_domain(domain):
            return targets
        targets = self._local_aliases.get(local)
        if targets is None and base != local:
            targets = self._local_aliases.get(base)
        if targets is None and domain in self._catch_all and not self._listed(local, domain):
            targets = self._catch_all[domain]
        return targets

    def _listed(self, local: str, domain: str) -> bool:
        """`local` (lowercased) is postmaster or in `domain`'s mailbox list,
        with or without its extension."""
        base, _ = split_extension(local, self._delimiters)
        if "postmaster" in (local, base):
            return True
        dc = self._domains.get(domain)
        return (
            dc is not None
            and dc.mailboxes is not None
            and (local in dc.mailboxes or base in dc.mailboxes)
        )

    def _maildir(self, mailbox: str, domain: str) -> Path:
        """maildir_path(), remembered: RCPT checks and deliveries ask for the
        same few mailboxes over and over (bounded; forgotten all at once)."""
        key = (mailbox, domain)
        path = self._maildirs.get(key)
        if path is None:
            if len(self._maildirs) >= MAILDIR_CACHE:
                self._maildirs.clear()
            path = self._maildirs[key] = maildir_path(self._config.mailbox_root, mailbox, domain)
        return path

    def _mailbox(self, local: str, domain: str) -> str:
        """The Maildir name of local address `local` (module contract, delimiter)."""
        dc = self._domains.get(domain)
        if dc is not None and dc.mailboxes is not None and local in dc.mailboxes:
            return local
        return split_extension(local, self._delimiters)[0]

    # --- duplicate recipients ---------------------------------------------------

    def merge_key(self, address: str) -> str:
        """Envelope recipients with equal keys are one recipient (module contract)."""
        local, domain = split_address(address)
        if not domain or not self.is_local_domain(domain):
            return self.canonical(address) if not domain else f"{local}@{domain}"
        local = local.lower()
        full = f"{local}@{domain}"
        base, _ = split_extension(local, self._delimiters)
        if (
            base == local
            or full in self._aliases
            or local in self._local_aliases
            or self._listed_exactly(local, domain)
        ):
            return full
        return f"{base}@{domain}"

    def _listed_exactly(self, local: str, domain: str) -> bool:
        dc = self._domains.get(domain)
        return dc is not None and dc.mailboxes is not None and local in dc.mailboxes

    @staticmethod
    def delivery_key(route: Route) -> tuple[str, str]:
        """Routes with equal keys deliver to the same place (module contract)."""
        if route.kind == "local":
            return ("local", str(route.mailbox))
        local, _, domain = route.address.rpartition("@")
        return ("remote", f"{local}@{domain.lower()}")

    # --- resolution ---------------------------------------------------------------

    def resolve(self, address: str, *, expand_aliases: bool = True) -> list[Route]:
        """Final destinations of `address` (see the module rules), each once.

        `expand_aliases=False` resolves `address` itself only: the queue
        manager uses it for recipients that are already alias expansions, so a
        self-naming alias is not expanded again on a retry.
        """
        routes: dict[tuple[str, str], Route] = {}
        if expand_aliases:
            self._expand(self.canonical(address), [], routes)
        else:
            self._terminal(self.canonical(address), routes)
        return list(routes.values())

    def _expand(self, address: str, path: list[str], out: dict[tuple[str, str], Route]) -> None:
        targets = self.alias_targets(address)
        if targets is None or address in path:
            self._terminal(address, out)
            return
        if len(path) >= MAX_DEPTH:
            log.warning(
                "alias expansion deeper than %d at %s; delivering as is", MAX_DEPTH, address
            )
            self._terminal(address, out)
            return
        _, domain = split_address(address)
        path.append(address)
        for t in targets:
            t = t.strip()
            as_is = t.startswith("\\")  # aliases(5) "\\user": no further expansion
            t = t[1:] if as_is else t
            if not t:
                continue
            if "@" not in t and domain:
                t = f"{t}@{domain}"
            if as_is:
                self._terminal(self.canonical(t), out)
            else:
                self._expand(self.canonical(t), path, out)
        path.pop()

    def _terminal(self, address: str, out: dict[tuple[str, str], Route]) -> None:
        local, domain = split_address(address)
        route = self._route(address, local, domain)
        out.setdefault(self.delivery_key(route), route)

    def _route(self, address: str, local: str, domain: str) -> Route:
        """One final address -> Route, by the decision order of contract Rule 2."""
        spec = self.transport_for(domain)
        if spec is not None and spec.transport != "local":
            return Route.remote(address, nexthop_from_spec(spec, domain))
        if spec is not None or domain in self._domains:
            return Route.local(address, self._maildir(self._mailbox(local, domain), domain))
        if self._relay is not None:
            return Route.remote(address, nexthop_from_spec(self._relay, domain))
        ip = literal_ip(domain)
        if ip is not None:
            return Route.remote(address, Nexthop("smtp", domain, host=ip, mx=False))
        return Route.remote(address, Nexthop("smtp", domain))

"""API tokens: `pigeon token add|list|remove` and the bearer check of the HTTP API.

Contract:
  * A token is "pgn_" and 43 URL-safe characters (32 random octets,
    `secrets`); it is shown once, by `add`, and never stored: the file
    keeps its SHA-256 (hex), its name, its scopes and its creation time.
  * Scopes (docs/api.md): "send" (POST /api/send), "read" (list and read
    the queue), "admin" (act on the queue; it includes "read").
  * The file is `<data_dir>/api-tokens.json`, mode 0600, replaced
    atomically (pigeon.fsutil.write_atomically: temporary file, fsync,
    rename, directory fsync), so a reader sees the old file or the new one.
  * `TokenStore.authenticate(token)` looks the token up by its hash; the
    hashes are compared with `hmac.compare_digest`, every stored one each
    time (no early exit), so the time taken says nothing about how close a
    guess was. The file is read again when it changed (size, mtime, inode):
    a token added or removed while pigeon runs counts at the next request.
    A file that cannot be read or parsed authenticates nobody (logged once
    per change), and is `TokenError` for the CLI.
  * Names: 1-64 of A-Z a-z 0-9 . _ -; one token per name.
  * A token may be limited to one capture tenant (`tenant`, docs/capture.md
    "Tenants"): it then serves only the /api/capture routes, and sees and
    acts on that tenant's captured mail only (web/auth.py, web/capture_routes.py).
    Tenants: 1-255 characters, no white space or control characters.
  * With a shared store (`[queue] store = "postgresql://..."`, docs/cluster.md)
    the tokens are the cluster's, in its database (web/sharedtokens.py),
    with the same rules and the same `TokenStore` surface:
    `web.sharedtokens.token_store(config)` chooses.
  * A token may be bound to an account (`account`, `pigeon token add
    --account USER`, docs/api.md "Who a token sends as"): its POST
    /api/send is then a submission session of that account, through the
    receive pipeline (admin/apisubmit.py, net/apisession.py). The name is
    kept as `pigeon user` writes it (auth/accounts.py `normalize_name`).
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pigeon.auth.accounts import AccountError, normalize_name
from pigeon.fsutil import write_atomically

__all__ = [
    "SCOPES",
    "TOKEN_FILE",
    "TokenError",
    "TokenInfo",
    "TokenStore",
    "TokenUsage",
    "check_tenant",
    "has_scope",
    "parse_scopes",
]

log = logging.getLogger("pigeon.web")

SCOPES = ("send", "read", "admin")
TOKEN_FILE = "api-tokens.json"
PREFIX = "pgn_"
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class TokenError(Exception):
    """A name taken or unknown, a file that does not read."""


class TokenUsage(TokenError):
    """A bad name or scope: the caller's mistake."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    name: str
    scopes: tuple[str, ...]
    created: float
    sha256: str
    #: The capture tenant the token is limited to (None: not limited).
    tenant: str | None = None
    #: The account the token sends as (None: local submission, docs/api.md).
    account: str | None = None

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "scopes": list(self.scopes)}
        out["created"] = self.created
        if self.tenant is not None:
            out["tenant"] = self.tenant
        if self.account is not None:
            out["account"] = self.account
        return out


def check_tenant(tenant: str) -> str:
    """A tenant name as given to `pigeon token add --tenant`; TokenUsage if bad."""
    if not 0 < len(tenant) <= 255 or any(c.isspace() or not c.isprintable() for c in tenant):
        raise TokenUsage(f"bad tenant {tenant!r}: 1-255 characters, no spaces")
    return tenant.lower()


def parse_scopes(text: str) -> tuple[str, ...]:
    """ "send,read" -> ("send", "read"), in SCOPES order; TokenError if unknown or none."""
    given = [s.strip().lower() for s in text.split(",") if s.strip()]
    bad = [s for s in given if s not in SCOPES]
    if bad:
        raise TokenUsage(f"unknown scope {bad[0]!r} (the scopes are {', '.join(SCOPES)})")
    if not given:
        raise TokenUsage(f"give at least one scope ({', '.join(SCOPES)})")
    return tuple(s for s in SCOPES if s in given)


def has_scope(info: TokenInfo, scope: str) -> bool:
    """Whether `info` allows `scope` ("admin" includes "read")."""
    return scope in info.scopes or (scope == "read" and "admin" in info.scopes)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class TokenStore:
    """The token file of one data directory (see the module contract)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._seen: tuple[int, int, int] | None = None
        self._tokens: tuple[TokenInfo, ...] = ()

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> TokenStore:
        return cls(Path(data_dir) / TOKEN_FILE)

    # --- reading -----------------------------------------------------------------------

    def _read(self) -> tuple[TokenInfo, ...]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return ()
        except (OSError, ValueError) as exc:
            raise TokenError(f"{self.path}: cannot read the API tokens: {exc}") from None
        try:
            return tuple(
                TokenInfo(
                    str(t["name"]),
                    tuple(s for s in t["scopes"] if s in SCOPES),
                    float(t["created"]),
                    str(t["sha256"]),
                    str(t["tenant"]) if t.get("tenant") else None,
                    str(t["account"]) if t.get("account") else None,
                )
                for t in data["tokens"]
            )
        except (KeyError, TypeError, ValueError):
            raise TokenError(f"{self.path}: not an API token file") from None

    def list(self) -> list[TokenInfo]:
        """Every token, oldest first. TokenError if the file does not read."""
        return sorted(self._read(), key=lambda t: (t.created, t.name))

    def _current(self) -> tuple[TokenInfo, ...]:
        """The tokens, read again when the file changed (the server's view)."""
        try:
            st = os.stat(self.path)
            seen = (st.st_size, st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            seen = (0, 0, 0)
        except OSError:
            seen = None
        if seen is not None and seen == self._seen:
            return self._tokens
        try:
            self._tokens = self._read()
        except TokenError as exc:
            log.error("%s; no API token is accepted until it is fixed", exc)
            self._tokens = ()
        self._seen = seen
        return self._tokens

    def authenticate(self, token: str) -> TokenInfo | None:
        """The token's entry, or None (see the module contract: constant-time compare)."""
        wanted = digest(token)
        found: TokenInfo | None = None
        for info in self._current():
            if hmac.compare_digest(info.sha256, wanted):
                found = info
        return found

    # --- changing (the CLI) ------------------------------------------------------------

    def _write(self, tokens: builtins.list[TokenInfo]) -> None:
        body = {"tokens": [{**t.public(), "sha256": t.sha256} for t in tokens]}
        write_atomically(self.path, json.dumps(body, indent=1).encode() + b"\n")

    def add(
        self,
        name: str,
        scopes: tuple[str, ...],
        now: float,
        tenant: str | None = None,
        account: str | None = None,
    ) -> str:
        """Store a new token named `name`; the token itself (shown once)."""
        if tenant is not None:
            tenant = check_tenant(tenant)
        if account is not None:
            try:
                account = normalize_name(account)
            except AccountError as exc:
                raise TokenUsage(f"bad account name: {exc}") from None
        if not _NAME.match(name):
            raise TokenUsage(f"bad token name {name!r}: use 1-64 of A-Z a-z 0-9 . _ -")
        if not scopes or any(s not in SCOPES for s in scopes):
            raise TokenUsage(f"give scopes among {', '.join(SCOPES)}")
        scopes = tuple(s for s in SCOPES if s in scopes)
        token = PREFIX + secrets.token_urlsafe(32)
        self._insert(TokenInfo(name, scopes, now, digest(token), tenant, account))
        return token

    def remove(self, name: str) -> None:
        self._delete(name)

    # --- the storage (web/sharedtokens.py keeps them in the cluster's database) ---------

    def _insert(self, info: TokenInfo) -> None:
        """Store `info`; TokenError when its name is taken."""
        tokens = self.list()
        if any(t.name == info.name for t in tokens):
            raise TokenError(f"a token named {info.name!r} exists (remove it first)")
        self._write([*tokens, info])

    def _delete(self, name: str) -> None:
        tokens = self.list()
        kept = [t for t in tokens if t.name != name]
        if len(kept) == len(tokens):
            raise TokenError(f"no such token: {name}")
        self._write(kept)

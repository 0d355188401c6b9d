"""The account directory's interface: what callers may ask of an account store.

Contract:
  * `AccountDirectory` is the `typing.Protocol` every account backend
    implements (issue 17: "a store interface: ... accounts"). Two do:
    the embedded `pigeon.auth.accounts.AccountStore` (SQLite file
    `<data_dir>/accounts.db`, one node) and
    `pigeon.store.pg.accounts.PgAccountStore` (tables in the PostgreSQL
    database nodes share, so `pigeon user add` on one node is a login on
    every node). Which one a configuration uses is decided in one place,
    `pigeon.store.factory.account_store`.
  * The promises are the embedded store's (pigeon/auth/accounts.py): names
    and addresses normalised by `normalize_name` / `normalize_address`
    (case-insensitive, stored lowercased); an address belongs to at most one
    account; user mistakes and an unusable store raise `AccountError` with
    a message fit for the command line; a change is seen by the next login
    of every process using the same store, without a reload; methods are
    safe to call from several threads.
  * `open(owner=...)` returns the store; `owner` (the serving pigeon)
    upgrades an embedded file in place; a shared database is upgraded by
    `pigeon db migrate` instead, so there it is accepted and unused, as is
    `take_ownership()` (after `pigeon restart`).
  * `pigeon.testing.account_conformance` checks these promises; the
    conformance suite runs it on both backends.
"""

from __future__ import annotations

from typing import Protocol

from pigeon.auth.accounts import Account
from pigeon.proto.scram import ScramKeys

__all__ = ["AccountDirectory"]


class AccountDirectory(Protocol):
    def open(self, *, owner: bool = False) -> AccountDirectory: ...

    def take_ownership(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> AccountDirectory: ...

    def __exit__(self, *exc: object) -> None: ...

    # changes (`pigeon user`, the console's accounts page)
    def add(self, name: str, password: str, addresses: tuple[str, ...] = ()) -> Account: ...

    def set_password(self, name: str, password: str) -> None: ...

    def delete(self, name: str) -> None: ...

    # queries (AUTH, IMAP and POP3 logins, MAIL FROM ownership, tokens)
    def get(self, name: str) -> Account | None: ...

    def list(self) -> list[Account]: ...

    def password_hash(self, name: str) -> str | None: ...

    def scram_keys(self, name: str) -> ScramKeys | None: ...

    def owner_of(self, address: str) -> str | None: ...

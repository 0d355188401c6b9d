"""The account-directory conformance suite: checks every backend of
pigeon/auth/directory.py must pass (CONTRIBUTING.md, rule 12).

Contract:
  * `CHECKS` maps a name to a check `fn(open_store)`: `open_store()` opens
    a new store object over one place (the same SQLite file, or the same
    database), so that two calls are two processes, or two nodes, sharing
    the accounts. Each check starts from an empty directory.
  * The checks are the promises of the embedded store
    (pigeon/auth/accounts.py), which the shared one must keep alike:
    normalisation, owned addresses, argon2id and SCRAM-SHA-256 secrets
    (RFC 5802 §3; RFC 7677 §4: 4096 iterations at least), errors as
    `AccountError` with nothing half-done, a change seen by another
    store object at once, parallel additions of one name succeeding once.
  * A check raises AssertionError on failure; it leaves its stores closed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from pigeon.auth import passwords
from pigeon.auth.accounts import AccountError
from pigeon.auth.directory import AccountDirectory
from pigeon.proto import scram

__all__ = ["CHECKS"]

Opener = Callable[[], AccountDirectory]


def _raises(match: str, fn: Callable[[], object]) -> None:
    try:
        fn()
    except AccountError as exc:
        assert match in str(exc), f"{match!r} not in {str(exc)!r}"
        return
    raise AssertionError(f"no AccountError ({match!r})")


def add_list_get_owner(open_store: Opener) -> None:
    with open_store() as store:
        acc = store.add("Alice@Example.TEST", "pw", ("Sales@example.test",))
        assert acc.name == "alice@example.test"
        assert acc.addresses == ("alice@example.test", "sales@example.test")
        store.add("bob", "pw2")
        assert [a.name for a in store.list()] == ["alice@example.test", "bob"]
        alice, bob = store.get("ALICE@example.test"), store.get("bob")
        assert alice is not None and alice.addresses == acc.addresses
        assert bob is not None and bob.addresses == ()
        assert store.owner_of("SALES@example.TEST") == "alice@example.test"
        assert store.owner_of("nobody@example.test") is None
        assert store.owner_of("not an address") is None
        assert store.get("a b") is None and store.get("carol") is None


def secrets(open_store: Opener) -> None:
    with open_store() as store:
        store.add("alice@example.test", "secret")
        encoded = store.password_hash("ALICE@example.test")
        assert encoded is not None and encoded.startswith("$argon2id$")
        assert passwords.verify_password(encoded, "secret")
        assert not passwords.verify_password(encoded, "Secret")
        keys = store.scram_keys("alice@example.test")
        assert keys is not None
        assert keys == scram.derive_keys("secret", keys.salt, keys.iterations)
        assert isinstance(keys.salt, bytes) and keys.iterations >= 4096
        assert store.password_hash("nobody") is None and store.scram_keys("nobody") is None


def errors_leave_nothing_half_done(open_store: Opener) -> None:
    with open_store() as store:
        store.add("alice@example.test", "pw")
        _raises("already exists", lambda: store.add("ALICE@example.test", "pw"))
        _raises(
            "already belongs to user alice@example.test",
            lambda: store.add("bob@example.test", "pw", ("alice@example.test",)),
        )
        _raises("no such user", lambda: store.set_password("carol", "pw"))
        _raises("no such user", lambda: store.delete("carol"))
        _raises("empty", lambda: store.add("carol", ""))
        _raises("bad user name", lambda: store.add("a b", "pw"))
        _raises("not an address", lambda: store.add("dave", "pw", ("nodomain",)))
        assert store.get("bob@example.test") is None and store.get("carol") is None
        assert [a.name for a in store.list()] == ["alice@example.test"]


def password_change_and_delete(open_store: Opener) -> None:
    with open_store() as store:
        store.add("alice@example.test", "old", ("alias@example.test",))
        old_keys = store.scram_keys("alice@example.test")
        store.set_password("Alice@example.test", "new")
        assert passwords.verify_password(store.password_hash("alice@example.test") or "", "new")
        assert store.scram_keys("alice@example.test") != old_keys
        store.delete("alice@example.test")
        assert store.list() == [] and store.get("alice@example.test") is None
        assert store.owner_of("alias@example.test") is None  # its addresses went with it
        store.add("bob@example.test", "pw", ("alias@example.test",))  # free again
        assert store.owner_of("alias@example.test") == "bob@example.test"


def seen_by_another_store_at_once(open_store: Opener) -> None:
    """`pigeon user add` in one process (or on one node), a login in another."""
    with open_store() as writer, open_store() as reader:
        assert reader.get("alice@example.test") is None  # asked before: nothing cached
        writer.add("alice@example.test", "pw")
        assert reader.password_hash("alice@example.test") is not None
        writer.set_password("alice@example.test", "changed")
        changed = reader.password_hash("alice@example.test") or ""
        assert passwords.verify_password(changed, "changed")
        writer.delete("alice@example.test")
        assert reader.password_hash("alice@example.test") is None


def parallel_additions_succeed_once(open_store: Opener) -> None:
    """Two stores adding one name at once: one account, one clear error."""
    stores = [open_store().open() for _ in range(2)]
    errors: list[str] = []
    barrier = threading.Barrier(len(stores))

    def add(store: AccountDirectory) -> None:
        barrier.wait(timeout=10)
        try:
            store.add("alice@example.test", "pw")
        except AccountError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=add, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert len(errors) == 1, errors
        assert [a.name for a in stores[0].list()] == ["alice@example.test"]
    finally:
        for s in stores:
            s.close()


def closed_store_raises(open_store: Opener) -> None:
    store = open_store().open()
    store.close()
    _raises("not open", lambda: store.password_hash("alice@example.test"))


CHECKS: dict[str, Callable[[Opener], None]] = {
    f.__name__: f
    for f in (
        add_list_get_owner,
        secrets,
        errors_leave_nothing_half_done,
        password_change_and_delete,
        seen_by_another_store_at_once,
        parallel_additions_succeed_once,
        closed_store_raises,
    )
}
